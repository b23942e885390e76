"""Event sinks: where camera events and gate decisions go besides the log.

``build_sink`` turns one sink configuration (``alpr_common.config``: ``JsonlSink``,
``RedisStreamSink``, ``WebhookSink``, ``MqttSink``) into a ``Sink`` for one camera;
``build_sinks`` builds a camera's whole list into a ``SinkSet``, which fans every event out
to all of them and isolates failures: a sink that raises is logged (rate-limited) and
counted, the others still get the event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from alpr_common.config import JsonlSink, MqttSink, RedisStreamSink, WebhookSink

from .base import Sink, SinkEvent
from .jsonl import JsonlWriter
from .mqtt import MqttPublisher, mqtt_topic
from .redis_stream import RedisStreamWriter
from .webhook import WebhookPoster

__all__ = [
    "SINK_TYPES",
    "JsonlWriter",
    "MqttPublisher",
    "RedisStreamWriter",
    "SinkSet",
    "WebhookPoster",
    "build_sink",
    "build_sinks",
    "mqtt_topic",
]

log = logging.getLogger(__name__)

SinkConfig = JsonlSink | RedisStreamSink | WebhookSink | MqttSink


class SinkFactory(Protocol):
    """What ``SINK_TYPES`` maps a config class to: a sink class with ``from_config``."""

    def from_config(
        self, cfg: Any, *, camera: str, redis_client: Any, output_dir: Path
    ) -> Sink: ...


SINK_TYPES: dict[type[Any], SinkFactory] = {
    JsonlSink: JsonlWriter,
    RedisStreamSink: RedisStreamWriter,
    WebhookSink: WebhookPoster,
    MqttSink: MqttPublisher,
}


def build_sink(cfg: SinkConfig, *, camera: str, redis_client: Any = None, output_dir: Path) -> Sink:
    """The sink for one configuration entry. Raises ``ValueError`` for an unknown config
    type, a ``redis_stream`` sink without ``redis_client``, or a missing credential
    environment variable."""
    try:
        impl = SINK_TYPES[type(cfg)]
    except KeyError:
        raise ValueError(f"unknown sink configuration {type(cfg).__name__}") from None
    return impl.from_config(
        cfg, camera=camera, redis_client=redis_client, output_dir=Path(output_dir)
    )


def build_sinks(
    cfgs: Iterable[SinkConfig], *, camera: str, redis_client: Any = None, output_dir: Path
) -> SinkSet:
    """All of a camera's sinks as one ``SinkSet``; sinks already built are closed if a
    later one fails to build."""
    built: list[tuple[str, Sink]] = []
    try:
        for cfg in cfgs:
            sink = build_sink(cfg, camera=camera, redis_client=redis_client, output_dir=output_dir)
            built.append((getattr(cfg, "type", type(cfg).__name__), sink))
    except BaseException:
        for _, sink in built:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %r after a failed build", sink)
        raise
    return SinkSet(built)


class SinkSet:
    """Fan-out to several sinks with failure isolation.

    ``sinks`` are ``(name, sink)`` pairs or bare sinks (named after their class); duplicate
    names get ``#2``, ``#3``... ``stats()`` maps each name to ``emitted`` (``emit`` calls
    that returned), ``failed`` (calls that raised plus the sink's own asynchronous failures)
    and ``dropped`` (events the sink discarded: full buffers, closed), plus whatever else
    the sink's own ``stats()`` reports (``delivered``, ``queued``...).
    """

    LOG_EVERY = 100  # a persistently failing sink logs its 1st, 101st, ... failure

    def __init__(self, sinks: Iterable[Sink | tuple[str, Sink]] = ()) -> None:
        self._sinks: list[tuple[str, Sink]] = []
        self._emitted: dict[str, int] = {}
        self._raised: dict[str, int] = {}
        for item in sinks:
            name, sink = item if isinstance(item, tuple) else (type(item).__name__, item)
            self.add(sink, name)

    def add(self, sink: Sink, name: str | None = None) -> str:
        base = name or type(sink).__name__
        name, n = base, 1
        while name in self._emitted:
            n += 1
            name = f"{base}#{n}"
        self._sinks.append((name, sink))
        self._emitted[name] = 0
        self._raised[name] = 0
        return name

    @property
    def sinks(self) -> Sequence[tuple[str, Sink]]:
        return tuple(self._sinks)

    def __len__(self) -> int:
        return len(self._sinks)

    def emit(self, event: SinkEvent) -> None:
        for name, sink in self._sinks:
            try:
                sink.emit(event)
            except Exception as exc:
                self._raised[name] += 1
                n = self._raised[name]
                if n % self.LOG_EVERY == 1 or self.LOG_EVERY == 1:
                    log.warning(
                        "sink %s failed on event %s (%s: %s); %d failure(s) so far",
                        name,
                        event.event_id,
                        type(exc).__name__,
                        exc,
                        n,
                    )
            else:
                self._emitted[name] += 1

    def close(self) -> None:
        for name, sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception("sink %s failed to close", name)

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, sink in self._sinks:
            own: dict[str, int] = {}
            get = getattr(sink, "stats", None)
            if callable(get):
                try:
                    own = dict(get())
                except Exception:
                    log.exception("sink %s: stats() failed", name)
            out[name] = {
                **own,
                "emitted": self._emitted[name],
                "failed": self._raised[name] + int(own.get("failed", 0)),
                "dropped": int(own.get("dropped", 0)),
            }
        return out

    def __enter__(self) -> SinkSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
