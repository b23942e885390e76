"""The gate's history database: the same tests against SQLite (embedded, in tmp_path) and a
real PostgreSQL server (a temporary database created for the session and dropped after).

PostgreSQL: ``postgresql+psycopg://postgres@127.0.0.1:5432/test`` unless the environment
variable ``OVR_ALPR_TEST_PG_URL`` names another server; its user must be allowed to create
databases. When the server cannot be reached the PostgreSQL cases are skipped (the reason
says how to provide one); the SQLite cases always run.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from gate.access import Decision, GateLists, ListEntry, decide
from gate.contracts import Direction, VehicleRecord
from gate.history import (
    Base,
    History,
    HistoryError,
    HistoryQuery,
    plate_key,
)

PG_URL = os.environ.get("OVR_ALPR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0_DT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
T0 = T0_DT.timestamp()


# --- backends -----------------------------------------------------------------------------
def _admin_url(url: URL) -> URL:
    return url.set(database="postgres")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A uniquely named temporary database on the PostgreSQL server, dropped at the end."""
    base = make_url(PG_URL)
    admin = create_engine(
        _admin_url(base),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )
    name = f"ovr_alpr_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, no CREATEDB right, ...
        admin.dispose()
        pytest.skip(
            f"PostgreSQL at {base.render_as_string(hide_password=True)} is not usable "
            f"({' '.join(str(getattr(exc, 'orig', None) or exc).split())[:200]}); set "
            "OVR_ALPR_TEST_PG_URL=postgresql+psycopg://USER[:PASSWORD]@HOST:PORT/DB to a "
            "server where USER may CREATE DATABASE"
        )
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": name},
            )
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database URL of one backend, empty at the start of each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/gate/history.db"  # the folder does not exist yet
        return
    url: str = request.getfixturevalue("pg_database")
    yield url
    engine = create_engine(url, poolclass=NullPool)
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def crops_dir(tmp_path: Path) -> Path:
    return tmp_path / "crops"


@pytest.fixture
def history(db_url: str, crops_dir: Path) -> Iterator[History]:
    h = History(db_url, crops_dir=crops_dir)
    yield h
    h.close()


# --- records ------------------------------------------------------------------------------
FULL = VehicleRecord(
    record_id="north-1732190400-7",
    gate="north",
    first_seen=T0 + 0.125,
    plate="KV01MXE",
    plate_confidence=0.9375,
    plate_camera="cam-n",
    overview_camera="ov-n",
    vehicle_class="car",
    color="blue",
    direction=Direction.ENTRY,
    dwell_s=12.5,
    decision="allow",
    matched="KV01MXE",
    list_label="staff: J. Doe",
    decided_at=T0 + 0.4,
    decision_latency_ms=275.25,
    crop_path="/nonexistent/crops/plate.jpg",
    overview_crop_path="/nonexistent/crops/overview.jpg",
    event_ids=("cam-n:41:plate", "ov-n:17:vehicle"),
)
MINIMAL = VehicleRecord(record_id="south-1", gate="south", first_seen=T0)
DENIED_EXIT = FULL.with_(
    record_id="north-2",
    direction=Direction.EXIT,
    decision="deny",
    matched="^X.*",
    overview_camera=None,
    overview_crop_path=None,
    event_ids=("cam-n:42:plate",),
)


@pytest.mark.parametrize(
    "record", [FULL, MINIMAL, DENIED_EXIT], ids=["every-field", "defaults-and-none", "exit-deny"]
)
def test_save_get_round_trip(history: History, record: VehicleRecord) -> None:
    assert history.save(record) == record  # missing crop files are kept as given
    assert history.get(record.record_id) == record


def test_get_unknown_record(history: History) -> None:
    assert history.get("no-such-record") is None


def test_save_upserts_every_field(history: History) -> None:
    history.save(FULL.with_(record_id="r", plate="", decision=None, event_ids=("a",)))
    updated = FULL.with_(record_id="r", direction=Direction.EXIT, dwell_s=None, color=None)
    history.save(updated)
    assert history.get("r") == updated
    assert history.count(HistoryQuery()) == 1
    assert history.search(HistoryQuery(plate="KV01MXE")) == [updated]  # plate_key updated too


# id, plate, gate, plate camera, overview camera, seconds after T0, decision, direction
DATASET = [
    ("r1", "KV01MXE", "north", "cam-n", "ov-n", 0, "allow", "entry"),
    ("r2", "KV01MXF", "north", "cam-n", "ov-n", 60, "deny", "exit"),  # one substitution
    ("r3", "KVOIMXE", "south", "cam-s", None, 120, "unknown", "entry"),  # O/0 + I/1 twins
    ("r4", "KV01MXEE", "south", "cam-s", "ov-s", 180, None, None),  # one insertion
    ("r5", "KV01MFF", "north", "cam-n", None, 240, "unknown", "exit"),  # two substitutions
    ("r6", "HN99RUM", "south", "cam-s", "ov-s", 300, "allow", "entry"),
    ("r7", "", "north", None, "ov-n", 360, None, None),  # seen by the overview camera only
    ("r8", "KV01MXE", "south", "cam-s", "ov-s", 420, "allow", "exit"),  # r1's plate again
]


def _dataset() -> list[VehicleRecord]:
    return [
        VehicleRecord(
            record_id=rid,
            gate=gate,
            first_seen=T0 + dt,
            plate=plate,
            plate_confidence=0.9,
            plate_camera=pcam,
            overview_camera=ocam,
            decision=dec,
            direction=Direction(dirn) if dirn else None,
        )
        for rid, plate, gate, pcam, ocam, dt, dec, dirn in DATASET
    ]


@pytest.fixture
def filled(history: History) -> History:
    for r in _dataset():
        history.save(r)
    return history


PLUS2 = timezone(timedelta(hours=2))
SEARCHES: list[tuple[str, dict[str, Any], list[str], int]] = [
    # id, query, expected ids in order, expected count (ignores limit/offset)
    ("all-newest-first", {}, ["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"], 8),
    ("exact-plate", {"plate": "KV01MXE"}, ["r8", "r1"], 2),
    ("exact-plate-normalised", {"plate": "kv-01 mxe"}, ["r8", "r1"], 2),
    ("exact-plate-no-near-misses", {"plate": "KV01MX"}, [], 0),
    ("fuzzy-distance-1", {"plate": "KV01MXE", "fuzzy": True},
     ["r8", "r1", "r3", "r4", "r2"], 5),  # exact, look-alike twins, then 1 edit newest first
    ("fuzzy-one-substitution", {"plate": "KV01MXF", "fuzzy": True},
     ["r2", "r8", "r5", "r1"], 4),
    ("fuzzy-O0-I1-fold", {"plate": "KVOIMXE", "fuzzy": True, "max_distance": 0},
     ["r3", "r8", "r1"], 3),  # two raw edits, but only glyph twins: distance 0
    ("fuzzy-insertion", {"plate": "KV01MXE", "fuzzy": True, "gate": "south"},
     ["r8", "r3", "r4"], 3),
    ("fuzzy-distance-2-excluded", {"plate": "KV01MFF", "fuzzy": True}, ["r5", "r2"], 2),
    ("fuzzy-distance-2-allowed", {"plate": "KV01MXE", "fuzzy": True, "max_distance": 2},
     ["r8", "r1", "r3", "r4", "r2", "r5"], 6),
    ("fuzzy-with-decision", {"plate": "KV01MXE", "fuzzy": True, "decision": "unknown"},
     ["r3"], 1),
    ("fuzzy-paged", {"plate": "KV01MXE", "fuzzy": True, "limit": 2, "offset": 2},
     ["r3", "r4"], 5),
    ("camera-as-plate-camera", {"camera": "cam-n"}, ["r5", "r2", "r1"], 3),
    ("camera-as-overview-camera", {"camera": "ov-n"}, ["r7", "r2", "r1"], 3),
    ("camera-either-role", {"camera": "ov-s"}, ["r8", "r6", "r4"], 3),
    ("gate", {"gate": "north"}, ["r7", "r5", "r2", "r1"], 4),
    ("time-range-aware-utc", {"since": T0_DT + timedelta(seconds=120),
                              "until": T0_DT + timedelta(seconds=300)}, ["r5", "r4", "r3"], 3),
    ("time-range-naive-is-utc", {"since": datetime(2026, 11, 21, 12, 2),
                                 "until": datetime(2026, 11, 21, 12, 5)}, ["r5", "r4", "r3"], 3),
    ("time-range-other-zone", {"since": datetime(2026, 11, 21, 14, 2, tzinfo=PLUS2)},
     ["r8", "r7", "r6", "r5", "r4", "r3"], 6),
    ("decision-allow", {"decision": "allow"}, ["r8", "r6", "r1"], 3),
    ("decision-unknown", {"decision": Decision.UNKNOWN}, ["r5", "r3"], 2),
    ("direction-exit", {"direction": "exit"}, ["r8", "r5", "r2"], 3),
    ("gate-and-direction", {"gate": "south", "direction": "entry"}, ["r6", "r3"], 2),
    ("limit", {"limit": 3}, ["r8", "r7", "r6"], 8),
    ("limit-offset", {"limit": 3, "offset": 3}, ["r5", "r4", "r3"], 8),
    ("last-page", {"limit": 5, "offset": 7}, ["r1"], 8),
    ("past-the-end", {"offset": 8}, [], 8),
]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected", "count"),
    [(q, e, c) for _, q, e, c in SEARCHES],
    ids=[i for i, *_ in SEARCHES],
)
def test_search_and_count(
    filled: History, query: dict[str, Any], expected: list[str], count: int
) -> None:
    q = HistoryQuery(**query)
    assert [r.record_id for r in filled.search(q)] == expected
    assert filled.count(q) == count


def test_search_returns_whole_records(filled: History) -> None:
    by_id = {r.record_id: r for r in _dataset()}
    assert filled.search(HistoryQuery(plate="KV01MXE", fuzzy=True)) == [
        by_id[i] for i in ("r8", "r1", "r3", "r4", "r2")
    ]


@pytest.mark.parametrize(
    ("plate", "key"),
    [("KVOIMXE", "KV01MXE"), ("kv-01 mxe", "KV01MXE"), ("SB2Z", "5822"), ("", "")],
    ids=["O0-I1", "normalised", "S5-B8-Z2", "empty"],
)
def test_plate_key_folds_glyph_twins(plate: str, key: str) -> None:
    assert plate_key(plate) == key


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": 1001}, "less than or equal to 1000"),
        ({"offset": -1}, "greater than or equal to 0"),
        ({"max_distance": 3}, "less than or equal to 2"),
        ({"plate": "--"}, "no letters or digits"),
        ({"decision": "maybe"}, "allow"),
        ({"direction": "sideways"}, "entry"),
        ({"since": T0_DT, "until": T0_DT}, "until must be after since"),
        ({"plates": "AB1"}, "Extra inputs"),
    ],
    ids=["limit-0", "limit-1001", "offset-negative", "distance-3", "plate-empty",
         "decision-unknown-value", "direction-unknown-value", "empty-range", "extra-key"],
)  # fmt: skip
def test_invalid_queries(query: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HistoryQuery(**query)


def test_stats(filled: History) -> None:
    assert filled.stats() == {
        "records": 8,
        "by_decision": {"allow": 3, "deny": 1, "unknown": 2, "undecided": 2},
    }


# --- crops --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record_id", "plate_src", "overview_src", "plate_dest", "overview_dest"),
    [
        ("north-7", "edge", "edge", "2026-11-21/north-7.jpg", "2026-11-21/north-7-overview.jpg"),
        ("north-8", "edge", None, "2026-11-21/north-8.jpg", None),
        ("north-9", "missing", "edge", "kept", "2026-11-21/north-9-overview.jpg"),
        ("north-10", "inside", None, "kept", None),
        ("../../evil/id", "edge", None, "2026-11-21/_.._evil_id.jpg", None),
    ],
    ids=["both-copied", "no-overview", "missing-kept", "inside-kept", "unsafe-record-id"],
)
def test_crops_copied_into_crops_dir(
    history: History,
    crops_dir: Path,
    tmp_path: Path,
    record_id: str,
    plate_src: str,
    overview_src: str | None,
    plate_dest: str,
    overview_dest: str | None,
) -> None:
    def source(kind: str | None, name: str) -> str | None:
        if kind is None:
            return None
        if kind == "missing":
            return str(tmp_path / "edge" / "gone.jpg")
        folder = crops_dir / "2026-11-20" if kind == "inside" else tmp_path / "edge"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(f"jpeg {name}".encode())
        return str(folder / name)

    def expected(dest: str | None, src: str | None) -> str | None:
        return src if dest in (None, "kept") else str(crops_dir.resolve() / dest)

    rec = VehicleRecord(
        record_id=record_id,
        gate="north",
        first_seen=T0 + 3600 * 11.5,  # 23:30 UTC: the UTC day, whatever the local zone
        crop_path=source(plate_src, "plate.jpg"),
        overview_crop_path=source(overview_src, "overview.jpg"),
    )
    stored = history.save(rec)
    assert stored.crop_path == expected(plate_dest, rec.crop_path)
    assert stored.overview_crop_path == expected(overview_dest, rec.overview_crop_path)
    assert history.get(record_id) == stored
    pairs = [(rec.crop_path, stored.crop_path), (rec.overview_crop_path, stored.overview_crop_path)]
    for src, dest in pairs:
        if src is not None and Path(src).exists():
            assert Path(dest or "").read_bytes() == Path(src).read_bytes()
            assert Path(src).exists()  # copied, not moved


def test_crops_kept_without_crops_dir(db_url: str, tmp_path: Path) -> None:
    src = tmp_path / "edge" / "plate.jpg"
    src.parent.mkdir()
    src.write_bytes(b"jpeg")
    with History(db_url) as h:
        rec = MINIMAL.with_(crop_path=str(src))
        assert h.save(rec) == rec


# --- purge --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cutoff",
    [T0_DT - timedelta(hours=1), datetime(2026, 11, 21, 11, 0), T0 - 3600],
    ids=["aware-datetime", "naive-utc-datetime", "epoch-seconds"],
)
def test_purge_records_and_their_crops(
    history: History, crops_dir: Path, tmp_path: Path, cutoff: datetime | float
) -> None:
    edge = tmp_path / "edge"
    edge.mkdir()
    for name in ("old.jpg", "older.jpg", "new.jpg"):
        (edge / name).write_bytes(b"jpeg")
    outside = edge / "outside.jpg"  # does not exist at save time: stored as given
    old = history.save(
        VehicleRecord(
            record_id="old", gate="g", first_seen=T0 - 86400, crop_path=str(edge / "old.jpg")
        )
    )
    older = history.save(
        VehicleRecord(
            record_id="older",
            gate="g",
            first_seen=T0 - 2 * 86400,
            crop_path=str(edge / "older.jpg"),
            overview_crop_path=str(outside),
        )
    )
    new = history.save(
        VehicleRecord(record_id="new", gate="g", first_seen=T0, crop_path=str(edge / "new.jpg"))
    )
    outside.write_bytes(b"not ours")
    purged_crops = [Path(p or "") for p in (old.crop_path, older.crop_path)]
    assert all(p.is_file() and p.is_relative_to(crops_dir.resolve()) for p in purged_crops)

    assert history.purge(cutoff) == 2
    assert [r.record_id for r in history.search(HistoryQuery())] == ["new"]
    assert not any(p.exists() for p in purged_crops)
    assert not purged_crops[0].parent.exists()  # the emptied day folder is removed
    assert Path(new.crop_path or "").is_file()
    assert outside.read_bytes() == b"not ours"  # outside crops_dir: never touched
    assert (edge / "old.jpg").is_file()  # the edge client's originals are not ours either
    assert history.purge(cutoff) == 0


# --- lists --------------------------------------------------------------------------------
def test_list_add_remove_idempotence_and_versions(history: History) -> None:
    assert history.lists_version("north") == 0
    staff = history.add_entry("north", "allow", ListEntry(plate="kv-01 mxe", label="staff"))
    got = (staff.gate, staff.kind, staff.entry.plate, staff.entry.label)
    assert got == ("north", "allow", "KV01MXE", "staff")
    assert staff.created_at.tzinfo is not None
    assert history.lists_version("north") == 1

    again = history.add_entry("north", "allow", ListEntry(plate="KV01MXE", label="other"))
    assert again == staff  # the existing entry, unchanged
    assert history.lists_version("north") == 1  # no change, no bump

    banned = history.add_entry("north", "deny", ListEntry(plate="KV01MXE", label="banned"))
    taxis = history.add_entry("north", "allow", ListEntry(pattern="^TAXI[0-9]{3}$"))
    assert len({staff.id, banned.id, taxis.id}) == 3  # same plate on the other list is new
    assert history.add_entry("north", "allow", ListEntry(pattern="^TAXI[0-9]{3}$")) == taxis
    assert history.lists_version("north") == 3
    assert history.entries("north") == [staff, banned, taxis]
    assert history.entries("south") == []
    assert history.lists_version("south") == 0  # versions are per gate

    assert history.remove_entry("south", staff.id) is False  # another gate's entry
    assert history.remove_entry("north", staff.id) is True
    assert history.remove_entry("north", staff.id) is False
    assert history.lists_version("north") == 4
    assert history.entries("north") == [banned, taxis]


def test_add_entry_rejects_unknown_kind(history: History) -> None:
    with pytest.raises(ValueError, match="'allow' or 'deny'"):
        history.add_entry("north", "maybe", ListEntry(plate="AB1"))  # type: ignore[arg-type]


CONFIG_LISTS = GateLists.model_validate(
    {
        "allow": [{"plate": "KV01MXE", "label": "staff"}, {"pattern": "^TAXI[0-9]{3}$"}],
        "deny": [{"plate": "BAD123", "label": "banned"}],
    }
)


def test_seed_lists_only_once(history: History) -> None:
    assert history.seed_lists("north", CONFIG_LISTS) == 3
    v = history.lists_version("north")
    assert v >= 1
    first = history.entries("north")
    assert [(e.kind, e.entry) for e in first] == [
        ("allow", CONFIG_LISTS.allow[0]),
        ("allow", CONFIG_LISTS.allow[1]),
        ("deny", CONFIG_LISTS.deny[0]),
    ]
    assert history.remove_entry("north", first[0].id)  # an operator removes the staff plate
    v = history.lists_version("north")

    assert history.seed_lists("north", CONFIG_LISTS) == 0  # a restart seeds nothing
    assert history.entries("north") == first[1:]  # ... and does not undo the removal
    assert history.lists_version("north") == v

    # a gate with entries added before its first seeding: duplicates are skipped
    history.add_entry("south", "deny", ListEntry(plate="BAD123"))
    assert history.seed_lists("south", CONFIG_LISTS) == 2
    assert len(history.entries("south")) == 3


def test_seed_counts_as_a_change(history: History) -> None:
    history.seed_lists("north", GateLists())
    assert history.lists_version("north") == 1
    assert history.seed_lists("north", CONFIG_LISTS) == 0


@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [
        (None, None),
        (datetime(2026, 11, 21, 8, 0), datetime(2026, 11, 21, 18, 0, 0, 250)),
        (T0_DT, None),
        (None, datetime(2026, 12, 1, 0, 0, tzinfo=PLUS2)),
        (datetime(2026, 11, 21, 8, tzinfo=PLUS2), datetime(2026, 11, 22, tzinfo=UTC)),
    ],
    ids=["no-window", "naive", "aware-utc-from", "other-zone-until", "mixed-zones"],
)
def test_validity_windows_round_trip(
    history: History, valid_from: datetime | None, valid_until: datetime | None
) -> None:
    entry = ListEntry(plate="KV01MXE", valid_from=valid_from, valid_until=valid_until)
    stored = history.add_entry("north", "allow", entry)
    for got in (stored.entry, history.entries("north")[0].entry):
        assert got == entry
        for given, back in ((valid_from, got.valid_from), (valid_until, got.valid_until)):
            assert (back is None) == (given is None)
            if given is not None and back is not None:
                assert (back.tzinfo is None) == (given.tzinfo is None)  # decide() can compare
                assert back.tzinfo in (None, UTC)  # aware values come back in UTC


@pytest.mark.parametrize(
    ("plate", "at", "decision", "label"),
    [
        ("KV01MXE", T0_DT, Decision.ALLOW, "staff"),
        ("KV01MXF", T0_DT, Decision.ALLOW, "staff"),  # the caller's tolerance applies
        ("TAXI042", T0_DT, Decision.ALLOW, ""),
        ("BAD123", T0_DT, Decision.DENY, "banned"),
        ("VISIT1", T0_DT, Decision.ALLOW, "visitor"),
        ("VISIT1", T0_DT + timedelta(days=2), Decision.UNKNOWN, ""),  # window over
    ],
    ids=["exact", "one-slip", "pattern", "deny", "in-window", "expired"],
)
def test_stored_lists_decide(
    history: History, plate: str, at: datetime, decision: Decision, label: str
) -> None:
    history.seed_lists("north", CONFIG_LISTS)
    history.add_entry(
        "north",
        "allow",
        ListEntry(plate="VISIT1", label="visitor", valid_until=T0_DT + timedelta(days=1)),
    )
    lists = history.lists("north", allow_tolerance=1, deny_tolerance=0)
    assert (lists.allow_tolerance, lists.deny_tolerance) == (1, 0)
    r = decide(plate, lists, at)
    assert (r.decision, r.label) == (decision, label)


def test_version_seen_by_another_service(history: History, db_url: str) -> None:
    """Two services on one database (a multi-gate site): one's change is visible to the
    other's cache check."""
    with History(db_url) as other:
        before = other.lists_version("north")
        history.add_entry("north", "deny", ListEntry(plate="BAD123"))
        assert other.lists_version("north") > before
        assert [e.entry.plate for e in other.entries("north")] == ["BAD123"]


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "password", "shown"),
    [
        ("postgresql+psycopg://gate:s3cret-pw@127.0.0.1:1/history", None, "127.0.0.1:1/history"),
        ("postgresql+psycopg://gate@127.0.0.1:1/history", "s3cret-pw", "gate:***@127.0.0.1:1"),
        ("sqlite:///{tmp}/a-file/history.db", None, "a-file/history.db"),
        ("mysql://gate:s3cret-pw@127.0.0.1/history", None, "unsupported"),
        ("not a url", "s3cret-pw", "invalid history database URL"),
    ],
    ids=["pg-password-in-url", "pg-password-given", "sqlite-parent-is-a-file", "unsupported",
         "unparseable"],
)  # fmt: skip
def test_unusable_database_error_hides_password(
    tmp_path: Path, url: str, password: str | None, shown: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(HistoryError) as err:
        History(url.format(tmp=tmp_path), password=password)
    message = str(err.value)
    assert shown in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(err.value.__cause__)


# --- threads ------------------------------------------------------------------------------
def test_concurrent_saves_and_reads(history: History) -> None:
    threads, per_thread = 6, 20
    barrier = threading.Barrier(threads + 1)

    def writer(t: int) -> int:
        barrier.wait()
        for i in range(per_thread):
            rid = f"t{t}-{i}"
            rec = VehicleRecord(record_id=rid, gate="g", first_seen=T0 + i, plate=rid)
            history.save(rec)
            history.save(rec.with_(decision="allow"))  # an upsert racing other inserts
        return per_thread

    def reader() -> int:
        barrier.wait()
        seen = 0
        for _ in range(per_thread):
            seen = max(seen, len(history.search(HistoryQuery(gate="g", limit=1000))))
            history.count(HistoryQuery(plate="T0-1", fuzzy=True))
        return seen

    with ThreadPoolExecutor(threads + 1) as pool:
        writes = [pool.submit(writer, t) for t in range(threads)]
        read = pool.submit(reader)
        assert sum(f.result() for f in writes) == threads * per_thread  # no errors raised
        assert 0 <= read.result() <= threads * per_thread
    q = HistoryQuery(gate="g", decision="allow", limit=1000)
    assert history.count(q) == threads * per_thread
    assert {r.record_id for r in history.search(q)} == {
        f"t{t}-{i}" for t in range(threads) for i in range(per_thread)
    }


def test_concurrent_identical_adds_store_one_entry(history: History) -> None:
    barrier = threading.Barrier(6)

    def add(_: int) -> int:
        barrier.wait()
        return history.add_entry("north", "allow", ListEntry(plate="KV01MXE")).id

    with ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(add, range(6)))
    assert len(ids) == 1
    assert len(history.entries("north")) == 1
    assert history.lists_version("north") == 1
