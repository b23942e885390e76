"""Triton Python-backend model `plate_locator`: a thin wrapper over ensemble.serving."""

from ensemble.triton_adapter import make_model

TritonPythonModel = make_model("plate_locator")
