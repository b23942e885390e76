"""Choosing and rescoring the plate among one image's candidates, with regional formats.

The ``alpr`` ensemble returns every plate-shaped text region it read. ``choose`` ranks them
as ``ensemble.plates.ranked`` does (plate-likeness x confidences), rescores each with its
runner-up characters against the formats (``formats.rescore``, when the read carries
them and ``top_k`` is on), and multiplies its score by ``1 + FORMAT_BONUS x fit`` (the
same bonus ``vote`` gives a format match), so that among comparable candidates the one a
regional format fits best wins. The chosen hypothesis is what the track votes with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.contracts import PlateRead
from ensemble.plates import ranked

from .formats import PlateFormat, correct, rescore
from .voting import FORMAT_BONUS

__all__ = ["Choice", "choose"]


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, the text to vote with (its best hypothesis, before look-alike
    correction) and that text's per-character confidences."""

    read: PlateRead
    text: str
    char_confidences: tuple[float, ...]
    score: float


def choose(
    reads: Sequence[PlateRead], formats: Sequence[PlateFormat], *, top_k: bool = True
) -> Choice | None:
    """The best candidate among ``reads`` for a camera with ``formats`` (see the module
    docstring); None when no candidate is plate-like. Without formats this is
    ``best_plate``'s choice, read as it is."""
    best: Choice | None = None
    for score, read in ranked(reads):
        text, chars = read.text, read.char_confidences
        if formats and len(chars) == len(text):
            if top_k and read.alternatives:
                hyp = rescore(text, chars, read.alternatives, read.alt_confidences, formats)
                text, chars, fit = hyp.text, hyp.char_confidences, hyp.fit
            else:
                fit = correct(text, formats, chars)[2]
            score *= 1.0 + FORMAT_BONUS * min(fit, 1.0)
        if best is None or score > best.score:
            best = Choice(read, text, tuple(chars), score)
    return best
