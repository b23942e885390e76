"""A durable, bounded outbox: prepared requests waiting for delivery, in SQLite.

The webhook sink writes every prepared request (event id, content type, body) here
before it tries to deliver it, and removes it only once the receiver has answered 2xx,
or moves it to the dead-letter table (``dead``) when the answer says it can never be
delivered. So events survive a receiver outage *and* a restart of the process (a crash,
a ``SIGKILL``, a reboot): the next process with the same file sends them, oldest first.

- stdlib ``sqlite3``, WAL journal, ``synchronous=FULL``: a committed event survives a
  crash of the process and a power cut;
- bounded: ``put`` accepts at most ``max_events`` waiting events (the rest are refused,
  the caller counts them as dropped); the dead-letter table keeps the newest ``dead_keep``;
- one owner: the file is locked (``flock`` on ``<file>.lock``) while open, so two sinks or
  processes can never deliver from the same outbox;
- ``":memory:"`` keeps the same queue in memory (no durability), for tests and for
  sinks configured without an outbox.

Only the body is stored: headers are added at send time, so credentials never reach disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MEMORY = ":memory:"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    created REAL NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    created REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be opened (locked by another owner, unreadable, not ours)."""


@dataclass(frozen=True)
class Envelope:
    """A prepared request: what is POSTed for one event (headers aside)."""

    event_id: str
    content_type: str
    body: bytes
    created: float  # Unix time the event entered the outbox path (emit)


@dataclass(frozen=True)
class Queued:
    """An envelope waiting in the outbox under ``id`` (oldest has the lowest id)."""

    id: int
    envelope: Envelope


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    created: float
    failed_at: float
    status: int | None  # the HTTP status that ended it, None for other reasons
    reason: str


class Outbox:
    """The queue; every method is thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path | str, *, max_events: int, dead_keep: int = 1000) -> None:
        if max_events < 1 or dead_keep < 0:
            raise ValueError(f"outbox needs max_events >= 1, dead_keep >= 0 (got {max_events}, "
                             f"{dead_keep})")  # fmt: skip
        self.path = path if str(path) == MEMORY else Path(path)
        self.max_events = max_events
        self.dead_keep = dead_keep
        self._lock = threading.Lock()
        self._lockfile: IO[bytes] | None = None
        if isinstance(self.path, Path):
            self._lockfile = _lock(self.path)
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=5.0
            )
            self._setup()
        except sqlite3.Error as exc:
            self._release()
            raise OutboxError(f"outbox {self.path}: {exc}") from None
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def durable(self) -> bool:
        return isinstance(self.path, Path)

    def _setup(self) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
        if self.durable:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # --- queue ----------------------------------------------------------------------------
    def put(self, envelopes: Sequence[Envelope]) -> int:
        """Append ``envelopes`` in order, in one transaction; returns how many fitted (the
        first ones) under ``max_events``."""
        with self._lock:
            room = max(0, self.max_events - self._count)
            take = list(envelopes[:room])
            if not take:
                return 0
            with self._tx():
                self._db.executemany(
                    "INSERT INTO outbox (event_id, created, content_type, body) VALUES (?,?,?,?)",
                    [(e.event_id, e.created, e.content_type, e.body) for e in take],
                )
            self._count += len(take)
            return len(take)

    def first(self) -> Queued | None:
        """The oldest waiting envelope (it stays queued until ``remove`` or ``bury``)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, event_id, created, content_type, body FROM outbox ORDER BY id LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return Queued(int(row[0]), Envelope(row[1], row[3], bytes(row[4]), float(row[2])))

    def remove(self, item: Queued) -> None:
        """Delivered: forget it."""
        with self._lock, self._tx():
            cur = self._db.execute("DELETE FROM outbox WHERE id = ?", (item.id,))
            self._count -= cur.rowcount

    def bury(self, item: Queued, *, reason: str, status: int | None = None) -> None:
        """Undeliverable: move it to the dead-letter table (newest ``dead_keep`` kept)."""
        e = item.envelope
        with self._lock, self._tx():
            cur = self._db.execute("DELETE FROM outbox WHERE id = ?", (item.id,))
            self._count -= cur.rowcount
            if self.dead_keep:
                self._db.execute(
                    "INSERT INTO dead (event_id, created, failed_at, status, reason, "
                    "content_type, body) VALUES (?,?,?,?,?,?,?)",
                    (e.event_id, e.created, time.time(), status, reason, e.content_type, e.body),
                )
                self._db.execute(
                    "DELETE FROM dead WHERE id <= (SELECT MAX(id) FROM dead) - ?",
                    (self.dead_keep,),
                )

    def __len__(self) -> int:
        return self._count

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, created, failed_at, status, reason FROM dead "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(r[0], float(r[1]), float(r[2]), r[3], r[4]) for r in rows]

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._release()

    # --- internals ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _release(self) -> None:
        f, self._lockfile = self._lockfile, None
        if f is not None:
            f.close()  # closing the descriptor drops the flock

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, {self._count} waiting)"


def _lock(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115  (held while open)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise OutboxError(
            f"outbox {path} is in use by another sink or process; give each webhook sink "
            "its own outbox_path (use {camera})"
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(f.fileno(), 0)
        os.write(f.fileno(), f"{os.getpid()}\n".encode())
    return f
