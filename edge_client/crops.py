"""Plate/vehicle crops saved next to the events that reference them.

``save_crop`` writes ``output_dir/crops/{camera}/{YYYY-MM-DD}/{event_id}.jpg``: every name
that becomes a path component goes through ``safe_name`` (only ``[A-Za-z0-9_.-]``, no
leading dot, so ``..`` or ``/`` can never escape the crops folder), the image is
downscaled so its long side is at most ``max_side`` and the file is written atomically
(temporary file in the same folder, then ``os.replace``: ``write_atomic``) so readers never
see half a JPEG. ``folder`` puts the crops under another top folder of ``output_dir`` (the
unread-crop store, ``edge_client.unread``, uses it).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from alpr_common.files import safe_name
from ensemble.image_io import encode_jpeg


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    long_side = max(h, w)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def save_crop(
    output_dir: Path,
    camera: str,
    event_id: str,
    image_bgr: np.ndarray,
    max_side: int = 640,
    quality: int = 85,
    *,
    timestamp: float | None = None,
    folder: str = "crops",
) -> Path:
    """Write ``image_bgr`` as a small JPEG and return its path.

    The date folder is the UTC date of ``timestamp`` (default: now). Raises ``ValueError``
    for an empty or non-image array; I/O errors propagate (the temporary file is removed).
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim not in (2, 3):
        raise ValueError(
            f"crop must be a 2-D or 3-D array, got {getattr(image_bgr, 'shape', None)}"
        )
    if image_bgr.ndim == 3 and image_bgr.shape[2] not in (1, 3, 4):
        raise ValueError(f"crop must have 1, 3 or 4 channels, got shape {image_bgr.shape}")
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ValueError(f"crop is empty: shape {image_bgr.shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    image = (
        image_bgr if image_bgr.dtype == np.uint8 else np.clip(image_bgr, 0, 255).astype(np.uint8)
    )
    data = encode_jpeg(_downscale(image, max_side), quality=max(1, min(100, int(quality))))

    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=UTC)
    day = Path(output_dir) / safe_name(folder) / safe_name(camera) / when.strftime("%Y-%m-%d")
    day.mkdir(parents=True, exist_ok=True)
    path = day / f"{safe_name(event_id)}.jpg"
    write_atomic(path, data)
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file in the same folder and
    ``os.replace``; on any error the temporary file is removed and the error propagates."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with tmp.open("wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
