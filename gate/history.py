"""The gate's history database: searchable vehicle records and the allow/deny list store.

One SQLAlchemy schema serves both supported backends unchanged: SQLite (the default, an
embedded file next to the service; WAL journal so the dashboard reads while the consumer
writes) and PostgreSQL (sites where several gate services share one database). Every public
method opens its own session, so one ``History`` is shared by a web server's thread pool and
the event consumer thread.

Records (``vehicle_records``) are keyed by ``VehicleRecord.record_id`` and saved by upsert,
so a record updated as more observations arrive (overview camera, direction, decision) stays
one row. Besides every field, a row keeps ``plate_key``: the plate with look-alike glyphs
folded (``normalize.fold_lookalikes``: O/Q/D->0, I/L->1, S->5, B->8, Z->2, G->6, A->4, T->7)
so a fuzzy search finds reads that differ only by such confusions through an index.

Lists (``access_entries``) are managed by operators in the dashboard after being seeded
once from ``gate.yaml``; ``list_versions`` holds one row per gate with a version number that
increases on every change (the decision path caches ``GateLists`` and reloads when it
changes) and whether the gate was seeded (so a restart does not undo operators' deletions).

Datetimes of list entries are stored timezone-aware in UTC (naive values are taken as UTC);
they come back equal to what was given: aware values in UTC, naive values naive again.
Record times are epoch seconds (floats) like everywhere in the gate.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rapidfuzz.distance import Levenshtein
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from alpr_common.files import safe_name
from alpr_common.plate_text import fold_lookalikes, normalize
from gate.access import Decision, GateLists, ListEntry, normalized_plate

from .contracts import Direction, VehicleRecord

__all__ = [
    "FUZZY_SCAN_LIMIT",
    "Base",
    "EntryKind",
    "History",
    "HistoryError",
    "HistoryQuery",
    "HistoryStats",
    "StoredEntry",
    "plate_key",
]

log = logging.getLogger(__name__)

FUZZY_SCAN_LIMIT = 20_000
"""A fuzzy search computes edit distances in Python over at most this many candidates (the
newest matching the other filters), so a search stays fast on a large history. Reads with
the same ``plate_key`` (look-alike swaps only) are found through the index beyond it."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another connection's write lock before failing."""

PG_CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a PostgreSQL server before reporting it unreachable."""

_PURGE_BATCH = 500

EntryKind = Literal["allow", "deny"]


class HistoryError(RuntimeError):
    """The history database cannot be opened or used (message names the URL, never the
    password)."""


def plate_key(plate: str) -> str:
    """The fuzzy-search key of ``plate``: normalised, look-alike glyphs folded."""
    return fold_lookalikes(normalize(plate))


# --- schema -------------------------------------------------------------------------------
class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones: it stores
    naive UTC, and values read back get ``UTC`` attached). Naive input is taken as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The history schema (``Base.metadata`` holds every table)."""


class RecordRow(Base):
    __tablename__ = "vehicle_records"

    record_id: Mapped[str] = mapped_column(String, primary_key=True)
    gate: Mapped[str] = mapped_column(String, index=True)
    first_seen: Mapped[float] = mapped_column(Double, index=True)
    plate: Mapped[str] = mapped_column(String, index=True)
    plate_key: Mapped[str] = mapped_column(String, index=True)
    plate_confidence: Mapped[float] = mapped_column(Double)
    plate_camera: Mapped[str | None] = mapped_column(String, index=True)
    overview_camera: Mapped[str | None] = mapped_column(String, index=True)
    vehicle_class: Mapped[str] = mapped_column(String)
    color: Mapped[str | None] = mapped_column(String)
    direction: Mapped[str | None] = mapped_column(String)
    dwell_s: Mapped[float | None] = mapped_column(Double)
    decision: Mapped[str | None] = mapped_column(String, index=True)
    matched: Mapped[str | None] = mapped_column(Text)
    list_label: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[float | None] = mapped_column(Double)
    decision_latency_ms: Mapped[float | None] = mapped_column(Double)
    crop_path: Mapped[str | None] = mapped_column(Text)
    overview_crop_path: Mapped[str | None] = mapped_column(Text)
    event_ids: Mapped[list[str]] = mapped_column(JSON)

    __table_args__ = (Index("ix_vehicle_records_gate_first_seen", "gate", "first_seen"),)


class EntryRow(Base):
    __tablename__ = "access_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gate: Mapped[str] = mapped_column(String, index=True)
    kind: Mapped[str] = mapped_column(String)
    plate: Mapped[str | None] = mapped_column(String)
    pattern: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    naive_times: Mapped[bool] = mapped_column(Boolean)  # given naive: give back naive
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # NULLs are distinct in both backends' unique constraints: a plate entry and a pattern
    # entry never collide, two entries with the same plate (or pattern) do.
    __table_args__ = (
        UniqueConstraint("gate", "kind", "plate", name="uq_access_entries_plate"),
        UniqueConstraint("gate", "kind", "pattern", name="uq_access_entries_pattern"),
    )


class VersionRow(Base):
    __tablename__ = "list_versions"

    gate: Mapped[str] = mapped_column(String, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    seeded: Mapped[bool] = mapped_column(Boolean)


# --- API types ----------------------------------------------------------------------------
def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


class HistoryQuery(BaseModel):
    """A history search (the dashboard's filters). Every filter is optional and they
    combine with AND; results are newest first (fuzzy: closest first, then newest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plate: str | None = Field(None, description="plate (normalised: case, separators)")
    fuzzy: bool = Field(False, description="also find reads within max_distance edits")
    max_distance: int = Field(1, ge=0, le=2, description="edits a fuzzy match may differ by")
    camera: str | None = Field(None, description="plate camera or overview camera")
    gate: str | None = None
    since: datetime | None = Field(None, description="first seen at or after (naive = UTC)")
    until: datetime | None = Field(None, description="first seen before (naive = UTC)")
    decision: Decision | None = None
    direction: Direction | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)

    @field_validator("plate")
    @classmethod
    def _normalise(cls, v: str | None) -> str | None:
        return normalized_plate(v)

    @field_validator("since", "until")
    @classmethod
    def _to_utc(cls, v: datetime | None) -> datetime | None:
        return _utc(v)

    @model_validator(mode="after")
    def _ordered(self) -> HistoryQuery:
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


@dataclass(frozen=True)
class StoredEntry:
    """A list entry as stored: its database id (for removal), gate and kind."""

    id: int
    gate: str
    kind: EntryKind
    entry: ListEntry
    created_at: datetime


class HistoryStats(TypedDict):
    records: int
    by_decision: dict[str, int]  # allow / deny / unknown / undecided (decision None)


# --- conversions --------------------------------------------------------------------------
_RECORD_FIELDS = tuple(f.name for f in fields(VehicleRecord))


def _row_values(r: VehicleRecord) -> dict[str, Any]:
    """A record's column values: every field as it is (enum -> value, tuple -> list),
    plus the look-alike ``plate_key``."""
    values = {name: getattr(r, name) for name in _RECORD_FIELDS}
    values["direction"] = Direction(r.direction).value if r.direction else None
    values["decision"] = Decision(r.decision).value if r.decision else None
    values["event_ids"] = list(r.event_ids)
    values["plate_key"] = plate_key(r.plate)
    return values


def _to_record(row: RecordRow) -> VehicleRecord:
    values = {name: getattr(row, name) for name in _RECORD_FIELDS}
    values["direction"] = Direction(row.direction) if row.direction else None
    values["decision"] = Decision(row.decision) if row.decision else None
    values["event_ids"] = tuple(row.event_ids or ())
    return VehicleRecord(**values)


def _to_stored(row: EntryRow) -> StoredEntry:
    def back(v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=None) if v is not None and row.naive_times else v

    entry = ListEntry(
        plate=row.plate,
        pattern=row.pattern,
        label=row.label,
        valid_from=back(row.valid_from),
        valid_until=back(row.valid_until),
    )
    return StoredEntry(row.id, row.gate, cast(EntryKind, row.kind), entry, row.created_at)


def _epoch(t: datetime | float) -> float:
    if isinstance(t, datetime):
        aware = _utc(t)
        assert aware is not None
        return aware.timestamp()
    return float(t)


def _check_kind(kind: str) -> EntryKind:
    if kind not in ("allow", "deny"):
        raise ValueError(f"list kind must be 'allow' or 'deny', got {kind!r}")
    return cast(EntryKind, kind)


# --- the store ----------------------------------------------------------------------------
class History:
    """Vehicle records and allow/deny lists in one SQL database (see the module docstring).

    ``url`` is a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``);
    ``password`` (e.g. read from ``database.password_env``) replaces the URL's password so
    it never has to be written in a config file. With ``crops_dir``, crops referenced by
    saved records are copied there (see ``save``) and purged with their records.
    Raises ``HistoryError`` when the database cannot be opened.
    """

    def __init__(self, url: str, crops_dir: Path | None = None, password: str | None = None):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise HistoryError(
                "invalid history database URL (expected sqlite:///path or "
                "postgresql+psycopg://user@host/db)"
            ) from None
        if password is not None:
            parsed = parsed.set(password=password)
        self._url: URL = parsed
        self._secret = parsed.password
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.crops_dir = crops_dir.resolve() if crops_dir is not None else None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise HistoryError(f"unsupported history database {self.safe_url} (sqlite/postgresql)")
        try:
            self._engine = self._create_engine(parsed)
            Base.metadata.create_all(self._engine)
        except (SQLAlchemyError, OSError) as exc:
            raise HistoryError(
                f"cannot open history database {self.safe_url}: {self._reason(exc)}"
            ) from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def _create_engine(self, url: URL) -> Engine:
        if self.dialect == "postgresql":
            args: dict[str, Any] = {}
            if url.get_driver_name() == "psycopg" and "connect_timeout" not in url.query:
                args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            return create_engine(url, pool_pre_ping=True, connect_args=args)
        db = url.database or ""
        memory = db in ("", ":memory:") or db.startswith("file::memory:")
        if not memory:
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            # one shared connection for an in-memory database (each would be its own db)
            **({"poolclass": StaticPool} if memory else {}),
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, faster
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        return engine

    def _reason(self, exc: BaseException) -> str:
        orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = " ".join(str(orig).split()) or type(orig).__name__
        return text.replace(self._secret, "***") if self._secret else text

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session for one call, committed at the end; database failures (server gone,
        SQLite locked too long) become ``HistoryError``."""
        try:
            with self._sessions.begin() as s:
                yield s
        except DBAPIError as exc:
            raise HistoryError(f"history database {self.safe_url}: {self._reason(exc)}") from exc

    def _insert(self) -> Any:
        """The dialect's INSERT (both have ``ON CONFLICT``; SQLAlchemy's generic one not)."""
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def close(self) -> None:
        """Close every pooled connection (the object must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- records ----------------------------------------------------------------------
    def save(self, record: VehicleRecord) -> VehicleRecord:
        """Insert ``record`` or update every field of the stored one (same ``record_id``).

        With ``crops_dir``, a crop that exists outside it is copied to
        ``crops_dir/YYYY-MM-DD/<record_id>[-overview].jpg`` (UTC date of ``first_seen``)
        and that path is stored, so crops outlive the edge client's output folder; missing
        or uncopyable crops keep the given path. Returns the record as stored.
        """
        record = record.with_(
            crop_path=self._keep_crop(record, record.crop_path, ""),
            overview_crop_path=self._keep_crop(record, record.overview_crop_path, "-overview"),
        )
        values = _row_values(record)
        stmt = self._insert()(RecordRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[RecordRow.record_id],
            set_={k: stmt.excluded[k] for k in values if k != "record_id"},
        )
        with self._session() as s:
            s.execute(stmt)
        return record

    def _keep_crop(self, record: VehicleRecord, path: str | None, suffix: str) -> str | None:
        if path is None or self.crops_dir is None:
            return path
        src = Path(path).resolve()
        if src.is_relative_to(self.crops_dir) or not src.is_file():
            return path
        day = datetime.fromtimestamp(record.first_seen, UTC).strftime("%Y-%m-%d")
        dest = self.crops_dir / day / f"{safe_name(record.record_id)}{suffix}.jpg"
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)  # readers never see half a file
        except OSError as exc:
            log.warning("could not copy crop %s to %s: %s", src, dest, exc)
            tmp.unlink(missing_ok=True)
            return path
        return str(dest)

    def get(self, record_id: str) -> VehicleRecord | None:
        """The stored record, or None."""
        with self._session() as s:
            row = s.get(RecordRow, record_id)
            return _to_record(row) if row is not None else None

    def _filters(self, q: HistoryQuery, *, plate: bool = True) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if plate and q.plate is not None:
            conds.append(RecordRow.plate == q.plate)
        if q.camera is not None:
            conds.append(
                or_(RecordRow.plate_camera == q.camera, RecordRow.overview_camera == q.camera)
            )
        if q.gate is not None:
            conds.append(RecordRow.gate == q.gate)
        if q.since is not None:
            conds.append(RecordRow.first_seen >= q.since.timestamp())
        if q.until is not None:
            conds.append(RecordRow.first_seen < q.until.timestamp())
        if q.decision is not None:
            conds.append(RecordRow.decision == q.decision.value)
        if q.direction is not None:
            conds.append(RecordRow.direction == q.direction.value)
        return conds

    def search(self, q: HistoryQuery) -> list[VehicleRecord]:
        """Records matching ``q``, newest first (by ``first_seen``), paged by ``limit`` /
        ``offset``.

        A plate matches exactly unless ``fuzzy``: then a record matches when its
        ``plate_key`` equals the query's (only look-alike swaps such as O/0, I/1) or its
        plate is within ``max_distance`` Levenshtein edits. Fuzzy results are sorted by
        distance (look-alike-only matches count 0, exact ones first), then newest; edit
        distances are computed over at most ``FUZZY_SCAN_LIMIT`` newest candidates.
        """
        if q.plate is not None and q.fuzzy:
            ids = self._fuzzy_ids(q)[q.offset : q.offset + q.limit]
            if not ids:
                return []
            with self._session() as s:
                rows = s.scalars(select(RecordRow).where(RecordRow.record_id.in_(ids)))
                by_id = {r.record_id: _to_record(r) for r in rows}
            return [by_id[i] for i in ids if i in by_id]
        stmt = (
            select(RecordRow)
            .where(*self._filters(q))
            .order_by(RecordRow.first_seen.desc(), RecordRow.record_id)
            .offset(q.offset)
            .limit(q.limit)
        )
        with self._session() as s:
            return [_to_record(r) for r in s.scalars(stmt)]

    def _fuzzy_ids(self, q: HistoryQuery) -> list[str]:
        """Every fuzzy match's record id, best first (see ``search``)."""
        assert q.plate is not None
        key = plate_key(q.plate)
        cols = select(
            RecordRow.record_id, RecordRow.plate, RecordRow.plate_key, RecordRow.first_seen
        ).where(*self._filters(q, plate=False), RecordRow.plate != "")
        newest = (RecordRow.first_seen.desc(), RecordRow.record_id)
        with self._session() as s:
            same_key = s.execute(cols.where(RecordRow.plate_key == key)).all()
            scanned = s.execute(cols.order_by(*newest).limit(FUZZY_SCAN_LIMIT)).all()
        ranked: dict[str, tuple[int, int, float, str]] = {}
        for rid, plate, pkey, first_seen in [*same_key, *scanned]:
            if rid in ranked:
                continue
            d = Levenshtein.distance(q.plate, plate, score_cutoff=q.max_distance)
            if pkey == key:
                ranked[rid] = (0, d, -first_seen, rid)
            elif d <= q.max_distance:
                ranked[rid] = (d, d, -first_seen, rid)
        return [rank[3] for rank in sorted(ranked.values())]

    def count(self, q: HistoryQuery) -> int:
        """How many records match ``q`` ignoring ``limit`` / ``offset`` (for paging). A
        fuzzy count is bounded by the same scan as ``search``."""
        if q.plate is not None and q.fuzzy:
            return len(self._fuzzy_ids(q))
        with self._session() as s:
            n = s.scalar(select(func.count()).select_from(RecordRow).where(*self._filters(q)))
        return int(n or 0)

    def purge(self, older_than: datetime | float) -> int:
        """Delete records first seen before ``older_than`` (a datetime, naive = UTC, or
        epoch seconds) and their crop files under ``crops_dir`` (files elsewhere are never
        touched); returns how many records were deleted. Works in batches so a long
        backlog neither holds one huge transaction nor loads every row at once."""
        cutoff = _epoch(older_than)
        total = 0
        while True:
            batch = (
                select(RecordRow.record_id)
                .where(RecordRow.first_seen < cutoff)
                .limit(_PURGE_BATCH)
                .scalar_subquery()
            )
            stmt = (
                delete(RecordRow)
                .where(RecordRow.record_id.in_(batch))
                .returning(RecordRow.crop_path, RecordRow.overview_crop_path)
            )
            with self._session() as s:
                deleted = s.execute(stmt).all()
            if not deleted:
                return total
            total += len(deleted)
            for paths in deleted:
                for p in paths:
                    self._remove_crop(p)

    def _remove_crop(self, path: str | None) -> None:
        if path is None or self.crops_dir is None:
            return
        p = Path(path).resolve()
        if not p.is_relative_to(self.crops_dir) or p == self.crops_dir:
            return
        try:
            p.unlink(missing_ok=True)
            if p.parent != self.crops_dir and not any(p.parent.iterdir()):
                p.parent.rmdir()  # an emptied day folder
        except OSError as exc:
            log.warning("could not remove crop %s: %s", p, exc)

    def stats(self) -> HistoryStats:
        """Records in total and per decision (``undecided`` for records without one)."""
        by: dict[str, int] = {d.value: 0 for d in Decision} | {"undecided": 0}
        with self._session() as s:
            rows = s.execute(
                select(RecordRow.decision, func.count()).group_by(RecordRow.decision)
            ).all()
        for decision, n in rows:
            key = decision if decision is not None else "undecided"
            by[key] = by.get(key, 0) + int(n)
        return {"records": sum(by.values()), "by_decision": by}

    # --- lists ------------------------------------------------------------------------
    def entries(self, gate: str) -> list[StoredEntry]:
        """The gate's stored list entries, oldest first."""
        with self._session() as s:
            rows = s.scalars(select(EntryRow).where(EntryRow.gate == gate).order_by(EntryRow.id))
            return [_to_stored(r) for r in rows]

    def lists(self, gate: str, allow_tolerance: int = 0, deny_tolerance: int = 0) -> GateLists:
        """The gate's lists for ``access.decide`` (tolerances come from the caller's
        config: they are policy, not data)."""
        stored = self.entries(gate)
        return GateLists(
            allow=[e.entry for e in stored if e.kind == "allow"],
            deny=[e.entry for e in stored if e.kind == "deny"],
            allow_tolerance=allow_tolerance,
            deny_tolerance=deny_tolerance,
        )

    def _entry_values(self, gate: str, kind: EntryKind, entry: ListEntry) -> dict[str, Any]:
        times = [t for t in (entry.valid_from, entry.valid_until) if t is not None]
        return {
            "gate": gate,
            "kind": kind,
            "plate": entry.plate,
            "pattern": entry.pattern,
            "label": entry.label,
            "valid_from": entry.valid_from,
            "valid_until": entry.valid_until,
            "naive_times": bool(times) and all(t.tzinfo is None for t in times),
            "created_at": datetime.now(UTC),
        }

    def _insert_entry(self, s: Session, gate: str, kind: EntryKind, entry: ListEntry) -> bool:
        """Insert unless the gate already has this plate/pattern of this kind; True when
        inserted. (RETURNING tells, not ``rowcount``: psycopg reports -1 for an ORM insert.)"""
        stmt = self._insert()(EntryRow).values(**self._entry_values(gate, kind, entry))
        return s.execute(stmt.on_conflict_do_nothing().returning(EntryRow.id)).first() is not None

    def _bump(self, s: Session, gate: str) -> None:
        """Increase the gate's list version (atomically: concurrent bumps both count)."""
        stmt = self._insert()(VersionRow).values(gate=gate, version=1, seeded=False)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[VersionRow.gate], set_={"version": VersionRow.version + 1}
            )
        )

    def add_entry(self, gate: str, kind: EntryKind, entry: ListEntry) -> StoredEntry:
        """Store ``entry`` on the gate's ``kind`` list. Idempotent: when the list already
        holds the same plate (or pattern), that stored entry is returned unchanged (its
        label and validity are not overwritten) and the version does not change."""
        kind = _check_kind(kind)
        same = EntryRow.plate == entry.plate if entry.plate else EntryRow.pattern == entry.pattern
        with self._session() as s:
            if self._insert_entry(s, gate, kind, entry):
                self._bump(s, gate)
            row = s.scalars(
                select(EntryRow).where(EntryRow.gate == gate, EntryRow.kind == kind, same)
            ).one()
            return _to_stored(row)

    def remove_entry(self, gate: str, entry_id: int) -> bool:
        """Delete the gate's entry ``entry_id``; False when it has no such entry."""
        with self._session() as s:
            res = s.execute(delete(EntryRow).where(EntryRow.id == entry_id, EntryRow.gate == gate))
            removed = bool(cast(Any, res).rowcount)
            if removed:
                self._bump(s, gate)
        return removed

    def seed_lists(self, gate: str, lists: GateLists) -> int:
        """Insert the configured lists if this gate was never seeded, and remember that it
        was: later starts change nothing, so entries that operators removed stay removed.
        Safe when several services start at once (the first claims the seeding). Returns
        the number of entries inserted (duplicates of stored entries are skipped)."""
        with self._session() as s:
            s.execute(
                self._insert()(VersionRow)
                .values(gate=gate, version=0, seeded=False)
                .on_conflict_do_nothing()
            )
            claim = s.execute(
                update(VersionRow)
                .where(VersionRow.gate == gate, VersionRow.seeded.is_(False))
                .values(seeded=True, version=VersionRow.version + 1)
            )
            if cast(Any, claim).rowcount != 1:
                return 0
            inserted = 0
            for kind, entries in (("allow", lists.allow), ("deny", lists.deny)):
                for e in entries:
                    inserted += self._insert_entry(s, gate, cast(EntryKind, kind), e)
            return inserted

    def lists_version(self, gate: str) -> int:
        """A number that increases on every change to the gate's lists (0: never
        changed); compare it to decide whether cached lists are stale."""
        with self._session() as s:
            v = s.scalar(select(VersionRow.version).where(VersionRow.gate == gate))
        return int(v or 0)
