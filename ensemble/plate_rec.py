"""The plate-trained recogniser's input contract, shared by serving and training.

OVR-ALPR's own recogniser (``training/``, ``alpr-train ocr``) is a compact CTC network
that reads one plate image stretched to a small fixed size (``PLATE_REC_HEIGHT`` x
``PLATE_REC_WIDTH``, RGB in [-1, 1]). It needs numpy and OpenCV only, so the torch
training environment and the torch-free server import the same code: what the network
sees when it is trained is what it sees when it is served.

Served crops arrive as the PP-OCR recogniser's 48 x 320 tensors (``plate_detector``'s
``PLATE_CROPS``: the text line at its own aspect ratio, padded on the right with
mid-grey). :func:`content` cuts the padding off before the stretch, so a short line is
not read as a squashed one.

The ONNX file describes itself in its metadata (``METADATA_*`` keys): the alphabet, the
input size and the format tag, so a retrained model with another alphabet or size is
served without code changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PLATE_REC_HEIGHT = 32
PLATE_REC_WIDTH = 128
FORMAT_TAG = "ovr-alpr-plate-ctc-v1"
METADATA_FORMAT = "ovr_alpr_format"
METADATA_ALPHABET = "alphabet"
METADATA_HEIGHT = "input_height"
METADATA_WIDTH = "input_width"
PAD_VALUE = 128  # ensemble.preprocess pads recogniser crops with this grey


def content(crop: np.ndarray, pad: int = PAD_VALUE) -> np.ndarray:
    """A padded recogniser crop without its right-hand padding (columns that are exactly
    ``pad`` in every row and channel, from the right edge inwards). A crop without padding
    is returned as it is; a crop that is all padding keeps one column."""
    if crop.ndim != 3 or crop.shape[1] == 0:
        return crop
    filled = (crop != pad).any(axis=(0, 2))
    idx = np.flatnonzero(filled)
    end = int(idx[-1]) + 1 if len(idx) else 1
    return crop[:, :end]


def to_input(
    images_bgr: Sequence[np.ndarray],
    height: int = PLATE_REC_HEIGHT,
    width: int = PLATE_REC_WIDTH,
) -> np.ndarray:
    """BGR (or grey) plate images of any size -> float32 [N, 3, height, width] RGB in
    [-1, 1]. Each image is stretched to the input size (area-averaged when shrunk)."""
    out = np.empty((len(images_bgr), 3, height, width), np.float32)
    for i, img in enumerate(images_bgr):
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        interp = cv2.INTER_AREA if h > height or w > width else cv2.INTER_LINEAR
        small = cv2.resize(img, (width, height), interpolation=interp)
        out[i] = small[..., ::-1].transpose(2, 0, 1)
    out *= 1.0 / 127.5
    out -= 1.0
    return out
