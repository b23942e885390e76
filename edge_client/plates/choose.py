"""Choosing and rescoring the plate among one image's candidates, with regional formats.

The ``alpr`` ensemble returns every plate-shaped text region it read. ``choose`` ranks them
as ``ensemble.plates.ranked`` does (plate-likeness x confidences), rescores each with its
runner-up characters against the formats (``formats.rescore``, when the read carries
them and ``top_k`` is on), and multiplies its score by ``1 + FORMAT_BONUS x fit`` (the
same bonus ``vote`` gives a format match), so that among comparable candidates the one a
regional format fits best wins. The chosen hypothesis is what the track votes with.

A candidate no format fits (a length or layout the camera's regions do not issue, after
rescoring and the one-character deletions) is multiplied by ``NO_FIT_PENALTY`` instead: a
slogan, a state name, a sticker or a plate read with a stroke too many loses to a
candidate that fits. When every candidate misses, the best one is still chosen, with
``Choice.fits`` False: not a plate to be sure of, a reason to read a better frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.contracts import PlateRead
from ensemble.plates import ranked

from .formats import PlateFormat, correct, rescore
from .voting import FORMAT_BONUS

__all__ = ["NO_FIT_PENALTY", "Choice", "choose"]

NO_FIT_PENALTY = 0.5
"""Score factor of a candidate no format fits (cameras with formats only). Lower: a fitting
candidate wins more often (also another car's plate over this car's plate read with one
character too many); higher: a clearly better read of the wrong length wins more often
(flagged ``fits=False``, so the caller reads again rather than emits it). At 0.5 a
non-fitting read needs twice the plate-likeness x confidence of one that fits."""


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, the text to vote with (its best hypothesis, before look-alike
    correction), that text's per-character confidences, its score, and whether a format of
    the camera's regions fits that text (always True for a camera without formats: there
    is nothing to miss). A choice that does not fit is a reason to look again."""

    read: PlateRead
    text: str
    char_confidences: tuple[float, ...]
    score: float
    fits: bool = True


def _hypothesis(
    read: PlateRead, formats: Sequence[PlateFormat], top_k: bool
) -> tuple[str, tuple[float, ...], float, bool]:
    """``(text, char confidences, fit score, fits)`` of ``read``'s best hypothesis against
    ``formats`` (not empty): rescored with its runner-ups when it has them and ``top_k``
    is on, else the read as it is, checked with ``correct``."""
    text, chars = read.text, read.char_confidences
    aligned = len(chars) == len(text)
    if aligned and top_k and read.alternatives:
        hyp = rescore(text, chars, read.alternatives, read.alt_confidences, formats)
        return hyp.text, hyp.char_confidences, hyp.fit, hyp.format is not None
    _, fmt, fit = correct(text, formats, chars if aligned else None)
    return text, tuple(chars), fit, fmt is not None


def choose(
    reads: Sequence[PlateRead], formats: Sequence[PlateFormat], *, top_k: bool = True
) -> Choice | None:
    """The best candidate among ``reads`` for a camera with ``formats`` (see the module
    docstring); None when no candidate is plate-like. Without formats this is
    ``best_plate``'s choice, read as it is (``fits`` True)."""
    best: Choice | None = None
    for score, read in ranked(reads):
        text, chars, fits = read.text, tuple(read.char_confidences), True
        if formats:
            text, chars, fit, fits = _hypothesis(read, formats, top_k)
            score *= (1.0 + FORMAT_BONUS * min(fit, 1.0)) if fits else NO_FIT_PENALTY
        if best is None or score > best.score:
            best = Choice(read, text, chars, score, fits)
    return best
