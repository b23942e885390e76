"""Prometheus metrics for the edge client, and the periodic one-line status log."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """All metrics of one edge-client process, labelled by camera."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
