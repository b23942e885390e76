"""Gate access decisions: allow / deny / unknown for a read plate.

Lists hold exact plates and patterns (regular expressions over the normalised plate),
each with an optional validity window. Allow entries may tolerate one OCR slip (one
substitution, insertion or deletion); deny entries match exactly unless configured
otherwise, because letting a banned vehicle through on a misread is worse than stopping
an allowed one. Deny wins over allow. Pure logic; the gate wiring (events, MQTT, latency)
is built on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alpr_common.plate_text import normalize


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"


def normalized_plate(v: str | None) -> str | None:
    """A plate given by a person (list entry, search): normalised, or ValueError."""
    if v is None:
        return None
    n = normalize(v)
    if not n:
        raise ValueError(f"plate {v!r} has no letters or digits")
    return n


def _utc(d: datetime) -> datetime:
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d


class ListEntry(BaseModel):
    """One allow/deny entry: an exact plate or a ``pattern`` (regex), optionally dated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plate: str | None = Field(None, description="exact plate (normalised: case, separators)")
    pattern: str | None = Field(None, description="regular expression over the normalised plate")
    label: str = Field("", max_length=200, description="who or what this is (shown to operators)")
    valid_from: datetime | None = Field(None, description="entry applies from this time")
    valid_until: datetime | None = Field(None, description="entry applies until this time")

    @field_validator("plate")
    @classmethod
    def _normalise(cls, v: str | None) -> str | None:
        return normalized_plate(v)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(
                    f"pattern {v!r} is not a valid regular expression: {exc}"
                ) from None
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ListEntry:
        if (self.plate is None) == (self.pattern is None):
            raise ValueError("an entry needs exactly one of `plate` or `pattern`")
        if self.valid_from and self.valid_until and _utc(self.valid_until) <= _utc(self.valid_from):
            raise ValueError("valid_until must be after valid_from")
        return self

    def active(self, at: datetime) -> bool:
        """Naive times (entries or ``at``) are taken as UTC, so mixing never raises."""
        at = _utc(at)
        return (self.valid_from is None or at >= _utc(self.valid_from)) and (
            self.valid_until is None or at < _utc(self.valid_until)
        )


class GateLists(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[ListEntry] = Field(default_factory=list)
    deny: list[ListEntry] = Field(default_factory=list)
    allow_tolerance: int = Field(0, ge=0, le=1, description="OCR slips tolerated on allow lists")
    deny_tolerance: int = Field(0, ge=0, le=1, description="OCR slips tolerated on deny lists")


@dataclass(frozen=True)
class AccessResult:
    decision: Decision
    plate: str
    matched: str | None  # the list entry's plate or pattern
    label: str
    distance: int  # edits between the read and the matched plate (0 for patterns)


def within_one_edit(a: str, b: str) -> int | None:
    """0 or 1 when ``a`` and ``b`` differ by at most one substitution, insertion or
    deletion; None otherwise."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) > 1:
        return None
    if len(a) == len(b):
        return 1 if sum(x != y for x, y in zip(a, b, strict=True)) == 1 else None
    short, long = (a, b) if len(a) < len(b) else (b, a)
    for i in range(len(long)):
        if long[:i] + long[i + 1 :] == short:
            return 1
    return None


def _match(
    plate: str, entries: Sequence[ListEntry], tolerance: int, at: datetime
) -> tuple[ListEntry, int] | None:
    best: tuple[ListEntry, int] | None = None
    for e in entries:
        if not e.active(at):
            continue
        if e.pattern is not None:
            if re.fullmatch(e.pattern, plate):
                return e, 0
            continue
        assert e.plate is not None
        d = 0 if e.plate == plate else (within_one_edit(e.plate, plate) if tolerance else None)
        if d is not None and (best is None or d < best[1]):
            best = (e, d)
            if d == 0:
                return best
    return best


def decide(plate: str, lists: GateLists, at: datetime) -> AccessResult:
    """Deny wins over allow; an exact allow match wins over a tolerant one."""
    p = normalize(plate)
    deny = _match(p, lists.deny, lists.deny_tolerance, at)
    if deny is not None:
        e, d = deny
        return AccessResult(Decision.DENY, p, e.plate or e.pattern, e.label, d)
    allow = _match(p, lists.allow, lists.allow_tolerance, at)
    if allow is not None:
        e, d = allow
        return AccessResult(Decision.ALLOW, p, e.plate or e.pattern, e.label, d)
    return AccessResult(Decision.UNKNOWN, p, None, "", 0)
