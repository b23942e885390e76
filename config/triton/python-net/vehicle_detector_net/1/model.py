"""Triton Python-backend model `vehicle_detector_net`: the bare YOLO network (onnxruntime)."""

from ensemble.triton_adapter import make_model

TritonPythonModel = make_model("raw_net")
