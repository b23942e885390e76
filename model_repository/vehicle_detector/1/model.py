"""Triton Python-backend model `vehicle_detector`: a thin wrapper over ensemble.serving."""

from ensemble.triton_adapter import make_model

TritonPythonModel = make_model("vehicle_detector")
