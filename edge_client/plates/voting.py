"""Deciding a track's plate from its OCR reads (votes).

1. Every read is normalised; empty ones are dropped.
2. Reads are clustered greedily, highest confidence first: a read joins the cluster whose
   representative (its first, most confident read) is most similar, if that similarity
   reaches ``similarity``; otherwise it starts a cluster. Similarity is rapidfuzz's
   ``fuzz.ratio`` / 100 after folding look-alikes (O/0, I/1, S/5...), so reads that differ
   only by such confusions land in one cluster.
3. The cluster with the largest sum of read confidences wins (ties: more reads).
4. Inside it, the reads of the modal length (by summed confidence) vote per position,
   each character weighted by read confidence times its character confidence; a single
   read of the modal length is simply taken as is.
5. The text is corrected with ``formats.correct`` (at most ``max_subs`` look-alike
   substitutions); each position's confidence for it is the winning character's share
   of that position's votes times its mean character confidence, so a split O/0 vote is
   cheap to fix and a unanimous one is not.
6. Filters apply to the winner only: shorter than ``min_len`` -> None; with
   ``require_format``, a winner no format fits -> None.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from alpr_common.plate_text import fold_lookalikes, normalize

from ..contracts import PlateResult, Read
from .formats import MAX_SUBS, PlateFormat, correct

__all__ = ["FORMAT_BONUS", "is_plausible", "vote"]

FORMAT_BONUS = 0.1
"""A format match multiplies the confidence by ``1 + FORMAT_BONUS * min(score, 1)``."""


@dataclass
class _Vote:
    text: str  # normalised
    raw: str
    conf: float
    chars: tuple[float, ...]  # per-character confidences aligned with ``text``, or ()


@dataclass
class _Cluster:
    key: str  # folded text of the representative
    members: list[_Vote] = field(default_factory=list)

    @property
    def weight(self) -> float:
        return sum(v.conf for v in self.members)


def _clamp(x: float) -> float:
    return 0.0 if math.isnan(x) else min(1.0, max(0.0, float(x)))


def _to_vote(read: Read) -> _Vote:
    text = normalize(read.text)
    chars = tuple(_clamp(c) for c in read.char_confidences)
    if len(chars) != len(text):  # unusable if normalising changed the length
        chars = ()
    return _Vote(text, read.text, _clamp(read.confidence), chars)


def _cluster(votes: list[_Vote], similarity: float) -> list[_Cluster]:
    clusters: list[_Cluster] = []
    for v in sorted(votes, key=lambda v: -v.conf):  # stable: equal confidences keep order
        key = fold_lookalikes(v.text)
        best, best_sim = None, -1.0
        for c in clusters:
            sim = fuzz.ratio(key, c.key) / 100.0
            if sim > best_sim:
                best, best_sim = c, sim
        if best is None or best_sim < similarity:
            best = _Cluster(key)
            clusters.append(best)
        best.members.append(v)
    return clusters


def _char_vote(members: list[_Vote]) -> tuple[str, list[float]]:
    """Per-position weighted vote among the reads of the modal length; returns the text
    and each position's confidence (see the module docstring, step 5)."""
    by_len: dict[int, list[_Vote]] = defaultdict(list)
    for v in members:
        by_len[len(v.text)].append(v)
    group = max(by_len.values(), key=lambda g: (sum(v.conf for v in g), len(g)))
    text: list[str] = []
    pos_conf: list[float] = []
    for i in range(len(group[0].text)):
        weights: dict[str, float] = defaultdict(float)
        support: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for v in group:  # most confident first, so it wins exact ties
            cc = v.chars[i] if v.chars else 1.0
            weights[v.text[i]] += v.conf * cc
            support[v.text[i]].append((v.conf, cc))
        ch = max(weights, key=lambda c: (weights[c], len(support[c])))
        total = sum(weights.values())
        share = weights[ch] / total if total > 0 else len(support[ch]) / len(group)
        conf_sum = sum(rc for rc, _ in support[ch])
        mean_cc = (
            sum(rc * cc for rc, cc in support[ch]) / conf_sum
            if conf_sum > 0
            else sum(cc for _, cc in support[ch]) / len(support[ch])
        )
        text.append(ch)
        pos_conf.append(share * mean_cc)
    return "".join(text), pos_conf


def vote(
    reads: Sequence[Read],
    formats: Sequence[PlateFormat],
    *,
    similarity: float = 0.8,
    min_len: int = 4,
    require_format: bool = False,
    max_subs: int = MAX_SUBS,
) -> PlateResult | None:
    """The plate a track's ``reads`` agree on, corrected with ``formats``, or None when
    there is no read, the winning text is shorter than ``min_len``, or (with
    ``require_format``) no format fits it.

    ``confidence`` is the confidence-weighted mean read confidence of the winning
    cluster, times ``0.5 + 0.5 * share`` (``share``: the cluster's part of all reads'
    confidence, 1 when the reads agree), times ``1 + FORMAT_BONUS * min(score, 1)``
    for a format match, capped at 1. ``raw_text`` is the winning cluster's most
    confident read as the recogniser gave it; ``votes`` the cluster's size.
    """
    if not 0.0 < similarity <= 1.0:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    votes = [v for v in map(_to_vote, reads) if v.text]
    if not votes:
        return None
    clusters = _cluster(votes, similarity)
    winner = max(clusters, key=lambda c: (c.weight, len(c.members)))  # first on ties
    text, pos_conf = _char_vote(winner.members)
    if len(text) < min_len:
        return None
    plate, fmt, score = correct(text, formats, pos_conf, max_subs=max_subs)
    if fmt is None and require_format:
        return None

    total = sum(c.weight for c in clusters)
    weight = winner.weight
    if weight > 0:
        mean = sum(v.conf * v.conf for v in winner.members) / weight
        share = weight / total
    else:  # every read had confidence 0
        mean, share = 0.0, len(winner.members) / len(votes)
    confidence = mean * (0.5 + 0.5 * share)
    if fmt is not None:
        confidence *= 1.0 + FORMAT_BONUS * min(score, 1.0)
    return PlateResult(
        plate=plate,
        raw_text=winner.members[0].raw,  # members are in descending confidence
        confidence=min(1.0, confidence),
        region=fmt.region if fmt else None,
        format=fmt.name if fmt else None,
        votes=len(winner.members),
    )


def is_plausible(
    text: str,
    formats: Sequence[PlateFormat],
    min_len: int = 4,
    *,
    max_subs: int = MAX_SUBS,
    char_confidences: Sequence[float] = (),
) -> bool:
    """Whether ``text`` (normalised here) has at least ``min_len`` characters and, when
    ``formats`` is not empty, some format fits it after look-alike correction. With
    ``char_confidences`` (used when they align with the normalised text), characters the
    recogniser was sure of are not corrected to make it fit, as in ``choose`` and
    ``vote``: a read that only fits by overriding its own sure characters is a reason to
    read again, not a sure read."""
    norm = normalize(text)
    if len(norm) < min_len:
        return False
    confs = char_confidences if len(char_confidences) == len(norm) else None
    return not formats or correct(norm, formats, confs, max_subs=max_subs)[1] is not None
