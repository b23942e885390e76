"""Regional plate formats (``plate_formats.yaml``, shipped in this package) and format-guided
correction of look-alike characters.

A format is a fixed-length position mask: ``L`` a letter, ``D`` a digit, ``A`` either.
``correct`` tries every format of the text's length, swapping look-alike characters where
the mask demands the other kind (``0`` at a letter position becomes ``O``, ``S`` at a digit
position becomes ``5``) and keeps the format with the best score,
``weight * SUB_PENALTY ** substitutions`` (each substitution counts less at positions the
recogniser was unsure of). The YAML schema is documented at the top of that file.

A region may prefer digits for some letters (``region_options: {us: {prefer_digits: OIQ}}``):
its standard plates do not issue them, so a correction never produces them (a read ``0`` or
``1`` is never turned into ``O`` or ``I``, whatever the mask), and a read ``O``/``Q``/``I``
becomes ``0``/``1`` wherever the mask does not require a letter (``A`` positions included).

``rescore`` goes one step further with the recogniser's runner-up characters (top-k): it
tries substituting the least sure characters with their runner-ups, scores each hypothesis
by its log-probability plus a bonus when a format fits it, and keeps the best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alpr_common.yaml_file import read_yaml

__all__ = [
    "DEFAULT_FORMATS_PATH",
    "DIGIT_TO_LETTER",
    "FIT_BONUS",
    "GLYPH_TWINS",
    "LETTER_TO_DIGIT",
    "MAX_HYPOTHESES",
    "MAX_SUBS",
    "PROTECT",
    "SUB_PENALTY",
    "PlateFormat",
    "Rescored",
    "correct",
    "load_formats",
    "rescore",
    "select",
]

DEFAULT_FORMATS_PATH: Traversable = resources.files("edge_client.plates") / "plate_formats.yaml"
"""The formats shipped with the edge client (package data: in a wheel as in the checkout)."""

SUB_PENALTY = 0.8
"""Score factor per look-alike substitution (at a position of confidence 1)."""

MAX_SUBS = 2
"""Default limit on look-alike substitutions for a format to fit."""

DIGIT_TO_LETTER = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G", "4": "A", "7": "T"}
LETTER_TO_DIGIT = {
    **{c: "0" for c in "OQD"},
    **{c: "1" for c in "IL"},
    **{"S": "5", "B": "8", "Z": "2", "G": "6", "A": "4", "T": "7"},
}


@dataclass(frozen=True)
class PlateFormat:
    """One plate layout of a region, e.g. ``PlateFormat("uk", "uk_current", "LLDDLLL")``."""

    region: str
    name: str
    pattern: str  # L letter, D digit, A either; one character per plate position
    weight: float = 1.0
    min_letters: int = 0
    min_digits: int = 0
    prefer_digits: str = ""  # letters the region does not issue (its ``region_options``)


# --- YAML schema ------------------------------------------------------------------------
class _Format(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=64)
    pattern: str = Field(pattern=r"^[LDA]+$", min_length=2, max_length=12)
    weight: float = Field(1.0, gt=0, le=10)
    min_letters: int = Field(0, ge=0, le=12)
    min_digits: int = Field(0, ge=0, le=12)
    description: str = ""

    @model_validator(mode="after")
    def _satisfiable(self) -> _Format:
        n_l, n_d, n_a = (self.pattern.count(c) for c in "LDA")
        if max(0, self.min_letters - n_l) + max(0, self.min_digits - n_d) > n_a:
            raise ValueError(
                f"min_letters={self.min_letters} and min_digits={self.min_digits} cannot "
                f"both hold for pattern {self.pattern}"
            )
        return self


class _RegionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefer_digits: str = Field(
        "",
        pattern=r"^[A-Z]*$",
        max_length=len(LETTER_TO_DIGIT),
        description="Letters the region's standard plates do not issue: read as their digit "
        "look-alike wherever a format does not require a letter, never produced by a "
        "correction.",
    )
    description: str = ""

    @model_validator(mode="after")
    def _look_alikes(self) -> _RegionOptions:
        letters = self.prefer_digits
        if len(set(letters)) != len(letters):
            raise ValueError(f"prefer_digits {letters!r} repeats a letter")
        lone = [c for c in letters if c not in LETTER_TO_DIGIT]
        if lone:
            raise ValueError(
                f"prefer_digits: {''.join(lone)} has no digit look-alike; "
                f"choose among {''.join(sorted(LETTER_TO_DIGIT))}"
            )
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(1, ge=1, le=1)
    regions: dict[str, list[_Format]] = Field(min_length=1)
    region_options: dict[str, _RegionOptions] = Field(
        default_factory=dict, description="Options of some regions, by region name."
    )


def _where(loc: tuple[int | str, ...], data: object) -> str:
    """``('regions', 'uk', 2, 'pattern')`` -> ``regions.uk[2] (name 'x').pattern``."""
    out, node = "", data
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, dict) and "name" in node:
                out += f" (name {node['name']!r})"
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = None
    return out or "<root>"


def _parse(data: object, source: str) -> dict[str, list[PlateFormat]]:
    if not isinstance(data, dict):
        raise ValueError(
            f"invalid plate formats in {source}: expected a mapping with a 'regions' key, "
            f"got {type(data).__name__}"
        )
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {_where(e['loc'], data)}: {e['msg']}" for e in exc.errors()]
        raise ValueError(f"invalid plate formats in {source}:\n" + "\n".join(lines)) from None
    unknown = sorted(set(parsed.region_options) - set(parsed.regions))
    if unknown:
        raise ValueError(
            f"invalid plate formats in {source}: region_options.{unknown[0]}: no such region "
            f"in regions ({', '.join(sorted(parsed.regions))})"
        )
    out: dict[str, list[PlateFormat]] = {}
    for region, entries in parsed.regions.items():
        where = f"invalid plate formats in {source}: regions.{region}"
        if not region.isascii() or not region.isidentifier() or region != region.lower():
            raise ValueError(f"{where}: region names must be lower-case identifiers")
        if not entries:
            raise ValueError(f"{where}: a region needs at least one format")
        seen_names: set[str] = set()
        seen_patterns: dict[str, str] = {}
        for i, f in enumerate(entries):
            if f.name in seen_names:
                raise ValueError(f"{where}[{i}]: duplicate format name {f.name!r}")
            if f.pattern in seen_patterns:
                raise ValueError(
                    f"{where}[{i}] (name {f.name!r}): pattern {f.pattern} is already "
                    f"{seen_patterns[f.pattern]!r}; merge the two entries"
                )
            seen_names.add(f.name)
            seen_patterns[f.pattern] = f.name
        options = parsed.region_options.get(region)
        prior = options.prefer_digits if options else ""
        out[region] = [
            PlateFormat(region, f.name, f.pattern, f.weight, f.min_letters, f.min_digits, prior)
            for f in entries
        ]
    return out


def load_formats(path: Path | None = None) -> dict[str, list[PlateFormat]]:
    """Read and validate the formats file (default: ``DEFAULT_FORMATS_PATH``, the one
    shipped in this package); ``ValueError`` names the bad entry."""
    if path is None:
        with resources.as_file(DEFAULT_FORMATS_PATH) as shipped:
            return _parse(read_yaml(shipped, "plate formats"), str(shipped))
    return _parse(read_yaml(Path(path), "plate formats"), str(path))


def select(all_formats: dict[str, list[PlateFormat]], regions: Sequence[str]) -> list[PlateFormat]:
    """The formats of ``regions`` (case-insensitive, duplicates ignored), in the order
    given; ``ValueError`` lists the available regions when one is unknown."""
    if isinstance(regions, str):
        raise ValueError(f"regions must be a list of names, got the string {regions!r}")
    available = ", ".join(sorted(all_formats))
    wanted = list(dict.fromkeys(r.strip().lower() for r in regions))
    if not wanted:
        raise ValueError(f"no plate regions given; available: {available}")
    unknown = [r for r in wanted if r not in all_formats]
    if unknown:
        raise ValueError(f"unknown plate region(s) {', '.join(unknown)}; available: {available}")
    return [f for r in wanted for f in all_formats[r]]


# --- correction ---------------------------------------------------------------------------
PROTECT = 0.97
"""Recogniser confidence at or above which ``correct`` and ``rescore`` keep a character as
read: formats are priors, the pixels are evidence. The one exception: ``GLYPH_TWINS``."""

GLYPH_TWINS = frozenset({("0", "O"), ("O", "0"), ("1", "I"), ("I", "1")})
"""Swaps ``correct`` makes however sure the recogniser was, but only where the format
*requires* the other kind (a letter at a ``D`` position, a digit at an ``L`` one): many
plate fonts draw these pairs (almost) identically, so a confidence says nothing the mask
does not. Never at an ``A`` position (the mask allows both there), and in a region that
prefers digits never toward the letter (its plates do not carry it)."""


def _at(ch: str, kind: str, prior: str) -> str | None:
    """What ``ch`` becomes at a position of ``kind`` (``L``, ``D`` or ``A``) of a format
    whose region does not issue the letters of ``prior``: itself when it fits, its
    look-alike of the kind the mask demands, or None when it cannot be there. A digit is
    never turned into a letter of ``prior``: such a plate would not exist."""
    if kind == "L":
        if "A" <= ch <= "Z":
            return ch
        twin = DIGIT_TO_LETTER.get(ch)
        return twin if twin is not None and twin not in prior else None
    if kind == "D":
        return ch if "0" <= ch <= "9" else LETTER_TO_DIGIT.get(ch)
    return ch if "A" <= ch <= "Z" or "0" <= ch <= "9" else None


def _may_swap(old: str, new: str, kind: str, conf: float, protect: float | None) -> bool:
    """Whether ``old`` read with ``conf`` may become ``new`` at a position of ``kind``:
    always below ``protect`` (``None``: no confidences known, nothing protected), above it
    only for a glyph twin the mask requires (see ``GLYPH_TWINS``)."""
    return protect is None or conf < protect or (kind != "A" and (old, new) in GLYPH_TWINS)


def _prior_digits(
    chars: Sequence[str], fmt: PlateFormat, confidences: Sequence[float],
    protect: float | None, budget: int,
) -> list[int]:  # fmt: skip
    """Positions of ``chars`` (a text that fits ``fmt``) where the region's digit prior
    turns a letter into its digit: ``A`` positions holding a letter of
    ``fmt.prefer_digits`` that may be swapped, least sure first, at most ``budget`` of
    them and never below ``fmt.min_letters``. The prior rewrites a fitting text, it does
    not make one fit: the letter and digit counts are checked before it (a word such as
    ``FLORIDA`` does not become a serial by it)."""
    if not fmt.prefer_digits:
        return []
    letters = sum(c.isalpha() for c in chars)
    budget = min(budget, letters - fmt.min_letters)
    spots = [
        i
        for i, (ch, kind) in enumerate(zip(chars, fmt.pattern, strict=True))
        if kind == "A"
        and ch in fmt.prefer_digits
        and _may_swap(ch, LETTER_TO_DIGIT[ch], kind, confidences[i], protect)
    ]
    return sorted(spots, key=lambda i: confidences[i])[: max(0, budget)]


def _fit(
    text: str, fmt: PlateFormat, confidences: Sequence[float], protect: float | None,
    max_subs: int,
) -> tuple[str, int, float] | None:  # fmt: skip
    """``(corrected, substitutions, penalty)`` if ``text`` fits ``fmt`` with at most
    ``max_subs`` allowed substitutions (see ``_at``, ``_may_swap``), then the region's
    digit prior (``_prior_digits``) within what is left of ``max_subs``; else None.
    ``penalty``: ``SUB_PENALTY ** sum(confidence of each substituted position)``."""
    out: list[str] = []
    swapped: list[int] = []
    for i, (ch, kind) in enumerate(zip(text, fmt.pattern, strict=True)):
        new = _at(ch, kind, fmt.prefer_digits)
        if new is None or (new != ch and not _may_swap(ch, new, kind, confidences[i], protect)):
            return None
        if new != ch:
            swapped.append(i)
        out.append(new)
    if len(swapped) > max_subs:
        return None
    letters = sum(c.isalpha() for c in out)
    if letters < fmt.min_letters or len(out) - letters < fmt.min_digits:
        return None
    for i in _prior_digits(out, fmt, confidences, protect, max_subs - len(swapped)):
        out[i] = LETTER_TO_DIGIT[out[i]]
        swapped.append(i)
    log_penalty = sum(confidences[i] for i in swapped) * math.log(SUB_PENALTY)
    return "".join(out), len(swapped), math.exp(log_penalty)


def correct(
    text: str,
    formats: Sequence[PlateFormat],
    char_confidences: Sequence[float] | None = None,
    *,
    max_subs: int = MAX_SUBS,
    protect: float = PROTECT,
) -> tuple[str, PlateFormat | None, float]:
    """Best format-guided correction of ``text`` (normalised, A-Z0-9).

    With ``char_confidences``, a character the recogniser read with confidence >=
    ``protect`` is never substituted: a sure ``B`` does not become ``8`` just because some
    format of the region would then fit (formats are priors, the pixels are evidence).
    The glyph twins O/0 and I/1 are the exception where the format *requires* the other
    kind (``GLYPH_TWINS``). In a region that prefers digits (``PlateFormat.prefer_digits``)
    no correction produces those letters, and they become digits where the format allows
    one (``_prior_digits``).

    Returns ``(corrected text, format, score)`` with ``score = weight * SUB_PENALTY **
    sum(confidence of each substituted position)``; ties go to fewer substitutions, then
    to the earlier format. ``char_confidences`` (one per character, clamped to 0..1; 1
    when omitted) make a substitution where the recogniser was unsure cheaper. A format
    needing more than ``max_subs`` substitutions does not fit (a partial or foreign read
    is not bent into some format). When no format fits, returns ``(text, None, 0.0)``.
    """
    if char_confidences is None:
        confs: list[float] = [1.0] * len(text)
    else:
        if len(char_confidences) != len(text):
            raise ValueError(
                f"{len(char_confidences)} character confidences for {len(text)} characters"
            )
        confs = [min(1.0, max(0.0, c)) if c == c else 1.0 for c in char_confidences]
    guard = None if char_confidences is None else protect
    best: tuple[float, int, str, PlateFormat] | None = None
    for fmt in formats:
        if len(fmt.pattern) != len(text):
            continue
        fit = _fit(text, fmt, confs, guard, max_subs)
        if fit is None:
            continue
        fixed, subs, penalty = fit
        score = round(fmt.weight * penalty, 12)  # equal fits tie exactly
        if best is None or (score, -subs) > (best[0], -best[1]):
            best = (score, subs, fixed, fmt)
    if best is None:
        return text, None, 0.0
    return best[2], best[3], best[0]


# --- top-k rescoring ----------------------------------------------------------------------
MAX_HYPOTHESES = 16
"""Hypotheses ``rescore`` tries at most: every subset of the 4 least sure positions."""

MAX_DELETIONS = 2
"""Spurious-character hypotheses ``rescore`` tries: the read without one of its this many
least sure characters (a plate's emblem, flag or band read as a character)."""

FIT_BONUS = 2.0
"""Log-score bonus of a hypothesis some format fits (added to the log of its fit score)."""

_LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class Rescored:
    """The winning hypothesis of :func:`rescore`: its text (before look-alike correction,
    which ``correct`` / ``vote`` apply), per-character probabilities, the format that fits
    it (or None) and how well, its score and the positions where the runner-up was
    taken."""

    text: str
    char_confidences: tuple[float, ...]
    format: PlateFormat | None
    fit: float  # the format's ``correct`` score (weight x substitution penalty), 0 if none
    score: float
    substituted: tuple[int, ...]
    deleted: int | None = None  # the position of ``text`` dropped as spurious, if any


def _clamped(values: Sequence[float]) -> list[float]:
    return [min(1.0, max(0.0, v)) if v == v else 0.0 for v in values]


def rescore(
    text: str,
    char_confidences: Sequence[float],
    alternatives: str,
    alt_confidences: Sequence[float],
    formats: Sequence[PlateFormat],
    *,
    protect: float = PROTECT,
    max_hypotheses: int = MAX_HYPOTHESES,
    bonus: float = FIT_BONUS,
    max_subs: int = MAX_SUBS,
) -> Rescored:
    """Top-k rescoring of one read (normalised ``text``) against ``formats``.

    ``alternatives[i]`` is the recogniser's runner-up for ``text[i]`` with probability
    ``alt_confidences[i]``. Positions read with confidence below ``protect`` whose runner-up
    is a plate character are candidates; the ones whose runner-up comes closest to the
    read character (probability ratio) are taken, as many as keep every subset of them
    within ``max_hypotheses`` (16: four positions). Each hypothesis scores the sum of the
    log-probabilities of its characters, plus ``bonus + log(score)`` when ``correct`` fits
    a format to it (``score``: weight times the look-alike substitution penalty). The
    highest score wins; on a tie the hypothesis with fewer substitutions (the read first).

    A character read with confidence >= ``protect`` is never replaced, and ``correct``
    keeps its own rules for look-alikes. A hypothesis that turns a read digit into its
    twin letter (``0`` -> ``O``) is not scored against the formats of a region that
    prefers the digit. Without formats or alternatives the read is returned as it is
    (scored, with its format if one fits).
    """
    n = len(text)
    if len(char_confidences) != n:
        raise ValueError(f"{len(char_confidences)} character confidences for {n} characters")
    if alternatives and (len(alternatives) != n or len(alt_confidences) != n):
        raise ValueError(
            f"{len(alternatives)} alternatives / {len(alt_confidences)} alternative "
            f"confidences for {n} characters"
        )
    if max_hypotheses < 1:
        raise ValueError(f"max_hypotheses must be >= 1, got {max_hypotheses}")
    confs = _clamped(char_confidences)
    alt_p = _clamped(alt_confidences) if alternatives else []
    slots = [
        i
        for i in range(len(alt_p))
        if confs[i] < protect
        and alt_p[i] > 0.0
        and alternatives[i] != text[i]
        and ("A" <= alternatives[i] <= "Z" or "0" <= alternatives[i] <= "9")
    ]
    slots.sort(key=lambda i: -alt_p[i] / max(confs[i], _LOG_FLOOR))
    slots = slots[: max(0, max_hypotheses.bit_length() - 1)]  # 2 ** k <= max_hypotheses

    best: Rescored | None = None
    for mask in range(1 << len(slots)):  # mask 0: the read itself, tried first
        chars, probs = list(text), list(confs)
        taken = tuple(sorted(i for b, i in enumerate(slots) if mask >> b & 1))
        for i in taken:
            chars[i], probs[i] = alternatives[i], alt_p[i]
        hyp = "".join(chars)
        usable = _allowing(formats, _twin_letters(text, hyp, taken))
        fmt, fit, score = _scored(hyp, probs, usable, protect, bonus, max_subs)
        if best is None or (score, -len(taken)) > (best.score, -len(best.substituted)):
            best = Rescored(hyp, tuple(probs), fmt, fit, score, taken)
    assert best is not None
    if formats:
        dropped = _deletions(text, confs, alt_p, formats, protect, bonus, max_subs)
        best = max([best, *dropped], key=lambda r: r.score)  # ties: the read's hypothesis
    return best


def _twin_letters(read: str, hyp: str, taken: Sequence[int]) -> frozenset[str]:
    """Letters a hypothesis took from runner-ups where the read had their digit
    look-alike (a read ``0`` whose runner-up is ``O``)."""
    return frozenset(hyp[i] for i in taken if LETTER_TO_DIGIT.get(hyp[i]) == read[i])


def _allowing(formats: Sequence[PlateFormat], letters: frozenset[str]) -> list[PlateFormat]:
    """The ``formats`` whose region issues ``letters``: a region that prefers digits for
    them does not let a runner-up turn its read ``0`` into ``O`` (``correct`` keeps the
    same rule for its own look-alike swaps)."""
    if not letters:
        return list(formats)
    return [f for f in formats if not letters & set(f.prefer_digits)]


def _scored(
    hyp: str, probs: Sequence[float], formats: Sequence[PlateFormat],
    protect: float, bonus: float, max_subs: int, extra: float = 0.0,
) -> tuple[PlateFormat | None, float, float]:  # fmt: skip
    """``(format, fit, score)`` of one hypothesis: the sum of its characters'
    log-probabilities (plus ``extra``), and ``bonus + log(fit)`` when ``correct`` fits a
    format to it; rounded so that equal hypotheses tie exactly."""
    score = extra + sum(math.log(max(p, _LOG_FLOOR)) for p in probs)
    fmt, fit = None, 0.0
    if formats:
        _, fmt, fit = correct(hyp, formats, probs, max_subs=max_subs, protect=protect)
        if fmt is not None:
            score += bonus + math.log(max(fit, _LOG_FLOOR))
    return fmt, fit, round(score, 9)


def _deletions(
    text: str, confs: Sequence[float], alt_p: Sequence[float], formats: Sequence[PlateFormat],
    protect: float, bonus: float, max_subs: int,
) -> list[Rescored]:  # fmt: skip
    """Hypotheses without one spurious character: for each of the ``MAX_DELETIONS`` least
    sure positions (confidence below ``protect``), the read without it, when some format
    fits the rest. Scored like ``rescore``'s hypotheses, the dropped character costing
    ``log(1 - p)``, ``p`` the probability that some character is there at all (the read
    one's plus its runner-up's, ``alt_p``, when known): a position the recogniser was
    unsure held anything is cheap to drop, one torn between two characters is not."""
    lengths = {len(f.pattern) for f in formats}
    if len(text) - 1 not in lengths:
        return []
    unsure = sorted((i for i in range(len(text)) if confs[i] < protect), key=lambda i: confs[i])
    out = []
    for i in unsure[:MAX_DELETIONS]:
        hyp, probs = text[:i] + text[i + 1 :], [*confs[:i], *confs[i + 1 :]]
        present = min(1.0, confs[i] + (alt_p[i] if alt_p else 0.0))
        drop = math.log(max(1.0 - present, _LOG_FLOOR))
        fmt, fit, score = _scored(hyp, probs, formats, protect, bonus, max_subs, drop)
        if fmt is not None:
            out.append(Rescored(hyp, tuple(probs), fmt, fit, score, (), i))
    return out
