"""Notifications to people through Apprise (Telegram, Pushover, ntfy, e-mail, Slack, Matrix,
... 100+ services): the gate's ``type: apprise`` sink (``config.AppriseSink``).

A decision that passes the sink's rules (``NotifyRules``: decisions, list labels, plate
cameras) becomes a title and a body from two ``str.format`` templates over ``FIELDS`` only
(``check_template``: no attribute or index access, so a template cannot reach into
objects) and, when the decision names a crop file, that JPEG as an attachment.

``emit`` only renders and queues (bounded, ``put_nowait``: a full queue drops the
notification and counts it), so a slow or unreachable service never delays the barrier;
one worker thread sends. ``stats()``: ``delivered``, ``failed`` (a service refused or
could not be reached), ``dropped``, ``filtered`` (excluded by the rules), ``queued``.
Apprise URLs embed credentials: they come from ``urls_env`` preferably, and logs show only
Apprise's privacy form of them.
"""

from __future__ import annotations

import logging
import queue
import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpr_common.secrets import secret_from_env

if TYPE_CHECKING:
    from alpr_common.sinks.base import SinkEvent

    from .config import AppriseSink

log = logging.getLogger(__name__)

DEFAULT_TITLE = "{gate}: {decision} {plate}"
DEFAULT_BODY = "{time} gate {gate}, camera {camera}: {plate} -> {decision} {label}"
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
LOG_EVERY = 100  # a persistently failing service logs its 1st, 101st, ... failure

# Every template field, with the sample value ``check_template`` renders it with (the
# types are the ones ``fields_of`` gives: str, or float for the two numbers).
SAMPLE: dict[str, Any] = {
    "plate": "AB123CD", "decision": "deny", "gate": "north", "camera": "cam-1",
    "label": "banned", "matched": "AB123CD", "time": "2025-11-21T12:00:00+00:00",
    "direction": "entry", "vehicle_class": "car", "color": "red", "confidence": 0.97,
    "latency_ms": 412.0, "record_id": "r1",
}  # fmt: skip
FIELDS = frozenset(SAMPLE)

# Apprise's notification types: the icon / colour a service shows.
NOTIFY_TYPES = {"deny": "failure", "unknown": "warning", "allow": "success"}


def check_template(text: str) -> str:
    """``text`` when it is a ``str.format`` template naming only ``FIELDS`` (no positional,
    attribute, index or nested fields) that renders; else ``ValueError`` saying why."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"template {text!r}: {exc}") from None
    for _literal, name, spec, _conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            raise ValueError(
                f"template {text!r}: unknown field {{{name}}} (fields: {', '.join(sorted(FIELDS))})"
            )
        if spec and "{" in spec:
            raise ValueError(f"template {text!r}: nested fields are not allowed")
    try:
        text.format_map(SAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"template {text!r}: {exc}") from None
    return text


def fields_of(d: Mapping[str, Any]) -> dict[str, Any]:
    """A decision's JSON (``DecisionEvent.to_json()``) as template values."""
    when = d.get("decided_at")
    stamp = (
        datetime.fromtimestamp(float(when)).astimezone().isoformat(timespec="seconds")
        if isinstance(when, int | float)
        else ""
    )

    def text(key: str) -> str:
        value = d.get(key)
        return "" if value is None else str(value)

    def number(key: str) -> float:
        value = d.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    return {
        **{k: text(k) for k in FIELDS if k not in ("time", "confidence", "latency_ms")},
        "time": stamp,
        "confidence": number("confidence"),
        "latency_ms": number("latency_ms"),
    }


@dataclass(frozen=True)
class NotifyRules:
    """Which decisions notify: every rule given must hold (None: any)."""

    decisions: frozenset[str]
    labels: frozenset[str] | None = None
    cameras: frozenset[str] | None = None

    def match(self, d: Mapping[str, Any]) -> bool:
        if d.get("decision") not in self.decisions:
            return False
        if self.labels is not None and (d.get("label") or "") not in self.labels:
            return False
        return self.cameras is None or d.get("camera") in self.cameras


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    notify_type: str
    attach: str | None = None  # the crop file, checked again when it is sent


def render(d: Mapping[str, Any], title: str, body: str, *, attach_crop: bool) -> Notification:
    values = fields_of(d)
    crop = d.get("crop_path")
    return Notification(
        title=title.format_map(values),
        body=body.format_map(values),
        notify_type=NOTIFY_TYPES.get(str(d.get("decision")), "info"),
        attach=str(crop) if attach_crop and crop else None,
    )


def _attachable(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        p = Path(path)
        return path if p.is_file() and p.stat().st_size <= MAX_ATTACHMENT_BYTES else None
    except OSError:
        return None


class AppriseNotifier:
    """A gate sink (``emit`` / ``close`` / ``stats``) sending decisions through Apprise.
    ``urls``: Apprise URLs (an entry may hold several, separated by spaces or commas).
    Raises ``ValueError`` naming the entry (never its text) when Apprise rejects one."""

    def __init__(
        self,
        urls: Sequence[str],
        rules: NotifyRules,
        *,
        title: str = DEFAULT_TITLE,
        body: str = DEFAULT_BODY,
        attach_crop: bool = True,
        queue_size: int = 100,
        drain_timeout_s: float = 10.0,
        name: str = "apprise",
    ) -> None:
        import apprise

        self._apprise = apprise.Apprise()
        for i, url in enumerate(urls):
            if not self._apprise.add(url):
                raise ValueError(
                    f"{name}: URL entry {i + 1} of {len(urls)} is not a valid Apprise URL "
                    "(unknown service, or a required part missing)"
                )
        if len(self._apprise) == 0:
            raise ValueError(f"{name}: no Apprise URLs")
        self.rules, self.name = rules, name
        self.title, self.body = check_template(title), check_template(body)
        self.attach_crop = attach_crop
        self.drain_timeout_s = drain_timeout_s
        self._queue: queue.Queue[Notification] = queue.Queue(maxsize=queue_size)
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "filtered": 0}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self._thread.start()
        services = ", ".join(s.url(privacy=True).split("?")[0] for s in self._apprise)
        log.info("%s: notifying %s", name, services)

    @classmethod
    def from_config(cls, cfg: AppriseSink, *, gate: str) -> AppriseNotifier:
        """Raises ``ValueError`` (``SecretError``) when ``urls_env`` is unset or a URL is
        invalid."""
        urls = list(cfg.urls)
        if cfg.urls_env:
            raw = secret_from_env(cfg.urls_env, f"gate {gate} Apprise URLs")
            urls = [raw or ""]
        rules = NotifyRules(
            decisions=frozenset(cfg.decisions),
            labels=frozenset(cfg.labels) if cfg.labels is not None else None,
            cameras=frozenset(cfg.cameras) if cfg.cameras is not None else None,
        )
        return cls(
            urls, rules, title=cfg.title, body=cfg.body, attach_crop=cfg.attach_crop,
            queue_size=cfg.queue_size, name=f"gate {gate} apprise",
        )  # fmt: skip

    # --- Sink ------------------------------------------------------------------------
    def emit(self, event: SinkEvent) -> None:
        d = event.to_json()
        if not self.rules.match(d):
            self._count("filtered")
            return
        if self._closing.is_set():
            self._count("dropped")
            return
        note = render(d, self.title, self.body, attach_crop=self.attach_crop)
        try:
            self._queue.put_nowait(note)
        except queue.Full:
            dropped = self._count("dropped")
            if dropped % LOG_EVERY == 1:
                log.warning("%s: queue full, %d notification(s) dropped", self.name, dropped)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting, send what is queued until ``timeout_s`` (default
        ``drain_timeout_s``), then count what is left as dropped."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._thread.join(self.drain_timeout_s if timeout_s is None else max(0.0, timeout_s))
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self._count("dropped", left)
            log.warning("%s: %d queued notification(s) dropped at close", self.name, left)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    # --- worker ----------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> int:
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def _run(self) -> None:
        while True:
            try:
                note = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            started = time.monotonic()
            try:
                result = self._apprise.notify(
                    body=note.body, title=note.title, notify_type=note.notify_type,
                    attach=_attachable(note.attach),
                )  # fmt: skip
                ok = bool(result)
            except Exception as exc:  # never let the worker die
                log.warning("%s: %s: %s", self.name, type(exc).__name__, exc)
                ok = False
            if ok:
                self._count("delivered")
                continue
            failed = self._count("failed")
            if failed % LOG_EVERY == 1:
                log.warning(
                    "%s: a notification was not delivered (after %.1fs); %d failure(s) so far",
                    self.name, time.monotonic() - started, failed,
                )  # fmt: skip
