"""The camera event contract (``edge_client.events``): built once, read back by the gate,
published as a JSON Schema and a README table that must not go stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_client.events import (
    SCHEMA_VERSION,
    Direction,
    EventKind,
    PlateEvent,
    VehicleEvent,
    camera_event,
    event_json_schema,
    parse_event,
)
from gate.contracts import Observation

ROOT = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "event_id": "cam1-r1-7-abc123", "camera": "cam1", "track_id": "r1-7", "plate": "KV65BZR",
    "raw_text": "KV65B2R", "confidence": 0.973129, "region": "uk", "format": "uk_current",
    "first_seen": 12.0, "last_seen": 13.5, "box": (10.04, 20.0, 110.0, 60.06),
    "vehicle_class": "car", "frame": 31, "latency_ms": 412.345, "votes": 3,
    "reported_at": 1_700_000_000.12345, "dwell_s": 2.3456, "direction": "entry",
}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "cls", "kind"),
    [
        ({}, PlateEvent, EventKind.PLATE),
        ({"kind": "plate"}, PlateEvent, EventKind.PLATE),
        ({"kind": "vehicle"}, VehicleEvent, EventKind.VEHICLE),
        ({"kind": "vehicle", "plate": ""}, VehicleEvent, EventKind.VEHICLE),
    ],
)
def test_the_kind_picks_the_model_and_json_round_trips(
    fields: dict[str, Any], cls: type, kind: EventKind
) -> None:
    ev = camera_event(**{**BASE, **fields})
    assert type(ev) is cls and ev.kind is kind
    wire = json.loads(json.dumps(ev.to_json()))  # what every sink writes
    assert wire["schema_version"] == SCHEMA_VERSION and wire["kind"] == kind.value
    assert wire["box"] == [10.0, 20.0, 110.0, 60.1]  # rounded as documented
    assert (wire["confidence"], wire["latency_ms"]) == (0.9731, 412.3)
    assert (wire["reported_at"], wire["dwell_s"], wire["direction"]) == (
        1_700_000_000.123, 2.35, "entry")  # fmt: skip
    back = parse_event(wire)
    assert type(back) is cls and back.to_json() == wire


@pytest.mark.parametrize(
    ("data", "check"),
    [
        # schema 1: plate fields only (no kind, no reported_at)
        ({k: v for k, v in BASE.items() if k not in {"reported_at", "dwell_s", "direction"}},
         lambda e: e.kind is EventKind.PLATE and e.schema_version == 1),
        # schema 2: kind + gate fields, no schema_version; "" and null mean absent
        ({**BASE, "kind": "vehicle", "plate": None, "color": "", "direction": ""},
         lambda e: e.kind is EventKind.VEHICLE and e.schema_version == 2
         and e.plate == "" and e.color is None and e.direction is None),
        # a newer edge's extra field is ignored
        ({**BASE, "schema_version": 3, "future_field": 1},
         lambda e: not hasattr(e, "future_field")),
        ({**BASE, "direction": "exit"}, lambda e: e.direction is Direction.EXIT),
    ],
)  # fmt: skip
def test_older_and_newer_events_are_read(data: dict[str, Any], check: Any) -> None:
    assert check(parse_event(data))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"event_id": None}, "event_id"),
        ({"camera": ""}, "camera"),
        ({"plate": ""}, "plate"),  # a plate event needs its plate
        ({"kind": "truck"}, "kind"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": "high"}, "confidence"),
        ({"direction": "sideways"}, "direction"),
        ({"box": [1, 2, 3]}, "box"),
        ({"dwell_s": -1}, "dwell_s"),
    ],
)
def test_malformed_events_are_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"malformed camera event: .*{named}"):
        parse_event({**BASE, **change})
    with pytest.raises(ValueError):  # the gate's reader refuses it the same way
        Observation.from_event({**BASE, **change})


@pytest.mark.parametrize("data", [None, [], "event", 3])
def test_a_non_object_is_refused(data: Any) -> None:
    with pytest.raises(ValueError, match="expected an object"):
        parse_event(data)


def test_the_builder_refuses_what_the_contract_refuses() -> None:
    with pytest.raises(ValidationError):
        camera_event(**{**BASE, "plate": ""})  # a plate event without a plate


def test_the_gate_reads_the_contract() -> None:
    obs = Observation.from_event(camera_event(**BASE).to_json())
    assert (obs.kind, obs.plate, obs.direction) == (EventKind.PLATE, "KV65BZR", Direction.ENTRY)
    assert obs.first_seen_wall == pytest.approx(1_700_000_000.123 - 0.4123)


def test_the_schema_has_both_kinds() -> None:
    schema = event_json_schema()
    assert set(schema["discriminator"]["mapping"]) == {"plate", "vehicle"}
    plate = schema["$defs"]["PlateEvent"]
    assert {"event_id", "camera", "track_id", "plate"} <= set(plate["required"])
    assert plate["properties"]["plate"]["minLength"] == 1


def test_published_schema_and_readme_table_are_current() -> None:
    """``docs/event.schema.json`` and the README table are what the models generate."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_event_schema.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
