"""Plate post-processing: normalisation, regional formats, format-guided correction and
voting across a track's reads.

Typical use (once per camera, then once per track)::

    formats = select(load_formats(), camera.regions)
    result = vote(reads, formats, min_len=camera.thresholds.min_plate_len)

Among one image's candidates, ``choose`` picks the plate with the formats in mind and
rescores it with the recogniser's runner-up characters (``rescore``: top-k substitutions
of unsure characters) before it votes.
"""

from __future__ import annotations

from alpr_common.plate_text import fold_lookalikes, normalize

from .choose import Choice, choose
from .formats import (
    DEFAULT_FORMATS_PATH,
    PlateFormat,
    Rescored,
    correct,
    load_formats,
    rescore,
    select,
)
from .voting import is_plausible, vote

__all__ = [
    "DEFAULT_FORMATS_PATH",
    "Choice",
    "PlateFormat",
    "Rescored",
    "choose",
    "correct",
    "fold_lookalikes",
    "is_plausible",
    "load_formats",
    "normalize",
    "rescore",
    "select",
    "vote",
]
