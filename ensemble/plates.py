"""Choosing the plate among text candidates (used by clients, the evaluator and tests).

The ensemble returns every plate-shaped text region it read; a vehicle crop may also
show dealer names or stickers. Candidates are ranked by how plate-like their text is
(length, mix of letters and digits) times recogniser and detector confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from .contracts import PlateRead


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


def best_plate(reads: Sequence[PlateRead], min_likeness: float = 0.3) -> PlateRead | None:
    scored = [(plate_likeness(r.text) * r.confidence * (0.5 + 0.5 * r.det_score), r) for r in reads]
    scored = [s for s in scored if plate_likeness(s[1].text) >= min_likeness]
    if not scored:
        return None
    return max(scored, key=lambda s: s[0])[1]
