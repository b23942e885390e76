"""Metrics pieces every process shares (``edge_client.metrics``, ``gate.metrics``):
``register_build_info`` (``alpr_build_info{process, version, python} 1``) and
``SinkCounters``, a collector exporting each ``SinkSet.stats()`` as counters at scrape
time."""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

DISTRIBUTION = "ovr-alpr"

SINK_OUTCOMES = (
    ("delivered", "Events a sink delivered (written, published, posted, sent)"),
    ("failed", "Events a sink failed to deliver (raised, rejected, gave up)"),
    ("dropped", "Events a sink discarded (full buffer, closing)"),
)


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


class _BuildInfo(Collector):
    def __init__(self, process: str) -> None:
        self.labels = {
            "process": process,
            "version": package_version(),
            "python": platform.python_version(),
        }

    def collect(self) -> Iterator[InfoMetricFamily]:
        family = InfoMetricFamily("alpr_build", "Version of the running OVR-ALPR process")
        family.add_metric([], self.labels)
        yield family


def register_build_info(registry: CollectorRegistry, process: str) -> None:
    """``alpr_build_info{process, version, python} 1`` in ``registry``."""
    registry.register(_BuildInfo(process))


class SinkCounters(Collector):
    """Exports ``SinkSet.stats()`` as counters, read at scrape time:
    ``{prefix}_sink_{delivered,failed,dropped}_total{<owner>, sink}``, where ``<owner>``
    (``camera`` on the edge, ``gate`` on the gate) names whose sinks they are. A sink
    without its own ``delivered`` count (a synchronous one) reports its ``emitted``.
    Sets are added with ``watch`` (one per camera or gate) and may be added later."""

    def __init__(self, prefix: str, owner: str) -> None:
        self.prefix, self.owner = prefix, owner
        self._sets: dict[str, Any] = {}  # owner id -> SinkSet (anything with stats())
        self._lock = threading.Lock()

    def watch(self, owner_id: str, sinks: Any) -> None:
        with self._lock:
            self._sets[owner_id] = sinks

    def watch_all(self, sets: Mapping[str, Any]) -> None:
        for owner_id, sinks in sets.items():
            self.watch(owner_id, sinks)

    def _families(self) -> dict[str, CounterMetricFamily]:
        return {
            key: CounterMetricFamily(
                f"{self.prefix}_sink_{key}", help_text, labels=[self.owner, "sink"]
            )
            for key, help_text in SINK_OUTCOMES
        }

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield from self._families().values()

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = self._families()
        with self._lock:
            sets = list(self._sets.items())
        for owner_id, sinks in sets:
            for name, stats in sinks.stats().items():
                counts = {
                    "delivered": stats.get("delivered", stats.get("emitted", 0)),
                    "failed": stats.get("failed", 0),
                    "dropped": stats.get("dropped", 0),
                }
                for key, family in families.items():
                    family.add_metric([owner_id, name], float(counts[key]))
        yield from families.values()
