"""Plate post-processing: normalisation, regional formats, format-guided correction and
voting across a track's reads.

Typical use (once per camera, then once per track)::

    formats = select(load_formats(), camera.regions)
    result = vote(reads, formats, min_len=camera.thresholds.min_plate_len)
"""

from __future__ import annotations

from .formats import DEFAULT_FORMATS_PATH, PlateFormat, correct, load_formats, select
from .normalize import fold_lookalikes, normalize
from .voting import is_plausible, vote

__all__ = [
    "DEFAULT_FORMATS_PATH",
    "PlateFormat",
    "correct",
    "fold_lookalikes",
    "is_plausible",
    "load_formats",
    "normalize",
    "select",
    "vote",
]
