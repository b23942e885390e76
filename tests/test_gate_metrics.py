"""Prometheus metrics of the gate (``gate.metrics``) and the edge's sink counters
(``edge_client.metrics``), scraped from the real endpoints and parsed with
``prometheus_client.parser.text_string_to_metric_families``.

The gate's are checked after real decisions: events go into a real redis-server's stream,
the consumer decides against a real SQLite history (whose first two saves fail: database
errors), publishes to a JSONL file and to a webhook nobody listens on (sink failures),
and ``/metrics`` is scraped from the dashboard served by a real uvicorn; then Redis is
stopped (Redis errors).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from alpr_common.config import JsonlSink, WebhookSink
from alpr_common.metrics import package_version
from alpr_common.sinks import SinkSet, build_sinks
from edge_client.events import camera_event as make_event
from edge_client.metrics import Metrics
from gate.history import History, HistoryQuery
from gate.metrics import GateMetrics
from gate.service import GateService
from gate.web import create_app
from tests.gate_browser import start_app_server
from tests.redis_server import RedisProc, redis_factory  # noqa: F401  (fixture)
from tests.test_gate_service import FlakyHistory, camera_event, gate_config
from tests.test_sinks import free_port, wait_until


def scrape(url: str) -> list[Sample]:
    r = httpx.get(url, timeout=5, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(r.text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels include ``labels``."""
    found = [s for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return float(found[0].value)


def samples_of(metrics: GateMetrics) -> list[Sample]:
    return [s for family in metrics.registry.collect() for s in family.samples]


def by_label(samples: list[Sample], name: str, label: str, **labels: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value
        for s in samples
        if s.name == name and labels.items() <= s.labels.items()
    }


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# --- the gate, after real decisions ----------------------------------------------------
def test_gate_metrics_after_real_decisions(
    tmp_path: Path,
    redis_factory: Callable[..., RedisProc],  # noqa: F811
    no_proxy: None,
) -> None:
    redis = redis_factory()
    client = redis.client()
    publish: list[dict[str, Any]] = [
        {"type": "jsonl", "path": str(tmp_path / "{gate}.jsonl")},
        {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "max_retries": 0},
    ]
    history = FlakyHistory(f"sqlite:///{tmp_path / 'h.db'}")  # its first 2 saves fail
    svc = GateService(gate_config(tmp_path, publish=publish), history, client, output_dir=tmp_path)
    url, stop_web = start_app_server(create_app(svc))
    metrics_url = url + "/metrics"
    try:
        before = scrape(metrics_url)
        assert by_label(before, "alpr_gate_decisions_total", "decision", gate="g1") == {
            "allow": 0.0, "deny": 0.0, "unknown": 0.0,
        }  # fmt: skip
        svc.start()
        assert wait_until(lambda: client.exists("alpr:events") == 1, 5)
        reported = time.time() - 1.0  # each event was emitted a second before it arrives
        plates = {"KV65BZR": "allow", "BAD123": "deny", "ZZ99ZZZ": "unknown"}
        for n, plate in enumerate(plates):
            event = camera_event(plate, track=plate, n=n, reported_at=reported)
            client.xadd("alpr:events", {"event": json.dumps(event)})
        client.xadd("alpr:events", {"event": "{not json"})
        assert wait_until(lambda: len(history.search(HistoryQuery())) == 3, 20)

        def webhook_failures() -> float:
            return value(scrape(metrics_url), "alpr_gate_sink_failed_total", sink="webhook")

        assert wait_until(lambda: webhook_failures() == 3, 15, step=0.1)
        m = scrape(metrics_url)
        assert by_label(m, "alpr_gate_decisions_total", "decision", gate="g1") == {
            k: 1.0 for k in ("allow", "deny", "unknown")
        }
        # reported_at -> decision: every decision took at least the second in the stream
        assert value(m, "alpr_gate_decision_latency_seconds_count", gate="g1") == 3
        assert value(m, "alpr_gate_decision_latency_seconds_bucket", gate="g1", le="0.5") == 0
        assert value(m, "alpr_gate_decision_latency_seconds_sum", gate="g1") >= 3.0
        # first sighting -> decision adds the event's own 250 ms
        assert value(m, "alpr_gate_sighting_to_decision_seconds_sum", gate="g1") >= 3 * 1.25
        assert value(m, "alpr_gate_events_malformed_total") == 1
        assert by_label(m, "alpr_gate_database_errors_total", "operation") == {
            "store": 2.0, "lists": 0.0, "purge": 0.0,
        }  # fmt: skip
        assert value(m, "alpr_gate_redis_errors_total") == 0
        assert value(m, "alpr_gate_sink_delivered_total", gate="g1", sink="jsonl") == 3
        assert value(m, "alpr_gate_sink_failed_total", gate="g1", sink="jsonl") == 0
        assert value(m, "alpr_gate_sink_delivered_total", gate="g1", sink="webhook") == 0
        info = value(m, "alpr_build_info", process="gate", version=package_version(),
                     python=platform.python_version())  # fmt: skip
        assert info == 1

        redis.stop()  # the stream goes away: the consumer counts and retries
        assert wait_until(
            lambda: value(scrape(metrics_url), "alpr_gate_redis_errors_total") >= 1, 15, 0.1
        )
    finally:
        stop_web()
        svc.stop()
        history.close()


def test_services_keep_separate_registries(tmp_path: Path) -> None:
    """Two gate services in one process (tests, or a restart in place) count apart."""
    services = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        h = History(f"sqlite:///{tmp_path / name / 'h.db'}")
        services.append((GateService(gate_config(tmp_path / name), h, None,
                                     output_dir=tmp_path / name), h))  # fmt: skip
    (a, _), (b, _) = services
    try:
        for n, plate in enumerate(["BAD123", "BAD123", "KV65BZR"]):
            a.handle(camera_event(plate, track=f"t{n}", n=n))
        b.handle(camera_event("BAD123", track="x", n=9))
        got = [
            by_label(samples_of(s.metrics), "alpr_gate_decisions_total", "decision", gate="g1")
            for s in (a, b)
        ]
        assert got == [
            {"allow": 1.0, "deny": 2.0, "unknown": 0.0},
            {"allow": 0.0, "deny": 1.0, "unknown": 0.0},
        ]
    finally:
        for s, h in services:
            s.stop()
            h.close()


def test_metrics_port_serves_the_registry(no_proxy: None) -> None:
    metrics = GateMetrics(gates=["north"])
    metrics.decided("north", "deny", 0.2, 0.5)
    port = free_port()
    server, _thread = metrics.serve(port, "127.0.0.1")
    try:
        m = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
    assert value(m, "alpr_gate_decisions_total", gate="north", decision="deny") == 1
    assert value(m, "alpr_gate_decision_latency_seconds_count", gate="north") == 1
    assert value(m, "alpr_build_info", process="gate") == 1


# --- the edge's sink counters ----------------------------------------------------------
def plate_event(plate: str, n: int) -> Any:
    return make_event(
        event_id=f"cam1-{n}", camera="cam1", track_id=f"t{n}", plate=plate, raw_text=plate,
        confidence=0.9, region="uk", format="uk_current", first_seen=1.0, last_seen=2.0,
        box=(10, 20, 110, 50), vehicle_class="car", frame=30, latency_ms=100.0, votes=2,
        reported_at=1_790_000_000.0,
    )  # fmt: skip


@pytest.fixture
def edge_sinks(tmp_path: Path, no_proxy: None) -> Iterator[SinkSet]:
    cfgs: list[JsonlSink | WebhookSink] = [
        JsonlSink(path=tmp_path / "events.jsonl"),
        WebhookSink(url=f"http://127.0.0.1:{free_port()}/hook", max_retries=0),
    ]
    with build_sinks(cfgs, camera="cam1", output_dir=tmp_path) as sinks:
        yield sinks


def test_edge_exports_sink_counters_and_build_info(edge_sinks: SinkSet) -> None:
    metrics = Metrics()
    metrics.watch_sinks("cam1", edge_sinks)
    port = free_port()
    server, _thread = metrics.serve(port, "127.0.0.1")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for n, plate in enumerate(["AB12CDE", "KV65BZR"]):
            edge_sinks.emit(plate_event(plate, n))

        def failed() -> float:
            return value(scrape(url), "alpr_sink_failed_total", camera="cam1", sink="webhook")

        assert wait_until(lambda: failed() == 2, 15, step=0.1)
        edge_sinks.close()
        edge_sinks.emit(plate_event("ZZ1", 3))  # after close: the webhook drops it
        m = scrape(url)
    finally:
        server.shutdown()
    counts = {
        (s.labels["sink"], s.name.removeprefix("alpr_sink_").removesuffix("_total")): s.value
        for s in m
        if s.name.startswith("alpr_sink_")
    }
    assert counts == {
        ("jsonl", "delivered"): 3.0, ("jsonl", "failed"): 0.0, ("jsonl", "dropped"): 0.0,
        ("webhook", "delivered"): 0.0, ("webhook", "failed"): 2.0, ("webhook", "dropped"): 1.0,
    }  # fmt: skip
    assert {s.name for s in m if s.name.startswith("alpr_sink_")} == {
        "alpr_sink_delivered_total", "alpr_sink_failed_total", "alpr_sink_dropped_total",
    }  # fmt: skip
    assert value(m, "alpr_build_info", process="edge", version=package_version()) == 1
