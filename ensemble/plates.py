"""Choosing the plate among text candidates (used by clients, the evaluator and tests).

The ensemble returns every plate-shaped text region it read; a vehicle crop may also
show dealer names or stickers. Candidates are ranked by how plate-like their text is
(length, mix of letters and digits) times recogniser and detector confidence.

A two-row plate comes back three times: each row read alone, and both rows read as one
string from a region that holds them. The region's read supersedes its rows' when it is
at least as plate-like: a row alone is only part of that plate. A row lies inside the
region and covers at most ``ROW_SHARE`` of its height (two stacked rows each cover about
half; a longer read of the same line, e.g. a plate joined with a badge beside it, covers
nearly all of it and does not supersede).
"""

from __future__ import annotations

from collections.abc import Sequence

from .contracts import Box, PlateRead

INSIDE = 0.8  # share of a row's area within the region holding it
ROW_SHARE = 0.75  # a row covers at most this share of the region's height


def plate_likeness(text: str) -> float:
    """0..1 prior that ``text`` is a licence plate, format-agnostic."""
    n = len(text)
    if n < 3:
        return 0.0
    length = 1.0 if 4 <= n <= 9 else 0.5 if n in (3, 10) else 0.1
    digits = sum(c.isdigit() for c in text)
    letters = sum(c.isalpha() for c in text)
    mix = 1.0 if digits and letters else 0.6
    return length * mix


def _inside(inner: Box, outer: Box) -> float:
    """Share of ``inner``'s area that lies within ``outer``."""
    ix = max(0.0, min(inner.x2, outer.x2) - max(inner.x1, outer.x1))
    iy = max(0.0, min(inner.y2, outer.y2) - max(inner.y1, outer.y1))
    area = inner.width * inner.height
    return ix * iy / area if area > 0 else 0.0


def superseded(reads: Sequence[PlateRead]) -> set[int]:
    """Indices of reads that are rows of another read's region whose text is longer and
    at least as plate-like (see the module docstring)."""
    out: set[int] = set()
    for i, whole in enumerate(reads):
        parts = [
            k
            for k, r in enumerate(reads)
            if k != i
            and r.box.height <= ROW_SHARE * whole.box.height
            and _inside(r.box, whole.box) >= INSIDE
            and len(r.text) < len(whole.text)
        ]
        likeness = plate_likeness(whole.text)
        if parts and likeness >= max(plate_likeness(reads[k].text) for k in parts):
            out.update(parts)
    return out


def ranked(reads: Sequence[PlateRead], min_likeness: float = 0.3) -> list[tuple[float, PlateRead]]:
    """(score, read) of the plate-like candidates (likeness >= ``min_likeness``, rows of a
    two-row read dropped), best first; score = likeness x confidence x (0.5 + 0.5 x
    detector score). Ties keep the input order."""
    drop = superseded(reads)
    scored = [
        (plate_likeness(r.text) * r.confidence * (0.5 + 0.5 * r.det_score), r)
        for k, r in enumerate(reads)
        if k not in drop and plate_likeness(r.text) >= min_likeness
    ]
    return sorted(scored, key=lambda s: -s[0])


def best_plate(reads: Sequence[PlateRead], min_likeness: float = 0.3) -> PlateRead | None:
    scored = ranked(reads, min_likeness)
    return scored[0][1] if scored else None
