"""Prometheus metrics for the edge client, and the periodic one-line status log.

Besides the per-camera metrics below: ``alpr_build_info{process="edge", version, python}``,
each camera's sinks as ``alpr_sink_{delivered,failed,dropped}_total{camera, sink}``
(``alpr_common.metrics``) and each Triton client's replicas as
``alpr_triton_replica_{requests,failures}_total`` and ``alpr_triton_replica_{outstanding,
ejected}`` labelled ``{camera, client, replica}`` (``TritonReplicas``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alpr_common.metrics import SinkCounters, register_build_info


class TritonReplicas(Collector):
    """Each watched client's replicas (``Balancer.stats()``), read at scrape time."""

    LABELS = ("camera", "client", "replica")

    def __init__(self) -> None:
        self._balancers: dict[tuple[str, str], Any] = {}  # (camera, client) -> Balancer
        self._lock = threading.Lock()

    def watch(self, camera: str, client: str, balancer: Any) -> None:
        with self._lock:
            self._balancers[(camera, client)] = balancer

    def _families(self) -> list[CounterMetricFamily | GaugeMetricFamily]:
        p, labels = "alpr_triton_replica", self.LABELS
        return [
            CounterMetricFamily(f"{p}_requests", "Requests sent to the replica", labels=labels),
            CounterMetricFamily(f"{p}_failures", "Requests or probes it failed", labels=labels),
            GaugeMetricFamily(f"{p}_outstanding", "Its requests in flight", labels=labels),
            GaugeMetricFamily(f"{p}_ejected", "1 while it is ejected", labels=labels),
        ]

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests, failures, outstanding, ejected = families = self._families()
        with self._lock:
            watched = list(self._balancers.items())
        for (camera, client), balancer in watched:
            for s in balancer.stats():
                key = [camera, client, s.address]
                requests.add_metric(key, float(s.requests))
                failures.add_metric(key, float(s.failures))
                outstanding.add_metric(key, float(s.outstanding))
                ejected.add_metric(key, float(s.ejected))
        yield from families


class Metrics:
    """All metrics of one edge-client process, labelled by camera."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        register_build_info(r, "edge")
        self.sinks = SinkCounters("alpr", "camera")
        r.register(self.sinks)
        self.replicas = TritonReplicas()
        r.register(self.replicas)
        self.frames = Counter(
            "alpr_frames_processed_total", "Frames run through detection", ["camera"], registry=r
        )
        self.frames_dropped = Counter(
            "alpr_frames_dropped_total",
            "Frames dropped (queue full or detection failed)",
            ["camera", "reason"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "alpr_stage_seconds", "Time per pipeline stage", ["camera", "stage"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.triton_calls = Counter(
            "alpr_triton_calls_total", "Requests sent to Triton", ["camera", "model"], registry=r
        )
        self.triton_errors = Counter(
            "alpr_triton_errors_total", "Failed Triton requests", ["camera", "model"], registry=r
        )
        self.ocr_reads = Counter(
            "alpr_ocr_reads_total", "Crops sent for reading (OCR calls)", ["camera"], registry=r
        )
        self.tracks = Counter("alpr_tracks_total", "Confirmed tracks", ["camera"], registry=r)
        self.events = Counter("alpr_events_total", "Plate events emitted", ["camera"], registry=r)
        self.duplicates = Counter(
            "alpr_duplicates_suppressed_total",
            "Reports suppressed (already reported)",
            ["camera", "reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "alpr_cache_hits_total",
            "Tracks resolved from the cache without OCR",
            ["camera"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "alpr_queue_depth", "Items waiting in a queue", ["camera", "queue"], registry=r
        )
        self.fps = Gauge(
            "alpr_processed_fps", "Processed frames per second (recent)", ["camera"], registry=r
        )
        self.ocr_per_track = Gauge(
            "alpr_ocr_calls_per_track", "OCR calls per confirmed track", ["camera"], registry=r
        )

    def watch_sinks(self, camera: str, sinks: Any) -> None:
        """Export ``sinks.stats()`` (a ``SinkSet``) as ``alpr_sink_*_total{camera, sink}``."""
        self.sinks.watch(camera, sinks)

    def watch_triton(self, camera: str, client: str, balancer: Any) -> None:
        """Export a Triton client's replicas (``AlprClient.balancer``) under ``client``
        (``detector``, ``reader``) as ``alpr_triton_replica_*{camera, client, replica}``."""
        self.replicas.watch(camera, client, balancer)

    def serve(self, port: int, host: str = "0.0.0.0") -> tuple[Any, Any]:
        """Serve the registry (prometheus_client's server, in a daemon thread); returns
        ``(server, thread)``: ``server.shutdown()`` stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread
