"""Server-side ALPR logic for OVR-ALPR.

Everything the Triton models in ``model_repository/`` do lives here as plain, tested
functions; each ``model.py`` is a thin adapter between Triton tensors and these.
Data flow: ``image_io`` (bytes -> pixels) -> ``preprocess`` (letterbox / crops)
-> ``yolo`` / ``text_det`` (boxes) -> ``ctc`` (text) -> ``plates`` (ranking).
"""
