"""The gate service: camera events in, access decisions and vehicle records out.

Edge clients publish their events to a Redis stream (``redis_stream`` sink). The service
reads it as a consumer group (an event is acknowledged only once its record is stored, so
a crash or a database outage re-delivers it), merges each gate's plate and overview
sightings into one ``VehicleRecord`` (``merge.GateMerger``), decides allow / deny /
unknown against the gate's lists (``gate.access``; lists live in the history
database and are reloaded when an operator changes them), publishes a ``DecisionEvent``
to the gate's sinks (MQTT topic for the barrier, webhook, JSONL, Apprise notifications
to people: ``gate.notify``) and to the live feed of the dashboard, and stores the record
(``history.History``). Decisions, their latency and failures are counted in
``gate.metrics`` (Prometheus).

Decision latency, first sighting -> decision, is measured on wall clocks: the edge
client stamps each event with ``reported_at`` and its ``latency_ms`` since the track's
first sighting, so no clock is needed on the first frame's machine beyond NTP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from alpr_common.backoff import Backoff
from alpr_common.sinks import SinkSet, build_sinks
from edge_client.events import status_key
from gate.access import Decision, GateLists, decide

from .config import AppriseSink, GateConfig
from .contracts import DecisionEvent, Observation, ObservationKind, VehicleRecord
from .history import History
from .live import LiveFeed
from .merge import GateMerger
from .metrics import GateMetrics
from .notify import AppriseNotifier

RETRY = Backoff(first=0.5, cap=10.0)  # Redis / database outages: 0.5, 1, 2, ... 10 s

log = logging.getLogger("ovr_alpr.gate")

STALE_AFTER_S = 10.0  # a camera heartbeat older than this shows as stale


def _for_gate(cfg: Any) -> Any:
    """A gate's sinks are built with the gate id as their ``camera``, so ``{gate}`` in any
    template (MQTT topic, file path, stream name) is the sinks' own ``{camera}`` and gets
    the same sanitised substitution. An MQTT sink's Home Assistant discovery announces a
    gate (decision and vehicle-present entities), not a camera."""
    update = {
        name: type(value)(str(value).replace("{gate}", "{camera}"))
        for name, value in cfg
        if isinstance(value, str | Path) and "{gate}" in str(value)
    }
    discovery = getattr(cfg, "discovery", None)
    if discovery is not None and discovery.role != "gate":
        update["discovery"] = discovery.model_copy(update={"role": "gate"})
    return cfg.model_copy(update=update) if update else cfg


class GateService:
    """Satisfies ``web.GateRuntime`` (config, history, feed, cameras()). ``redis_client``
    must decode responses (``decode_responses=True``)."""

    def __init__(
        self,
        config: GateConfig,
        history: History,
        redis_client: redis.Redis | None,
        *,
        output_dir: Path = Path("runs/gate"),
        clock: Callable[[], float] = time.time,
        feed: LiveFeed | None = None,
        metrics: GateMetrics | None = None,
    ) -> None:
        self.config, self.history, self.redis, self.clock = config, history, redis_client, clock
        self.feed = feed or LiveFeed()
        self.metrics = metrics or GateMetrics(gates=config.gates)
        self.counts: Counter[str] = Counter()
        self.latencies_ms: list[float] = []  # recent decision latencies (bounded)
        self.mergers = {
            gid: GateMerger(gid, g.plate_camera, g.overview_camera, g.merge_window_s)
            for gid, g in config.gates.items()
        }
        self.sinks: dict[str, SinkSet] = {
            gid: build_sinks(
                [_for_gate(s) for s in g.publish if not isinstance(s, AppriseSink)],
                camera=gid,
                redis_client=redis_client,
                output_dir=output_dir,
            )
            for gid, g in config.gates.items()
        }
        self._add_notifiers()
        self.metrics.watch_sinks(self.sinks)
        self._lists: dict[str, tuple[int, GateLists]] = {}
        self._unsaved: dict[str, VehicleRecord] = {}  # event id -> record its storing failed
        self._retry_records: list[VehicleRecord] = []  # closed records not stored yet
        self._lock = threading.Lock()  # one event at a time (merger state, list cache)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        self._last_expire = 0.0
        self.consumer = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        for gid, g in config.gates.items():
            n = history.seed_lists(gid, g.lists)
            if n:
                log.info("gate %s: seeded %d list entries from the configuration", gid, n)

    def _add_notifiers(self) -> None:
        """The gate-only ``apprise`` sinks join each gate's set (their templates keep
        ``{gate}`` as a field, so they bypass ``_for_gate``). On a bad one, every sink built
        so far is closed and the ``ValueError`` propagates."""
        try:
            for gid, g in self.config.gates.items():
                for cfg in g.publish:
                    if isinstance(cfg, AppriseSink):
                        self.sinks[gid].add(AppriseNotifier.from_config(cfg, gate=gid), "apprise")
        except BaseException:
            for sinks in self.sinks.values():
                sinks.close()
            raise

    # --- decisions ---------------------------------------------------------------------
    def lists(self, gate: str) -> GateLists:
        """The gate's current lists, reloaded only when an operator changed them. With the
        database down, the last lists read (or the configuration's) still decide."""
        cached = self._lists.get(gate)
        try:
            version = self.history.lists_version(gate)
        except Exception as exc:
            self.counts["lists_unavailable"] += 1
            self.metrics.database_errors.labels("lists").inc()
            log.warning("gate %s: lists unavailable (%s); deciding on the last known", gate, exc)
            return cached[1] if cached else self.config.gates[gate].lists
        if cached is None or cached[0] != version:
            g = self.config.gates[gate]
            lists = self.history.lists(
                gate,
                allow_tolerance=g.lists.allow_tolerance,
                deny_tolerance=g.lists.deny_tolerance,
            )
            cached = (version, lists)
            self._lists[gate] = cached
        return cached[1]

    def handle(self, event: dict[str, Any]) -> DecisionEvent | None:
        """One camera event (an edge client's event JSON). Returns the decision it caused,
        if any. Raises ``ValueError`` for a malformed event. The decision is published
        before the record is stored: the barrier never waits on the database. A storage
        error propagates (the caller leaves the event unacknowledged); when the event is
        re-delivered its record is stored without deciding or publishing again."""
        obs = Observation.from_event(event)
        gate = self.config.gate_of(obs.camera)
        if gate is None:
            self.counts["ignored_camera"] += 1
            return None
        unsaved = self._unsaved.pop(obs.event_id, None)
        if unsaved is not None:  # re-delivered after a storage failure
            with self._lock:
                current = self.mergers[gate].get(unsaved.record_id) or unsaved
            self._save(current, obs.event_id)
            self.counts["stored_on_retry"] += 1
            return None
        with self._lock:
            merged = self.mergers[gate].add(obs)
            if merged is None:
                self.counts["ignored"] += 1
                return None
            record = merged.record
            decision: DecisionEvent | None = None
            if merged.decide and record.plate:
                record, decision = self._decide(gate, record, obs)
                self.mergers[gate].update(record)
        if decision is not None:
            self._publish(gate, decision, record)
        record = self._save(record, obs.event_id)
        if decision is None and (record.plate or obs.kind is ObservationKind.VEHICLE):
            self.feed.publish("record", record.to_json())
        self.counts[obs.kind.value] += 1
        return decision

    def _save(self, record: VehicleRecord, event_id: str) -> VehicleRecord:
        try:
            return self.history.save(record)
        except Exception:
            if len(self._unsaved) >= 10_000:
                self._unsaved.pop(next(iter(self._unsaved)))
            self._unsaved[event_id] = record
            raise

    def _decide(
        self, gate: str, record: VehicleRecord, obs: Observation
    ) -> tuple[VehicleRecord, DecisionEvent]:
        now = self.clock()
        result = decide(record.plate, self.lists(gate), datetime.fromtimestamp(now, UTC))
        latency_ms = max(0.0, 1000.0 * (now - record.first_seen))
        record = record.with_(
            decision=result.decision, matched=result.matched, list_label=result.label,
            decided_at=now, decision_latency_ms=latency_ms,
        )  # fmt: skip
        event = DecisionEvent(
            event_id=f"{gate}-{record.record_id[:12]}-{uuid.uuid4().hex[:6]}", gate=gate,
            camera=obs.camera, record_id=record.record_id, plate=record.plate,
            decision=result.decision, matched=result.matched, label=result.label,
            confidence=record.plate_confidence, latency_ms=latency_ms, decided_at=now,
            direction=record.direction,
            vehicle_class=record.vehicle_class, color=record.color, crop_path=record.crop_path,
            extra={"distance": result.distance, "source_event": obs.event_id},
        )  # fmt: skip
        self.counts[f"decision_{result.decision.value}"] += 1
        self.metrics.decided(gate, result.decision.value, now - obs.reported_at, latency_ms / 1e3)
        self.latencies_ms = [*self.latencies_ms[-9_999:], latency_ms]
        lvl = logging.WARNING if result.decision is Decision.DENY else logging.INFO
        log.log(lvl, "gate %s: %s -> %s (%s) in %.0f ms", gate, record.plate,
                result.decision.value, result.matched or "no entry", latency_ms)  # fmt: skip
        return record, event

    def _publish(self, gate: str, decision: DecisionEvent, record: VehicleRecord) -> None:
        self.sinks[gate].emit(decision)
        self.feed.publish("decision", {**decision.to_json(), "record": record.to_json()})

    def expire(self, now: float | None = None) -> int:
        """Close records that can no longer merge by ``now`` (default: the clock; ``inf``
        closes all) and store their final version; a storage error keeps the rest for the
        next call and propagates."""
        now = self.clock() if now is None else now
        done = 0
        for merger in self.mergers.values():
            with self._lock:
                closed = merger.expire(now)
            self._retry_records.extend(closed)
        retry, self._retry_records = self._retry_records, []
        for i, rec in enumerate(retry):
            try:
                self.history.save(rec)
                done += 1
            except Exception:
                self._retry_records = retry[i:][-10_000:]  # keep them for the next round
                raise
        return done

    def purge(self) -> int:
        cutoff = self.clock() - self.config.database.retention_days * 86_400
        n = self.history.purge(cutoff)
        if n:
            log.info("history: purged %d records older than %.0f days", n,
                     self.config.database.retention_days)  # fmt: skip
        return n

    # --- status for the dashboard -------------------------------------------------------
    def cameras(self) -> list[dict[str, Any]]:
        """Each gate camera's role and status from its edge client's heartbeat hash."""
        return [
            {"camera": cam, "gate": gid, "role": role, **self._status(cam)}
            for gid, g in self.config.gates.items()
            for role, cam in (("plate", g.plate_camera), ("overview", g.overview_camera))
            if cam is not None
        ]

    def _status(self, camera: str) -> dict[str, Any]:
        h: dict[str, str] = {}
        if self.redis is not None:
            with contextlib.suppress(redis.RedisError):  # unreachable: status unknown
                h = self.redis.hgetall(status_key(camera)) or {}  # type: ignore[assignment]
        if not h:
            return {"status": "unknown", "fps": None, "frames": None, "events": None,
                    "updated_at": None}  # fmt: skip
        updated = float(h.get("updated_at") or 0)
        return {
            "status": "live" if time.time() - updated <= STALE_AFTER_S else "stale",
            "fps": float(h.get("fps") or 0), "frames": int(h.get("frames") or 0),
            "events": int(h.get("events") or 0), "updated_at": updated,
        }  # fmt: skip

    # --- the stream consumer ---------------------------------------------------------------
    def start(self) -> GateService:
        self._thread = threading.Thread(target=self._run, name="gate-consumer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        try:
            self.expire(float("inf"))
        except Exception as exc:  # shutting down: log, don't raise
            log.warning("history: %d closed record(s) not stored: %s",
                        len(self._retry_records), exc)  # fmt: skip
        for sinks in self.sinks.values():
            sinks.close()

    def _ensure_group(self) -> None:
        assert self.redis is not None
        try:
            self.redis.xgroup_create(self.config.stream, self.config.group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _run(self) -> None:
        retry = RETRY.retry()
        pending_first = True  # after a (re)start, our unacknowledged entries come first
        group_ready = False
        while not self._stop.is_set():
            try:
                if self.redis is None:
                    raise redis.ConnectionError("no Redis client configured")
                if not group_ready:
                    self._ensure_group()
                    group_ready = True
                    log.info("gate: consuming %s as %s/%s", self.config.stream,
                             self.config.group, self.consumer)  # fmt: skip
                start_id = "0" if pending_first else ">"
                resp: Any = self.redis.xreadgroup(
                    self.config.group, self.consumer, {self.config.stream: start_id},
                    count=32, block=None if pending_first else 200,
                )  # fmt: skip
                entries: list[Any] = resp[0][1] if resp else []
                if pending_first and not entries:
                    pending_first = False
                failed = self._handle_entries(entries)
                if failed:  # the database is down: keep them pending, retry from "0"
                    pending_first = True
                    self._stop.wait(retry.fail())
                else:
                    retry.reset()
                self._housekeeping()
            except redis.RedisError as exc:
                group_ready = False
                pending_first = True
                self.counts["redis_errors"] += 1
                self.metrics.redis_errors.inc()
                wait = retry.fail()
                log.warning("gate: Redis unavailable (%s); retrying in %.1fs", exc, wait)
                self._stop.wait(wait)

    def _handle_entries(self, entries: list[Any]) -> bool:
        """Handle and acknowledge entries in order; stop at the first storage failure
        (True) so it and everything after it are re-delivered."""
        assert self.redis is not None
        for entry_id, fields in entries:
            raw = fields.get("event") if fields else None
            try:
                if raw is None:
                    raise ValueError("stream entry without an `event` field")
                event = json.loads(raw)
                if not isinstance(event, dict):
                    raise ValueError("event is not a JSON object")
                self.handle(event)
            except ValueError as exc:  # malformed: poison, acknowledge and count
                self.counts["malformed"] += 1
                self.metrics.malformed.inc()
                log.warning("gate: dropping malformed event %s: %s", entry_id, exc)
            except Exception as exc:
                self.counts["storage_errors"] += 1
                self.metrics.database_errors.labels("store").inc()
                log.warning("gate: could not handle event %s (%s); will retry", entry_id, exc)
                return True
            self.redis.xack(self.config.stream, self.config.group, entry_id)
        return False

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_expire >= 1.0:
            self._last_expire = now
            try:
                self.expire()
            except Exception as exc:
                self.metrics.database_errors.labels("store").inc()
                log.warning("gate: could not store expired records: %s", exc)
        if now - self._last_purge >= 3600.0:
            self._last_purge = now
            try:
                self.purge()
            except Exception as exc:
                self.metrics.database_errors.labels("purge").inc()
                log.warning("gate: retention purge failed: %s", exc)
