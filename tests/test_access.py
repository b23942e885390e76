"""Access decisions: table-driven over lists, patterns, tolerance and validity windows."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from gate.access import Decision, GateLists, ListEntry, decide, within_one_edit

NOW = datetime(2026, 11, 21, 12, 0)
LISTS = GateLists.model_validate(
    {
        "allow": [
            {"plate": "AB12 CDE", "label": "staff"},
            {"pattern": "^TAXI[0-9]{3}$", "label": "taxis"},
            {"plate": "KV65BZR", "label": "visitor", "valid_from": "2026-11-21T08:00",
             "valid_until": "2026-11-21T18:00"},
            {"plate": "OLD1234", "label": "expired", "valid_until": "2026-01-01T00:00"},
        ],
        "deny": [{"plate": "BAD123", "label": "banned"}, {"pattern": "^X.*", "label": "X-plates"}],
        "allow_tolerance": 1,
        "deny_tolerance": 0,
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("plate", "decision", "label", "distance"),
    [
        ("AB12CDE", Decision.ALLOW, "staff", 0),
        ("ab-12 cde", Decision.ALLOW, "staff", 0),  # normalised before matching
        ("AB12CDF", Decision.ALLOW, "staff", 1),  # one OCR slip tolerated on allow
        ("AB12CD", Decision.ALLOW, "staff", 1),  # one character missed
        ("AB12CDEE", Decision.ALLOW, "staff", 1),  # one character extra
        ("AB13CDF", Decision.UNKNOWN, "", 0),  # two slips: not this vehicle
        ("TAXI042", Decision.ALLOW, "taxis", 0),
        ("TAXI04", Decision.UNKNOWN, "", 0),  # patterns are exact
        ("KV65BZR", Decision.ALLOW, "visitor", 0),  # inside its window
        ("OLD1234", Decision.UNKNOWN, "", 0),  # expired
        ("BAD123", Decision.DENY, "banned", 0),
        ("BAD124", Decision.UNKNOWN, "", 0),  # deny lists are exact by default
        ("XAB12CDE", Decision.DENY, "X-plates", 0),  # deny wins over a tolerant allow
        ("ZZ99ZZZ", Decision.UNKNOWN, "", 0),
    ],
)
def test_decisions(plate: str, decision: Decision, label: str, distance: int) -> None:
    r = decide(plate, LISTS, NOW)
    assert (r.decision, r.label, r.distance) == (decision, label, distance)


def test_validity_window_edges() -> None:
    assert decide("KV65BZR", LISTS, datetime(2026, 11, 21, 7, 59)).decision is Decision.UNKNOWN
    assert decide("KV65BZR", LISTS, datetime(2026, 11, 21, 18, 0)).decision is Decision.UNKNOWN


def test_deny_tolerance_when_enabled() -> None:
    lists = LISTS.model_copy(update={"deny_tolerance": 1})
    assert decide("BAD124", lists, NOW).decision is Decision.DENY


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("ABC", "ABC", 0), ("ABC", "ABD", 1), ("ABC", "AB", 1), ("ABC", "XABC", 1),
     ("ABC", "ACB", None), ("ABC", "A", None), ("", "A", 1)],
)  # fmt: skip
def test_within_one_edit(a: str, b: str, d: int | None) -> None:
    assert within_one_edit(a, b) == d


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "exactly one of"),
        ({"plate": "AB1", "pattern": "A"}, "exactly one of"),
        ({"pattern": "(["}, "not a valid regular expression"),
        ({"plate": "--"}, "no letters or digits"),
        ({"plate": "AB1", "valid_from": "2026-02-01", "valid_until": "2026-01-01"}, "after"),
        ({"plate": "AB1", "colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_entries(entry: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GateLists.model_validate({"allow": [entry]})


@pytest.mark.parametrize(
    ("entry_tz", "at_tz"),
    [(True, False), (False, True), (False, False), (True, True)],
    ids=["aware-entry-naive-at", "naive-entry-aware-at", "both-naive", "both-aware"],
)
def test_naive_and_aware_times_mix_as_utc(entry_tz: bool, at_tz: bool) -> None:
    from datetime import UTC, datetime

    def t(h: int, aware: bool) -> datetime:
        return datetime(2026, 5, 1, h, tzinfo=UTC if aware else None)

    e = ListEntry(plate="AB12CDE", valid_from=t(8, entry_tz), valid_until=t(18, entry_tz))
    assert [e.active(t(h, at_tz)) for h in (7, 8, 17, 18)] == [False, True, True, False]
