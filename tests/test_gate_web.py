"""The gate dashboard's HTTP API (``gate.web``) against a real ``History`` on
SQLite, a real ``LiveFeed`` and a real two-gate ``GateConfig``: every endpoint's answers
and errors, crop confinement, the list token, reads of vehicle data behind the token or a
login, ``/metrics``, long-poll and server-sent events, the OpenAPI document and the
security headers."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate import web
from gate.access import Decision, ListEntry, decide
from gate.auth import SESSION_COOKIE, new_session
from gate.config import GateConfig, parse_gate_config
from gate.contracts import DecisionEvent, Direction, VehicleRecord
from gate.history import History, HistoryError
from gate.live import LiveFeed
from gate.web import GateRuntime, RecordOut, create_app
from tests.gate_browser import (
    chrome,
    chrome_installed,
    screenshot_on_error,
    start_app_server,
    wait_css,
    wait_for,
)
from tests.synth import jpeg, render_plate

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 over httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN_ENV = "OVR_ALPR_TEST_GATE_TOKEN"
T0 = 1_763_726_400.0  # 2025-11-21T12:00:00Z
CAMERAS: list[dict[str, Any]] = [
    {"camera": "cam-n1", "gate": "north", "role": "plate", "status": "live", "fps": 12.5,
     "frames": 1200, "events": 7, "updated_at": T0},
    {"camera": "cam-n2", "gate": "north", "role": "overview", "status": "stale", "fps": 0.0,
     "frames": 40, "events": 2, "updated_at": T0 - 60},
    {"camera": "cam-s1", "gate": "south", "role": "plate", "status": "unknown", "fps": None,
     "frames": None, "events": None, "updated_at": None},
]  # fmt: skip


@dataclass
class Runtime:
    """A ``GateRuntime`` made of real parts, with canned camera statuses."""

    config: GateConfig
    history: History
    feed: LiveFeed = field(default_factory=LiveFeed)
    camera_rows: list[dict[str, Any]] = field(default_factory=lambda: list(CAMERAS))

    def cameras(self) -> list[dict[str, Any]]:
        return self.camera_rows


@dataclass
class Site:
    runtime: Runtime
    client: TestClient
    crops: dict[str, Path]  # name -> file written for the records


def gate_config(token_env: str | None = TOKEN_ENV) -> GateConfig:
    return parse_gate_config(
        {
            "gates": {
                "north": {"plate_camera": "cam-n1", "overview_camera": "cam-n2"},
                "south": {
                    "plate_camera": "cam-s1",
                    "lists": {"allow_tolerance": 1},
                },
            },
            "http": {"token_env": token_env},
        }
    )


def record(rid: str, **kw: Any) -> VehicleRecord:
    base: dict[str, Any] = {
        "record_id": rid,
        "gate": "north",
        "first_seen": T0,
        "plate": "AB123CD",
        "plate_confidence": 0.97,
        "plate_camera": "cam-n1",
        "decision": "allow",
        "decided_at": T0 + 0.4,
        "decision_latency_ms": 412.0,
        "event_ids": (f"ev-{rid}",),
    }
    return VehicleRecord(**(base | kw))


def make_site(tmp_path: Path, crops_dir: Path | None = None) -> Site:
    files = tmp_path / "files"
    files.mkdir()
    crops = {
        "plate": files / "plate.jpg",
        "overview": files / "overview.JPEG",
        "text": files / "secret.txt",
        "fake": files / "fake.jpg",  # a .jpg that is not a JPEG
        "link": files / "link.jpg",  # a .jpg symlink to the text file
        "missing": files / "gone.jpg",
        "dir": files / "folder.jpg",
    }
    crops["plate"].write_bytes(jpeg(render_plate("AB123CD")))
    crops["overview"].write_bytes(jpeg(render_plate("OVERVIEW")))
    crops["text"].write_text("top secret\n")
    crops["fake"].write_text("not an image\n")
    crops["link"].symlink_to(crops["text"])
    crops["dir"].mkdir()
    history = History(f"sqlite:///{tmp_path / 'history.db'}", crops_dir=crops_dir)
    p = {k: str(v) for k, v in crops.items()}
    for r in [
        record("r1", crop_path=p["plate"], overview_crop_path=p["overview"], vehicle_class="car",
               color="red", direction=Direction.ENTRY, overview_camera="cam-n2"),
        record("r2", plate="XY999ZZ", decision="deny", first_seen=T0 + 60, decided_at=T0 + 61,
               matched="XY999ZZ", list_label="banned", direction=Direction.EXIT),
        record("r3", gate="south", plate="CD456EF", plate_camera="cam-s1", decision="unknown",
               first_seen=T0 + 120, decided_at=T0 + 121),
        record("r4", plate="AB123CE", first_seen=T0 - 3600, crop_path=p["text"]),
        record("r5", plate="GH789IJ", decision=None, decided_at=None, first_seen=T0 - 7200,
               crop_path=p["missing"], overview_crop_path=p["fake"]),
        record("r6", plate="KL012MN", first_seen=T0 - 10800, crop_path=p["link"],
               overview_crop_path=p["dir"]),
    ]:  # fmt: skip
        history.save(r)
    runtime = Runtime(gate_config(), history)
    return Site(runtime, TestClient(create_app(runtime)), crops)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    s = make_site(tmp_path)
    yield s
    s.client.close()
    s.runtime.history.close()


def test_runtime_satisfies_protocol(site: Site) -> None:
    rt: GateRuntime = site.runtime  # checked by mypy; at run time: the attributes exist
    assert {"config", "history", "feed"} <= set(vars(rt)) and callable(rt.cameras)


# --- reads -----------------------------------------------------------------------------
def ids(body: dict[str, Any]) -> list[str]:
    return [r["record_id"] for r in body["items"]]


GET_CASES: list[tuple[str, Callable[[Any], bool]]] = [
    ("/api/health", lambda j: j["status"] == "ok" and j["gates"] == ["north", "south"]
     and j["live_seq"] == 0 and j["live_streams"] == 0),
    ("/api/cameras", lambda j: [c["camera"] for c in j] == ["cam-n1", "cam-n2", "cam-s1"]
     and j[0]["fps"] == 12.5 and j[1]["status"] == "stale" and j[2]["fps"] is None),
    ("/api/gates", lambda j: j == [
        {"gate": "north", "plate_camera": "cam-n1", "overview_camera": "cam-n2", "allow": 0,
         "deny": 0, "lists_version": 0, "allow_tolerance": 0, "deny_tolerance": 0},
        {"gate": "south", "plate_camera": "cam-s1", "overview_camera": None, "allow": 0,
         "deny": 0, "lists_version": 0, "allow_tolerance": 1, "deny_tolerance": 0}]),
    ("/api/stats", lambda j: j == {"records": 6, "by_decision": {
        "allow": 3, "deny": 1, "unknown": 1, "undecided": 1}}),
    ("/api/records", lambda j: j["total"] == 6 and ids(j) == ["r3", "r2", "r1", "r4", "r5", "r6"]),
    ("/api/records?plate=ab-123%20cd", lambda j: j["total"] == 1 and ids(j) == ["r1"]),
    ("/api/records?plate=AB123CF&fuzzy=true", lambda j: j["total"] is None
     and ids(j) == ["r1", "r4"]),
    ("/api/records?plate=AB123CF&fuzzy=true&max_distance=0", lambda j: ids(j) == []),
    ("/api/records?gate=south", lambda j: j["total"] == 1 and ids(j) == ["r3"]),
    ("/api/records?camera=cam-n2", lambda j: ids(j) == ["r1"]),
    ("/api/records?decision=deny", lambda j: ids(j) == ["r2"]),
    ("/api/records?direction=entry", lambda j: ids(j) == ["r1"]),
    ("/api/records?since=2025-11-21T12:00:30Z&until=2025-11-21T13:01:30%2B01:00",
     lambda j: ids(j) == ["r2"]),  # until 12:01:30Z (an offset) excludes r3 (12:02Z)
    ("/api/records?since=2025-11-21T11:00:00", lambda j: j["total"] == 4),  # naive = UTC
    ("/api/records?limit=2&offset=1", lambda j: j["total"] == 6 and ids(j) == ["r2", "r1"]
     and (j["limit"], j["offset"]) == (2, 1)),
    ("/api/records?plate=ZZ000ZZ", lambda j: j == {"total": 0, "limit": 100, "offset": 0,
                                                   "items": []}),
    ("/api/records/r1", lambda j: j["plate"] == "AB123CD" and j["direction"] == "entry"
     and j["crop_url"] == "/api/records/r1/crop"
     and j["overview_crop_url"] == "/api/records/r1/crop?which=overview"
     and j["event_ids"] == ["ev-r1"] and j["decision_latency_ms"] == 412.0),
    ("/api/records/r2", lambda j: j["crop_url"] is None and j["overview_crop_url"] is None
     and j["list_label"] == "banned"),
    ("/api/gates/north/lists", lambda j: j == {"gate": "north", "version": 0,
     "allow_tolerance": 0, "deny_tolerance": 0, "entries": []}),
    ("/api/live", lambda j: j == {"latest": 0, "items": []}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "check"), GET_CASES, ids=[c[0] for c in GET_CASES])
def test_get_endpoints(site: Site, path: str, check: Callable[[Any], bool]) -> None:
    r = site.client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert check(r.json()), r.json()


def test_records_items_carry_every_record_field(site: Site) -> None:
    item = site.client.get("/api/records/r1").json()
    expected = record("r1").to_json().keys() | {"crop_url", "overview_crop_url"}
    assert expected <= item.keys()
    assert {f.name for f in dataclasses.fields(VehicleRecord)} <= RecordOut.model_fields.keys()


NOT_FOUND = [
    "/api/records/nope",
    "/api/records/nope/crop",
    "/api/gates/east/lists",
    "/api/nothing",
    "/static/nothing.js",
    "/static/../web.py",
    "/docs",
    "/redoc",
]


@pytest.mark.parametrize("path", NOT_FOUND)
def test_not_found(site: Site, path: str) -> None:
    r = site.client.get(path)
    assert r.status_code == 404, r.text


INVALID: list[tuple[str, str]] = [
    ("/api/records?limit=0", "limit"),
    ("/api/records?limit=1001", "limit"),
    ("/api/records?offset=-1", "offset"),
    ("/api/records?max_distance=3", "max_distance"),
    ("/api/records?fuzzy=perhaps", "fuzzy"),
    ("/api/records?since=yesterday", "since"),
    ("/api/records?until=2025-13-01T00:00:00", "until"),
    ("/api/records?since=2025-11-21T12:00:00Z&until=2025-11-21T11:00:00Z",
     "until must be after since"),
    ("/api/records?decision=maybe", "decision"),
    ("/api/records?direction=sideways", "direction"),
    ("/api/records?plate=---", "has no letters or digits"),
    ("/api/records?colour=red", "colour"),
    ("/api/records/r1/crop?which=rear", "which"),
    ("/api/live?after=-1", "after"),
    ("/api/live?wait=soon", "wait"),
    ("/api/live/stream?after=x", "after"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "names"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_params_are_422_with_a_clear_message(site: Site, path: str, names: str) -> None:
    r = site.client.get(path)
    assert r.status_code == 422, r.text
    body = r.json()
    assert names in body["message"], body["message"]
    assert isinstance(body["detail"], list) and body["detail"]


def test_history_failure_is_503(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_a: Any) -> None:
        raise HistoryError("history database sqlite:///x.db: disk I/O error")

    monkeypatch.setattr(site.runtime.history, "search", down)
    r = site.client.get("/api/records")
    assert r.status_code == 503 and "disk I/O error" in r.json()["detail"]


def test_camera_rows_are_validated(site: Site) -> None:
    site.runtime.camera_rows = [{**CAMERAS[0], "detector_ms": 8.5}]
    assert site.client.get("/api/cameras").json()[0]["detector_ms"] == 8.5  # extras kept
    site.runtime.camera_rows = [{**CAMERAS[0], "status": "exploded"}]
    with pytest.raises(Exception, match="status"):  # a runtime bug, not hidden
        site.client.get("/api/cameras")


# --- crops -----------------------------------------------------------------------------
CROPS: list[tuple[str, str, str | None]] = [
    ("/api/records/r1/crop", "plate", "plate"),
    ("/api/records/r1/crop?which=plate", "plate", "plate"),
    ("/api/records/r1/crop?which=overview", "overview (.JPEG)", "overview"),
    ("/api/records/r2/crop", "record without a crop", None),
    ("/api/records/r4/crop", "crop_path is a .txt file", None),
    ("/api/records/r5/crop", "crop_path is a missing .jpg", None),
    ("/api/records/r5/crop?which=overview", ".jpg that is not a JPEG", None),
    ("/api/records/r6/crop", ".jpg symlink to a text file", None),
    ("/api/records/r6/crop?which=overview", "a directory named .jpg", None),
    ("/api/records/r1/crop?which=overview&path=/etc/passwd", "extra params ignored", "overview"),
]


@pytest.mark.parametrize(("path", "why", "served"), CROPS, ids=[c[1] for c in CROPS])
def test_crops_serve_only_the_records_jpeg(
    site: Site, path: str, why: str, served: str | None
) -> None:
    r = site.client.get(path)
    if served is None:
        assert r.status_code == 404, r.text
        assert b"secret" not in r.content and b"not an image" not in r.content
    else:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert r.content == site.crops[served].read_bytes()


def test_crops_copied_by_history_are_still_checked(tmp_path: Path) -> None:
    """With ``crops_dir``, History copies any existing crop file to ``<id>.jpg``; a text
    file named by a record must still not be served under that name."""
    s = make_site(tmp_path, crops_dir=tmp_path / "crops")
    stored = s.runtime.history.get("r4")
    assert stored is not None and stored.crop_path is not None
    assert stored.crop_path.endswith(".jpg") and Path(stored.crop_path).is_file()
    assert s.client.get("/api/records/r4/crop").status_code == 404
    r = s.client.get("/api/records/r1/crop")
    assert r.status_code == 200 and r.content == s.crops["plate"].read_bytes()
    s.runtime.history.close()


# --- lists -----------------------------------------------------------------------------
def test_list_entries_add_list_and_remove(site: Site) -> None:
    c, h = site.client, site.runtime.history
    r = c.post("/api/gates/north/lists/deny", json={"plate": "xy-999 zz", "label": "banned"})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["gate"] == "north" and entry["kind"] == "deny"
    assert entry["entry"] == {"plate": "XY999ZZ", "pattern": None, "label": "banned",
                              "valid_from": None, "valid_until": None}  # fmt: skip
    created = datetime.fromisoformat(entry["created_at"])
    assert created.tzinfo is not None and abs(created.timestamp() - time.time()) < 60
    # the decision path sees it
    lists = h.lists("north")
    assert decide("XY999ZZ", lists, datetime.now(UTC)).decision is Decision.DENY
    assert decide("XY999ZZ", h.lists("south"), datetime.now(UTC)).decision is Decision.UNKNOWN

    r2 = c.post(
        "/api/gates/north/lists/allow",
        json={"pattern": "^TAXI[0-9]{3}$", "label": "taxis",
              "valid_from": "2025-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
    )  # fmt: skip
    assert r2.status_code == 201, r2.text
    again = c.post("/api/gates/north/lists/deny", json={"plate": "XY999ZZ", "label": "other"})
    assert again.status_code == 201 and again.json()["id"] == entry["id"]  # idempotent

    body = c.get("/api/gates/north/lists").json()
    assert [e["id"] for e in body["entries"]] == [entry["id"], r2.json()["id"]]
    assert body["version"] == h.lists_version("north") == 2
    gates = {g["gate"]: g for g in c.get("/api/gates").json()}
    assert (gates["north"]["allow"], gates["north"]["deny"]) == (1, 1)
    assert (gates["south"]["allow"], gates["south"]["deny"]) == (0, 0)

    assert c.delete(f"/api/gates/south/lists/{entry['id']}").status_code == 404  # other gate
    d = c.delete(f"/api/gates/north/lists/{entry['id']}")
    assert d.status_code == 204 and d.content == b""
    assert c.delete(f"/api/gates/north/lists/{entry['id']}").status_code == 404
    assert decide("XY999ZZ", h.lists("north"), datetime.now(UTC)).decision is Decision.UNKNOWN
    assert [e["id"] for e in c.get("/api/gates/north/lists").json()["entries"]] == [r2.json()["id"]]


BAD_ENTRIES: list[tuple[str, str, Any, int, str]] = [
    ("/api/gates/north/lists/deny", "both", {"plate": "AB1", "pattern": "^A"}, 422,
     "exactly one of `plate` or `pattern`"),
    ("/api/gates/north/lists/deny", "neither", {"label": "x"}, 422, "exactly one"),
    ("/api/gates/north/lists/deny", "bad regex", {"pattern": "(["}, 422,
     "not a valid regular expression"),
    ("/api/gates/north/lists/deny", "no plate chars", {"plate": "--"}, 422, "no letters"),
    ("/api/gates/north/lists/deny", "extra field", {"plate": "AB1", "colour": "red"}, 422,
     "colour"),
    ("/api/gates/north/lists/deny", "window backwards",
     {"plate": "AB1", "valid_from": "2026-01-02T00:00", "valid_until": "2026-01-01T00:00"},
     422, "valid_until must be after valid_from"),
    ("/api/gates/north/lists/deny", "label too long", {"plate": "AB1", "label": "x" * 201},
     422, "label"),
    ("/api/gates/north/lists/deny", "not an object", ["AB1"], 422, ""),
    ("/api/gates/north/lists/maybe", "unknown kind", {"plate": "AB1"}, 422, "kind"),
    ("/api/gates/east/lists/deny", "unknown gate", {"plate": "AB1"}, 404, "east"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "why", "body", "status", "says"), BAD_ENTRIES, ids=[c[1] for c in BAD_ENTRIES]
)
def test_bad_list_changes(
    site: Site, path: str, why: str, body: Any, status: int, says: str
) -> None:
    r = site.client.post(path, json=body)
    assert r.status_code == status, r.text
    j = r.json()
    assert says in (j.get("message") or j["detail"]), j
    assert site.runtime.history.entries("north") == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", '{"plate": "AB1"}'), ("application/x-www-form-urlencoded", "plate=AB1")],
)
def test_list_changes_take_only_json(site: Site, content_type: str, body: str) -> None:
    """What a cross-site HTML form can send (no CORS preflight) is refused, so a page on
    another site cannot edit the lists through an operator's browser."""
    r = site.client.post(
        "/api/gates/north/lists/deny", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == 422, r.text
    assert site.runtime.history.entries("north") == []


def test_bad_delete_ids(site: Site) -> None:
    assert site.client.delete("/api/gates/north/lists/abc").status_code == 422
    assert site.client.delete("/api/gates/north/lists/999").status_code == 404
    assert site.client.delete("/api/gates/east/lists/1").status_code == 404


TOKEN_CASES: list[tuple[str | None, str, dict[str, str], int]] = [
    (None, "post", {}, 201),  # variable unset: open
    ("", "post", {}, 201),  # set but empty: open
    (None, "delete", {}, 204),
    ("s3cret-tøken", "post", {}, 401),
    ("s3cret-tøken", "post", {"Authorization": "Bearer wrong"}, 401),
    ("s3cret-tøken", "post", {"Authorization": "Bearer s3cret-tøke"}, 401),
    ("s3cret-tøken", "post", {"Authorization": "Basic czNjcmV0"}, 401),
    ("s3cret-tøken", "post", {"Authorization": "Bearer"}, 401),
    ("s3cret-tøken", "post", {"Authorization": "Bearer s3cret-tøken"}, 201),
    ("s3cret-tøken", "post", {"Authorization": "bearer s3cret-tøken"}, 201),
    ("s3cret-tøken", "delete", {}, 401),
    ("s3cret-tøken", "delete", {"Authorization": "Bearer nope"}, 401),
    ("s3cret-tøken", "delete", {"Authorization": "Bearer s3cret-tøken"}, 204),
    ("s3cret-tøken", "get", {}, 200),  # reads stay open
]


@pytest.mark.parametrize(("token", "method", "headers", "status"), TOKEN_CASES)
def test_list_changes_need_the_token_when_set(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    method: str,
    headers: dict[str, str],
    status: int,
) -> None:
    stored = site.runtime.history.add_entry("north", "allow", ListEntry(plate="AB123CD"))
    if token is not None:
        monkeypatch.setenv(TOKEN_ENV, token)
    # httpx encodes header values as ASCII: send the non-ASCII token as UTF-8 bytes
    raw = {k: v.encode() for k, v in headers.items()}
    if method == "post":
        r = site.client.post("/api/gates/north/lists/deny", json={"plate": "ZZ1"}, headers=raw)
    elif method == "delete":
        r = site.client.delete(f"/api/gates/north/lists/{stored.id}", headers=raw)
    else:
        r = site.client.get("/api/gates/north/lists", headers=raw)
    assert r.status_code == status, r.text
    entries = site.runtime.history.entries("north")
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
        assert [e.id for e in entries] == [stored.id]  # nothing changed
    elif method == "post":
        assert [e.entry.plate for e in entries] == ["AB123CD", "ZZ1"]
    elif method == "delete":
        assert entries == []


# --- live ------------------------------------------------------------------------------
def decision_payload(rec: VehicleRecord) -> dict[str, Any]:
    ev = DecisionEvent(
        event_id=f"dec-{rec.record_id}",
        gate=rec.gate,
        camera=rec.plate_camera or "",
        record_id=rec.record_id,
        plate=rec.plate,
        decision=rec.decision or "unknown",
        matched=rec.matched,
        label=rec.list_label,
        confidence=rec.plate_confidence,
        latency_ms=rec.decision_latency_ms or 0.0,
        decided_at=rec.decided_at or T0,
    )
    return ev.to_json() | {"record": rec.to_json()}


def test_long_poll_returns_items_already_there(site: Site) -> None:
    feed = site.runtime.feed
    s1 = feed.publish("decision", decision_payload(record("r1")))
    s2 = feed.publish("record", record("r1", color="blue").to_json())
    j = site.client.get("/api/live?after=0").json()
    assert j["latest"] == s2
    assert [(i["seq"], i["kind"]) for i in j["items"]] == [(s1, "decision"), (s2, "record")]
    assert j["items"][0]["data"]["record"]["record_id"] == "r1"
    assert site.client.get(f"/api/live?after={s1}").json()["items"][0]["seq"] == s2
    # a sequence number from before a restart (beyond the newest): start again
    assert [i["seq"] for i in site.client.get("/api/live?after=999").json()["items"]] == [s1, s2]


@pytest.mark.timeout(30)
def test_long_poll_waits_for_a_published_item(site: Site) -> None:
    feed = site.runtime.feed
    first = feed.publish("record", record("r1").to_json())
    timer = threading.Timer(0.4, feed.publish, ("decision", decision_payload(record("r2"))))
    timer.start()
    t = time.monotonic()
    j = site.client.get(f"/api/live?after={first}&wait=10").json()
    elapsed = time.monotonic() - t
    timer.join()
    assert 0.3 < elapsed < 5, elapsed
    assert [(i["kind"], i["data"]["record_id"]) for i in j["items"]] == [("decision", "r2")]


@pytest.mark.timeout(30)
def test_long_poll_wait_is_capped(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "LONG_POLL_MAX_S", 0.3)
    t = time.monotonic()
    j = site.client.get("/api/live?after=0&wait=3600").json()
    assert time.monotonic() - t < 3 and j == {"latest": 0, "items": []}


def read_events(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """Parse ``count`` server-sent events (comment lines become ``{"comment": ...}``)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            events.append({"comment": line[1:].strip()})
        elif line == "":
            if current:
                events.append(current)
                current = {}
        else:
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")
        if len(events) >= count:
            break
    return events


@pytest.mark.timeout(30)
def test_event_stream_resumes_and_follows(site: Site) -> None:
    feed = site.runtime.feed
    s1 = feed.publish("decision", decision_payload(record("r1")))
    s2 = feed.publish("decision", decision_payload(record("r2", decision="deny")))
    with site.client.stream("GET", "/api/live/stream", headers={"Last-Event-ID": str(s1)}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
        lines = r.iter_lines()
        retry, ev2 = read_events(lines, 2)
        assert retry == {"retry": "3000"}
        assert (ev2["id"], ev2["event"]) == (str(s2), "decision")
        assert json.loads(ev2["data"])["record"]["decision"] == "deny"
        threading.Timer(0.2, feed.publish, ("record", record("r2", color="grey").to_json())).start()
        (ev3,) = read_events(lines, 1)
        assert (ev3["id"], ev3["event"]) == (str(s2 + 1), "record")
        assert json.loads(ev3["data"])["color"] == "grey"


@pytest.mark.timeout(30)
def test_event_stream_after_param_and_heartbeat(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "SSE_HEARTBEAT_S", 0.2)
    feed = site.runtime.feed
    s1 = feed.publish("record", record("r1").to_json())
    with site.client.stream("GET", f"/api/live/stream?after={s1}") as r:
        events = read_events(r.iter_lines(), 2)
    assert events == [{"retry": "3000"}, {"comment": "keep-alive"}]  # nothing replayed


@pytest.mark.timeout(60)
def test_event_stream_ends_when_the_client_leaves(site: Site) -> None:
    """Against a real uvicorn server: a disconnected client's stream is closed (the
    open-stream count drops back), and ``close_live_streams`` ends the rest."""
    app = create_app(site.runtime)
    url, stop = start_app_server(app)
    try:

        def open_streams() -> int:
            return int(httpx.get(f"{url}/api/health").json()["live_streams"])

        def wait_streams(n: int) -> None:
            deadline = time.monotonic() + 10
            while open_streams() != n:
                assert time.monotonic() < deadline, f"live_streams never became {n}"
                time.sleep(0.05)

        with httpx.Client(timeout=10) as client, client.stream("GET", f"{url}/api/live/stream"):
            wait_streams(1)
        wait_streams(0)

        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{url}/api/live/stream") as r,
        ):
            wait_streams(1)
            site.runtime.feed.publish("decision", decision_payload(record("r3")))
            lines = r.iter_lines()
            (event,) = [e for e in read_events(lines, 2) if "retry" not in e]
            assert event["event"] == "decision" and '"record_id":"r3"' in event["data"]
            web.close_live_streams(app)
            assert list(lines) == []  # the server ended the stream
        wait_streams(0)
    finally:
        stop()


# --- documents, pages, headers ---------------------------------------------------------
EXPECTED_PATHS = {
    "/api/health": {"get"},
    "/api/live": {"get"},
    "/api/live/stream": {"get"},
    "/api/records": {"get"},
    "/api/records/{record_id}": {"get"},
    "/api/records/{record_id}/crop": {"get"},
    "/api/cameras": {"get"},
    "/api/gates": {"get"},
    "/api/stats": {"get"},
    "/api/gates/{gate}/lists": {"get"},
    "/api/gates/{gate}/lists/{kind}": {"post"},
    "/api/gates/{gate}/lists/{entry_id}": {"delete"},
}


def test_openapi_document(site: Site) -> None:
    r = site.client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = json.loads(r.text)
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "OVR-ALPR gate"
    assert {p: set(ops) for p, ops in doc["paths"].items()} == EXPECTED_PATHS
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and op.get("tags"), (method, path)
    params = {p["name"] for p in doc["paths"]["/api/records"]["get"]["parameters"]}
    assert params == {"plate", "fuzzy", "max_distance", "camera", "gate", "since", "until",
                      "decision", "direction", "limit", "offset"}  # fmt: skip
    crop = doc["paths"]["/api/records/{record_id}/crop"]["get"]["responses"]["200"]
    assert "image/jpeg" in crop["content"]
    post = doc["paths"]["/api/gates/{gate}/lists/{kind}"]["post"]
    assert "201" in post["responses"] and post["security"]
    assert "RecordPageOut" in doc["components"]["schemas"]
    # every $ref resolves inside the document
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', r.text)
    assert refs and set(refs) <= doc["components"]["schemas"].keys()


HEADER_PATHS = [
    "/",
    "/static/app.js",
    "/static/app.css",
    "/api/health",
    "/api/records",
    "/api/records/r1/crop",
    "/api/records/nope",
    "/api/records?limit=0",
    "/openapi.json",
]


@pytest.mark.parametrize("path", HEADER_PATHS)
def test_security_headers(site: Site, path: str) -> None:
    r = site.client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert csp[directive] == "'self'", (directive, csp)
    assert csp["default-src"] == "'none'" and "unsafe" not in r.headers["content-security-policy"]


def test_dashboard_page_is_self_contained(site: Site) -> None:
    page = site.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
    assert re.search(r"<script[^>]*>\s*[^<\s]", html) is None  # no inline script
    assert not re.search(r"\sstyle=|\son[a-z]+=", html)  # no inline styles or handlers
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith("/static/"), ref
        assert site.client.get(ref).status_code == 200
    for ident in (
        "live",
        "search-plate",
        "search-submit",
        "results",
        "list-gate",
        "entry-plate",
        "entry-kind",
        "entry-add",
        "entries",
        "cameras",
        "api-token",
    ):
        assert f'id="{ident}"' in html, ident
    js = site.client.get("/static/app.js").text
    code = re.sub(r"^\s*//.*$", "", js, flags=re.M)  # the header comment names innerHTML
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", code)
    for text in (html, js, site.client.get("/static/app.css").text):
        assert not re.search(r"https?://", text)  # nothing from the internet


# --- vehicle data behind the token or a login (http.token_env set) ----------------------
SECRET = "s3cret-tøken"


def bearer(token: str) -> dict[str, bytes]:
    return {"Authorization": f"Bearer {token}".encode()}  # httpx: non-ASCII as UTF-8 bytes


def session_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def log_in(client: TestClient, password: str) -> httpx.Response:
    r = client.post("/login", data={"password": password}, follow_redirects=False)
    client.cookies.clear()  # every request below names its credentials itself
    return r


def credentials(kind: str, client: TestClient) -> dict[str, Any]:
    now = time.time()
    if kind == "bearer":
        return bearer(SECRET)
    if kind == "session":
        return session_cookie(log_in(client, SECRET).cookies[SESSION_COOKIE])
    table: dict[str, dict[str, Any]] = {
        "none": {},
        "wrong bearer": bearer("s3cret-tøke"),
        "basic": {"Authorization": b"Basic czNjcmV0"},
        "expired session": session_cookie(new_session(SECRET, now - 7200, 3600)),
        "other token's session": session_cookie(new_session("another", now, 3600)),
        "forged session": session_cookie(f"v1.{int(now) + 3600}.00aa.AAAA"),
        "garbage cookie": session_cookie("x" * 50),
    }
    return table[kind]


CREDENTIALS: list[tuple[str, int]] = [
    ("none", 401),
    ("bearer", 200),
    ("wrong bearer", 401),
    ("basic", 401),
    ("session", 200),
    ("expired session", 401),
    ("other token's session", 401),
    ("forged session", 401),
    ("garbage cookie", 401),
]
PERSONAL = ["/api/records", "/api/records/r1", "/api/records/r1/crop", "/api/live"]


@pytest.mark.parametrize(("kind", "status"), CREDENTIALS, ids=[c[0] for c in CREDENTIALS])
def test_crops_need_the_token_or_a_login(
    site: Site, monkeypatch: pytest.MonkeyPatch, kind: str, status: int
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    r = site.client.get("/api/records/r1/crop", headers=credentials(kind, site.client))
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert "/login" in r.json()["detail"]
    else:
        assert r.content == site.crops["plate"].read_bytes()


@pytest.mark.parametrize("path", PERSONAL)
@pytest.mark.parametrize(("kind", "status"), [("none", 401), ("bearer", 200), ("session", 200)])
def test_history_needs_the_token_or_a_login(
    site: Site, monkeypatch: pytest.MonkeyPatch, path: str, kind: str, status: int
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    r = site.client.get(path, headers=credentials(kind, site.client))
    assert r.status_code == status, r.text
    if status == 401:
        assert b"AB123CD" not in r.content
    elif path.endswith("/crop"):
        assert r.headers["content-type"] == "image/jpeg"
    elif path != "/api/live":
        assert b"AB123CD" in r.content


def test_event_stream_needs_the_token(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    r = site.client.get("/api/live/stream")
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"


OPEN_PATHS = [
    "/api/health",
    "/api/cameras",
    "/api/gates",
    "/api/stats",
    "/api/gates/north/lists",
    "/static/app.js",
    "/openapi.json",
    "/metrics",
    "/login",
]


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_status_and_shell_stay_open(site: Site, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    assert site.client.get(path).status_code == 200


def test_browser_login_flow(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    c = site.client
    r = c.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    page = c.get("/login")
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="password"' in page.text and 'action="/login"' in page.text
    assert "<script" not in page.text and " style=" not in page.text  # the CSP holds
    assert "content-security-policy" in page.headers

    wrong = log_in(c, "guess")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert 'id="login-error"' in wrong.text

    ok = log_in(c, SECRET)
    assert (ok.status_code, ok.headers["location"]) == (303, "/")
    cookie = ok.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age", "path"} <= attrs and "secure" not in attrs
    assert "samesite=strict" in cookie.lower() and "max-age=43200" in cookie.lower()
    value = ok.cookies[SESSION_COOKIE]
    dash = c.get("/", headers=session_cookie(value), follow_redirects=False)
    assert dash.status_code == 200 and 'id="live"' in dash.text
    # list changes take the login too (SameSite=Strict, JSON only: not forgeable cross-site)
    add = c.post("/api/gates/north/lists/deny", json={"plate": "ZZ1"},
                 headers=session_cookie(value))  # fmt: skip
    assert add.status_code == 201, add.text

    out = c.post("/logout", follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert re.search(rf'{SESSION_COOKIE}=(""|);', out.headers["set-cookie"])
    assert "max-age=0" in out.headers["set-cookie"].lower()

    monkeypatch.setenv(TOKEN_ENV, "rotated-token")  # a new token ends every session
    assert c.get("/api/records", headers=session_cookie(value)).status_code == 401


BAD_LOGINS: list[tuple[str, dict[str, Any], int]] = [
    ("json body", {"json": {"password": SECRET}}, 415),
    ("no field", {"data": {"user": "x"}}, 401),
    ("huge form", {"data": {"password": "x" * 5000}}, 413),
]


@pytest.mark.parametrize(("why", "kw", "status"), BAD_LOGINS, ids=[b[0] for b in BAD_LOGINS])
def test_bad_logins(
    site: Site, monkeypatch: pytest.MonkeyPatch, why: str, kw: dict[str, Any], status: int
) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    r = site.client.post("/login", follow_redirects=False, **kw)
    assert r.status_code == status, r.text
    assert "set-cookie" not in r.headers


def test_without_a_token_login_is_not_needed(site: Site) -> None:
    assert site.client.get("/", follow_redirects=False).status_code == 200
    r = site.client.get("/login", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert site.client.get("/api/records/r1/crop").status_code == 200


def test_secure_cookie_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    cfg = parse_gate_config({
        "gates": {"north": {"plate_camera": "cam-n1"}},
        "http": {"token_env": TOKEN_ENV, "secure_cookie": True, "session_hours": 1},
    })  # fmt: skip
    history = History(f"sqlite:///{tmp_path / 'h.db'}")
    with TestClient(create_app(Runtime(cfg, history))) as client:
        r = log_in(client, SECRET)
    history.close()
    cookie = r.headers["set-cookie"].lower()
    assert "; secure" in cookie and "max-age=3600" in cookie


METRICS_MODES: list[tuple[str, str | None, dict[str, Any], int]] = [
    ("open", SECRET, {}, 200),
    ("token", SECRET, {}, 401),
    ("token", SECRET, bearer(SECRET), 200),
    ("token", SECRET, bearer("nope"), 401),
    ("token", None, {}, 200),  # no token configured: open
    ("off", None, {}, 404),
]


@pytest.mark.parametrize(("mode", "token", "headers", "status"), METRICS_MODES)
def test_metrics_endpoint_modes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    token: str | None,
    headers: dict[str, Any],
    status: int,
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    if token is not None:
        monkeypatch.setenv(TOKEN_ENV, token)
    cfg = parse_gate_config({
        "gates": {"north": {"plate_camera": "cam-n1"}},
        "http": {"token_env": TOKEN_ENV, "metrics": mode},
    })  # fmt: skip
    history = History(f"sqlite:///{tmp_path / 'h.db'}")
    with TestClient(create_app(Runtime(cfg, history))) as client:
        r = client.get("/metrics", headers=headers)
    history.close()
    assert r.status_code == status, r.text
    if status == 200:
        assert r.headers["content-type"].startswith("text/plain")
        assert 'alpr_build_info{process="gate"' in r.text


@pytest.mark.browser
@pytest.mark.skipif(not chrome_installed(), reason="Chromium/ChromeDriver not installed")
def test_dashboard_in_a_browser_after_login(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Chromium: the dashboard sends it to the login form; once logged in, the live
    stream, the history search and its crops work on the session cookie alone."""
    from selenium.webdriver.common.by import By

    monkeypatch.setenv(TOKEN_ENV, SECRET)
    url, stop = start_app_server(create_app(site.runtime))
    driver = chrome()
    try:
        with screenshot_on_error(driver, site.crops["plate"].parent / "login-failure.png"):
            driver.get(url + "/")
            wait_for(lambda: driver.current_url.endswith("/login"), 10, "the login page")
            driver.find_element(By.ID, "login-password").send_keys("guess")
            driver.find_element(By.ID, "login-submit").click()
            assert "Wrong token" in wait_css(driver, "#login-error").text
            driver.find_element(By.ID, "login-password").send_keys(SECRET)
            driver.find_element(By.ID, "login-submit").click()
            wait_css(driver, "#conn[data-state='live']", 15)  # the event stream is open
            assert driver.execute_script("return document.cookie") == ""  # HttpOnly
            driver.find_element(By.ID, "search-plate").send_keys("AB123CD")
            driver.find_element(By.ID, "search-submit").click()
            row = wait_css(driver, "#results tbody tr.result[data-plate='AB123CD']", 15)
            thumb = row.find_element(By.CSS_SELECTOR, "img.thumb")
            wait_for(
                lambda: driver.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth", thumb
                ),
                15,
                "the crop to load with the session cookie",
            )
    finally:
        driver.quit()
        stop()
