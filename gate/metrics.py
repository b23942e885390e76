"""Prometheus metrics of the gate service (``alpr-gate``), in a registry of their own.

Served at ``/metrics`` on the dashboard's port (``http.metrics``: open, behind the token, or
off) and, with ``metrics_port``, on a port of its own:

- ``alpr_gate_decisions_total{gate, decision}``: decisions made (allow / deny / unknown);
- ``alpr_gate_decision_latency_seconds{gate}``: the edge client's ``reported_at`` -> the
  decision (stream transit, merging, list lookup), and
  ``alpr_gate_sighting_to_decision_seconds{gate}``: first sighting -> decision;
- ``alpr_gate_database_errors_total{operation}``, ``alpr_gate_redis_errors_total``,
  ``alpr_gate_events_malformed_total``: failures, counted;
- ``alpr_gate_sink_{delivered,failed,dropped}_total{gate, sink}``: each gate's sinks
  (MQTT, webhook, Apprise, ...), read from ``SinkSet.stats()`` at scrape time;
- ``alpr_build_info{process="gate", version, python}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)

from alpr_common.metrics import SinkCounters, register_build_info
from gate.access import Decision

__all__ = ["CONTENT_TYPE_LATEST", "DATABASE_OPERATIONS", "GateMetrics"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DATABASE_OPERATIONS = ("store", "lists", "purge")


class GateMetrics:
    """All metrics of one gate process. ``registry`` defaults to a new one, so several
    services (tests) never collide."""

    def __init__(
        self, registry: CollectorRegistry | None = None, gates: Iterable[str] = ()
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        register_build_info(r, "gate")
        self.decisions = Counter(
            "alpr_gate_decisions", "Access decisions made", ["gate", "decision"], registry=r
        )
        self.decision_latency = Histogram(
            "alpr_gate_decision_latency_seconds",
            "Edge event reported_at -> decision (wall clocks)",
            ["gate"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.sighting_latency = Histogram(
            "alpr_gate_sighting_to_decision_seconds",
            "First sighting of the vehicle -> decision (wall clocks)",
            ["gate"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.database_errors = Counter(
            "alpr_gate_database_errors",
            "History database operations that failed",
            ["operation"],
            registry=r,
        )
        self.redis_errors = Counter(
            "alpr_gate_redis_errors", "Redis event stream errors (consumer retries)", registry=r
        )
        self.malformed = Counter(
            "alpr_gate_events_malformed", "Stream entries dropped as malformed", registry=r
        )
        self.sinks = SinkCounters("alpr_gate", "gate")
        r.register(self.sinks)
        for op in DATABASE_OPERATIONS:
            self.database_errors.labels(op)
        self.add_gates(gates)

    def add_gates(self, gates: Iterable[str]) -> None:
        """Start every gate's series at zero, so a rate over them exists from the start."""
        for gate in gates:
            for d in Decision:
                self.decisions.labels(gate, d.value)
            self.decision_latency.labels(gate)
            self.sighting_latency.labels(gate)

    def decided(self, gate: str, decision: str, reported_to_decision_s: float,
                sighting_to_decision_s: float) -> None:  # fmt: skip
        self.decisions.labels(gate, decision).inc()
        self.decision_latency.labels(gate).observe(max(0.0, reported_to_decision_s))
        self.sighting_latency.labels(gate).observe(max(0.0, sighting_to_decision_s))

    def watch_sinks(self, sinks: Mapping[str, Any]) -> None:
        """Export each gate's ``SinkSet`` (gate id -> set)."""
        self.sinks.watch_all(sinks)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
        return bytes(generate_latest(self.registry))

    def serve(self, port: int, host: str = "0.0.0.0") -> tuple[Any, Any]:
        """Serve the registry on a port of its own (prometheus_client's server, in a daemon
        thread); returns ``(server, thread)``: ``server.shutdown()`` stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread
