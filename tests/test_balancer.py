"""Request-level balancing over Triton replicas (``edge_client.balancer``).

Unit tables drive the logic with fakes (connections are addresses, a fake clock, a fake
resolver): which replica each request goes to under each policy, ejection after N
consecutive failures, the backoff before an ejected replica is probed again, recovery, the
one retry on another replica, DNS membership. Then the real thing: two tritonserver
replicas on loopback, 200 ``plate_locator`` requests from 4 threads through ``AlprClient``
(each replica's own Prometheus counts show the split), one replica killed mid-run (no
request fails, it is ejected) and started again on its ports (it gets traffic again)."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from alpr_common.backoff import Backoff
from edge_client.balancer import (
    Balancer,
    BalanceSettings,
    NoReplicaAnswered,
    ReplicaDown,
    Target,
    resolve_dns,
)
from edge_client.config import ConfigError, Triton, parse_config
from edge_client.metrics import Metrics
from edge_client.triton_client import AlprClient, InferenceError, TritonEndpoint
from ensemble.contracts import PLATE_LOCATOR
from ensemble.ops.server_process import TritonProcess, inference_counts, start_triton

BACKOFF = Backoff(1.0, 8.0)


# --- fakes ----------------------------------------------------------------------------
class Fleet:
    """A balancer over fake replicas: a connection is its address; replicas in ``down``
    refuse requests and fail probes; the clock only moves when a test moves it."""

    def __init__(
        self,
        targets: list[str],
        policy: str = "least_outstanding",
        *,
        eject_after: int = 2,
        backoff: Backoff = BACKOFF,
        dns: dict[str, list[str]] | None = None,
    ) -> None:
        self.now = 0.0
        self.down: set[str] = set()
        self.dns = dns or {}
        self.dns_fails = False
        self.closed: list[str] = []
        self.probes: list[str] = []
        settings = BalanceSettings(
            policy,  # type: ignore[arg-type]
            eject_after, backoff, health_interval_s=5.0, dns_refresh_s=10.0,
        )  # fmt: skip
        self.balancer: Balancer[str] = Balancer(
            targets, lambda a: a, settings=settings, probe=self._probe, close=self.closed.append,
            resolve=self._resolve, clock=lambda: self.now,
        )  # fmt: skip

    def _probe(self, address: str) -> bool:
        self.probes.append(address)
        return address not in self.down

    def _resolve(self, host: str, port: int) -> list[str]:
        if self.dns_fails:
            raise OSError("Name or service not known")
        return [f"{ip}:{port}" for ip in self.dns.get(host, [])]

    def answer(self, address: str) -> str:
        if address in self.down:
            raise ReplicaDown("connection refused")
        return address

    def request(self) -> str:
        return self.balancer.call(self.answer)

    def holding(self, n: int, then: Callable[[], str]) -> str:
        """``then()`` while ``n`` requests are in flight (nested calls hold their replica)."""
        if n == 0:
            return then()
        return self.balancer.call(lambda a: self.holding(n - 1, then))

    def ejected(self) -> list[str]:
        return [s.address for s in self.balancer.stats() if s.ejected]

    def stat(self, address: str, key: str) -> int:
        return int(next(getattr(s, key) for s in self.balancer.stats() if s.address == address))


ABC = ["a:1", "b:1", "c:1"]


# --- targets ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("localhost:8001", Target("localhost", 8001, dns=False)),
        ("10.0.0.7:9000", Target("10.0.0.7", 9000, dns=False)),
        ("dns+ovr-alpr-triton-headless:8001", Target("ovr-alpr-triton-headless", 8001, True)),
        ("[::1]:8001", Target("[::1]", 8001, dns=False)),
        ("localhost", "expected host:port"),
        ("dns+:8001", "expected host:port"),
        ("grpc://host:8001", "expected host:port"),
        ("host:0", "expected host:port"),
        ("host:99999", "expected host:port"),
        ("host:http", "expected host:port"),
    ],
)
def test_target_parse(text: str, want: Target | str) -> None:
    if isinstance(want, str):
        with pytest.raises(ValueError, match=want):
            Target.parse(text)
    else:
        assert Target.parse(text) == want and str(want) == text


def test_resolve_dns_reads_the_system_resolver() -> None:
    assert "127.0.0.1:8001" in resolve_dns("localhost", 8001)


# --- choosing -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "want"),
    [
        ("least_outstanding", ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]),  # ties in turn
        ("round_robin", ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]),
        ("failover", ["a:1"] * 6),
    ],
)
def test_sequential_requests(policy: str, want: list[str]) -> None:
    fleet = Fleet(ABC, policy)
    assert [fleet.request() for _ in want] == want
    assert [s.requests for s in fleet.balancer.stats()] == [want.count(a) for a in ABC]
    assert all(s.outstanding == 0 for s in fleet.balancer.stats())


@pytest.mark.parametrize(
    ("policy", "in_flight", "want"),
    [
        # nested calls hold a, then b: the next request goes where none is in flight
        ("least_outstanding", 1, "b:1"),
        ("least_outstanding", 2, "c:1"),
        ("least_outstanding", 3, "a:1"),  # all busy alike: in turn again
        ("round_robin", 2, "c:1"),
        ("failover", 2, "a:1"),  # failover never spreads
    ],
)
def test_in_flight_requests(policy: str, in_flight: int, want: str) -> None:
    fleet = Fleet(ABC, policy)
    assert fleet.holding(in_flight, fleet.request) == want


@pytest.mark.parametrize(
    ("policy", "want"),
    [("least_outstanding", ["b:1", "b:1"]), ("round_robin", ["b:1", "a:1"])],
)
def test_least_outstanding_skips_a_busy_replica_on_its_turn(policy: str, want: list[str]) -> None:
    fleet = Fleet(["a:1", "b:1"], policy)
    # while a request is in flight on a, two more one after the other: the second one
    # comes on a's turn, which least_outstanding gives to b
    assert fleet.balancer.call(lambda a: [fleet.request(), fleet.request()]) == want


# --- failing, ejecting, backing off, recovering --------------------------------------
def test_a_failed_request_is_retried_once_on_another_replica() -> None:
    fleet = Fleet(ABC)
    fleet.down = {"a:1"}
    assert fleet.request() == "b:1"  # a first (its turn), refused, retried on b
    assert fleet.balancer.retried == 1 and fleet.balancer.last_address == "b:1"
    assert (fleet.stat("a:1", "failures"), fleet.stat("a:1", "consecutive_failures")) == (1, 1)
    fleet.down = {"a:1", "b:1"}
    fleet.balancer._cursor = 0  # a's turn again
    with pytest.raises(NoReplicaAnswered, match=r"a:1: connection refused; b:1: conn") as err:
        fleet.request()  # two tries, not three
    assert err.value.tried == ("a:1", "b:1") and fleet.stat("c:1", "requests") == 0


def test_an_answered_error_is_not_retried_nor_counted() -> None:
    fleet = Fleet(ABC)

    def refuse(address: str) -> str:
        raise ValueError(f"bad input at {address}")

    with pytest.raises(ValueError, match="a:1"):
        fleet.balancer.call(refuse)
    assert fleet.stat("a:1", "failures") == 0 and fleet.stat("b:1", "requests") == 0


@pytest.mark.parametrize(
    ("policy", "eject_after", "requests", "failures", "ejected"),
    [
        # a down: a request on a is refused and retried on b (the retry takes a turn, so
        # with two replicas a comes first every time); after N failures a gets no more
        ("round_robin", 1, 6, 1, True),
        ("round_robin", 2, 6, 2, True),
        ("round_robin", 3, 2, 2, False),
        ("least_outstanding", 2, 8, 2, True),
        ("failover", 2, 8, 1, False),  # moved to b after one failure and kept it
    ],
)
def test_ejection_after_consecutive_failures(
    policy: str, eject_after: int, requests: int, failures: int, ejected: bool
) -> None:
    fleet = Fleet(["a:1", "b:1"], policy, eject_after=eject_after)
    fleet.down = {"a:1"}
    assert [fleet.request() for _ in range(requests)] == ["b:1"] * requests
    assert fleet.ejected() == (["a:1"] if ejected else [])
    assert fleet.stat("a:1", "failures") == fleet.stat("a:1", "requests") == failures


def test_ejected_replica_is_probed_with_exponential_backoff_then_recovers() -> None:
    fleet = Fleet(["a:1", "b:1"], "round_robin", eject_after=1, backoff=Backoff(1.0, 4.0))
    fleet.down = {"a:1"}
    fleet.request()  # a refused at t=0: ejected, probed again at t=1
    assert fleet.ejected() == ["a:1"]
    probed_at = []
    for step in range(40):  # t = 0.25 ... 10: the checker's ticks
        fleet.now = (step + 1) * 0.25
        before = len(fleet.probes)
        fleet.balancer.check()
        if "a:1" in fleet.probes[before:]:
            probed_at.append(fleet.now)
        if fleet.now == 8.0:
            fleet.down = set()  # a comes back; its next probe (t=11) would pass
    # failed probes at 1, then +2 (3), +4 (7, the cap), +4 (11); b is probed every 5 s
    assert probed_at == [1.0, 3.0, 7.0]
    assert fleet.ejected() == ["a:1"]
    fleet.now = 11.0
    fleet.balancer.check()
    assert fleet.ejected() == []
    assert sorted(fleet.request() for _ in range(4)) == ["a:1", "a:1", "b:1", "b:1"]
    fleet.down = {"a:1"}  # the backoff started again from its first wait
    fleet.balancer._cursor = 0
    fleet.request()
    assert fleet.ejected() == ["a:1"]
    fleet.now, before = 12.0, len(fleet.probes)
    fleet.balancer.check()
    assert "a:1" in fleet.probes[before:]


def test_failed_probes_eject_a_replica_that_gets_no_requests() -> None:
    fleet = Fleet(["a:1", "b:1"], "failover", eject_after=2)
    fleet.down = {"b:1"}
    for t in (0.0, 5.0):
        fleet.now = t
        fleet.balancer.check()
    assert fleet.ejected() == ["b:1"] and fleet.stat("b:1", "requests") == 0


def test_all_ejected_still_tries_them_and_a_success_brings_one_back() -> None:
    fleet = Fleet(["a:1", "b:1"], "round_robin", eject_after=1)
    fleet.down = {"a:1", "b:1"}
    with pytest.raises(NoReplicaAnswered):
        fleet.request()
    assert fleet.ejected() == ["a:1", "b:1"]
    fleet.down = {"a:1"}
    assert fleet.request() == "b:1"  # fail open: the ejected replicas are still tried
    assert fleet.ejected() == ["a:1"]


def test_failover_keeps_the_replica_it_moved_to() -> None:
    fleet = Fleet(ABC, "failover", eject_after=3)
    assert fleet.request() == "a:1"
    fleet.down = {"a:1"}
    assert fleet.request() == "b:1"  # a refused once: retried on b ...
    fleet.down = set()
    assert [fleet.request() for _ in range(3)] == ["b:1"] * 3  # ... and b is kept
    fleet.down = {"b:1"}
    assert fleet.request() == "c:1"
    assert fleet.balancer.retried == 2


# --- DNS ------------------------------------------------------------------------------
def test_dns_target_membership_follows_the_records() -> None:
    fleet = Fleet(["dns+pods:8001", "static:8001"], "round_robin", dns={"pods": ["10.0.0.1"]})
    assert fleet.balancer.addresses == []  # resolved lazily, on the first request
    assert fleet.request() == "10.0.0.1:8001"
    assert fleet.balancer.addresses == ["10.0.0.1:8001", "static:8001"]
    fleet.dns["pods"] = ["10.0.0.2", "10.0.0.3"]
    fleet.now = 9.0
    fleet.request()
    assert len(fleet.balancer.addresses) == 2  # not due before dns_refresh_s (10 s)
    fleet.now = 10.0
    fleet.balancer.check()
    assert fleet.balancer.addresses == ["10.0.0.2:8001", "10.0.0.3:8001", "static:8001"]
    assert fleet.closed == ["10.0.0.1:8001"]  # the pod that left: connection closed
    fleet.dns_fails = True  # a failed lookup keeps the last answer
    fleet.now = 20.0
    fleet.balancer.check()
    assert fleet.balancer.addresses == ["10.0.0.2:8001", "10.0.0.3:8001", "static:8001"]
    assert "Name or service not known" in (fleet.balancer.dns_error or "")


def test_a_replica_leaving_mid_request_is_closed_when_it_ends() -> None:
    fleet = Fleet(["dns+pods:8001"], dns={"pods": ["10.0.0.1", "10.0.0.2"]})

    def leave_during(address: str) -> str:
        fleet.dns["pods"] = ["10.0.0.2"]
        fleet.now = 10.0
        fleet.balancer.check()
        assert fleet.closed == []  # still in flight
        return address

    assert fleet.balancer.call(leave_during) == "10.0.0.1:8001"
    assert fleet.closed == ["10.0.0.1:8001"] and fleet.balancer.addresses == ["10.0.0.2:8001"]


def test_a_name_that_resolves_to_nothing_is_a_clear_error() -> None:
    fleet = Fleet(["dns+pods:8001"])
    with pytest.raises(NoReplicaAnswered, match=r"no Triton replica in dns\+pods:8001 .*no addr"):
        fleet.request()
    fleet.dns["pods"] = ["10.0.0.9"]
    fleet.now = 1.0  # an empty set is looked up again soon, not after dns_refresh_s
    assert fleet.request() == "10.0.0.9:8001"


# --- config and metrics -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "want"),
    [
        ({}, BalanceSettings()),
        (
            {
                "urls": ["dns+ovr-alpr-triton-headless:8001"],
                "balance": "round_robin",
                "eject_after": 5,
                "eject_backoff": {"first_s": 2, "cap_s": 60},
                "health_interval_s": 1,
                "dns_refresh_s": 15,
            },
            BalanceSettings("round_robin", 5, Backoff(2.0, 60.0), 1.0, 15.0),
        ),
        ({"balance": "failover"}, BalanceSettings("failover")),
        ({"balance": "random"}, "triton.balance"),
        ({"urls": ["http://triton:8001"]}, "triton.urls"),
        ({"dns_refresh_s": 0}, "triton.dns_refresh_s"),
        ({"eject_after": 0}, "triton.eject_after"),
    ],
)
def test_config(section: dict[str, object], want: BalanceSettings | str) -> None:
    data = {"triton": section, "cameras": {"cam1": {"source": "video.mp4"}}}
    if isinstance(want, str):
        with pytest.raises(ConfigError, match=want):
            parse_config(data)
    else:
        assert parse_config(data).triton.balance_settings() == want
        assert Triton.model_validate(section).balance_settings() == want


def test_replica_metrics() -> None:
    fleet = Fleet(["a:1", "b:1"], "round_robin", eject_after=1)
    fleet.down = {"a:1"}
    fleet.request()
    metrics = Metrics()
    metrics.watch_triton("cam1", "reader", fleet.balancer)
    text = generate_latest(metrics.registry).decode()
    labels = '{camera="cam1",client="reader",replica="%s"}'
    for line in (
        f"alpr_triton_replica_requests_total{labels % 'a:1'} 1.0",
        f"alpr_triton_replica_failures_total{labels % 'a:1'} 1.0",
        f"alpr_triton_replica_ejected{labels % 'a:1'} 1.0",
        f"alpr_triton_replica_requests_total{labels % 'b:1'} 1.0",
        f"alpr_triton_replica_ejected{labels % 'b:1'} 0.0",
        f"alpr_triton_replica_outstanding{labels % 'b:1'} 0.0",
    ):
        assert line in text.splitlines(), line


def test_no_replica_is_an_inference_error_naming_the_target() -> None:
    endpoint = TritonEndpoint("dns+nothing.invalid:8001", timeout_s=2)
    client = AlprClient(endpoint)
    try:
        with pytest.raises(InferenceError, match=r"plate_ocr: no Triton replica in dns\+nothing"):
            client.read_plate_crops([b"x"])
        assert not client.ready()
    finally:
        client.close()


# --- two real tritonserver replicas -----------------------------------------------------
REQUESTS, THREADS = 200, 4


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 255, (240, 320, 3), np.uint8) for _ in range(n)]


def _send(client: AlprClient, n: int, *, before: Callable[[int], None] = lambda i: None) -> int:
    """``n`` one-frame plate_locator requests from THREADS threads; how many failed."""
    frames = _frames(8)
    failed: list[str] = []

    def one(i: int) -> None:
        before(i)
        try:
            assert len(client.locate_plates([frames[i % len(frames)]])) == 1
        except InferenceError as exc:
            failed.append(str(exc))

    with cf.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(n)))
    assert not failed, failed[:3]
    return len(failed)


def _steady(servers: list[TritonProcess]) -> list[int]:
    """plate_locator inferences of each server once nothing more is being published
    (Triton updates its metrics every 2 s: earlier requests may still be on their way)."""
    last = None
    while True:
        now = [inference_counts(s.metrics_url, PLATE_LOCATOR)[0] for s in servers]
        if now == last:
            return now
        last = now
        time.sleep(2.2)


def _served(servers: list[TritonProcess], before: list[int], total: int) -> list[int]:
    """plate_locator inferences each server ran since ``before`` (its own metrics; Triton
    publishes them asynchronously: polled until they add up to ``total``)."""
    deadline = time.monotonic() + 15
    while True:
        now = [inference_counts(s.metrics_url, PLATE_LOCATOR)[0] for s in servers]
        served = [a - b for a, b in zip(now, before, strict=True)]
        if sum(served) >= total or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


# least_outstanding is load-aware: a replica that answers faster gets more, so on a box
# whose two cores also run both servers its share follows their noise (45/55 on a quiet
# machine, 33/67 at load 9); round_robin splits exactly. Both must spread.
SHARES = {"round_robin": (0.4, 0.6), "least_outstanding": (0.25, 0.75)}


def _client(servers: list[TritonProcess], policy: str) -> AlprClient:
    settings = BalanceSettings(
        policy,  # type: ignore[arg-type]
        eject_after=2, backoff=Backoff(0.5, 2.0), health_interval_s=1.0,
    )  # fmt: skip
    urls = [s.grpc_url for s in servers]
    return AlprClient(TritonEndpoint(urls[0], timeout_s=20, fallbacks=tuple(urls[1:]),
                                     balance=settings))  # fmt: skip


def test_two_real_replicas_share_fail_over_and_recover(
    weights: Path, triton: TritonProcess, triton_replica2: list[TritonProcess]
) -> None:
    """``triton_replica2`` is the session's second replica (tests/conftest.py): killed here
    and restarted on its ports, the restarted server takes its place in the list."""
    second = triton_replica2
    replica2 = second[0]
    servers = [triton, replica2]
    # 1. spread: each replica's own counters give its share of the requests
    for policy, (low, high) in SHARES.items():
        client = _client(servers, policy)
        try:
            client.input_side(PLATE_LOCATOR)  # read once, before counting
            before = _steady(servers)
            sent = {s.address: s.requests for s in client.balancer.stats()}
            _send(client, REQUESTS)
            served = _served(servers, before, REQUESTS)
            assert sum(served) == REQUESTS, served
            assert all(low * REQUESTS <= n <= high * REQUESTS for n in served), (policy, served)
            stats = {s.address: s for s in client.balancer.stats()}
            counted = [stats[s.grpc_url].requests - sent[s.grpc_url] for s in servers]
            assert counted == served  # the client's own per-replica counts agree
            assert all(s.failures == 0 and s.outstanding == 0 for s in stats.values())
        finally:
            client.close()

    client = _client(servers, "least_outstanding")
    try:
        # 2. replica 2 killed a quarter into a run: no request fails, it is ejected
        def kill_at(i: int) -> None:
            if i == REQUESTS // 4:
                replica2.proc.kill()

        _send(client, REQUESTS, before=kill_at)
        replica2.stop(5)  # reaps it and its stubs
        ejected = {s.address: s.ejected for s in client.balancer.stats()}
        assert ejected == {triton.grpc_url: False, replica2.grpc_url: True}
        assert client.failovers >= 1

        # 3. started again on its ports: probed back in, it gets traffic again
        ports = (_port(replica2.http_url), _port(replica2.grpc_url), _port(replica2.metrics_url))
        second[0] = restarted = start_triton(weights, replica2.log, ports=ports)
        deadline = time.monotonic() + 30
        while any(s.ejected for s in client.balancer.stats()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(s.ejected for s in client.balancer.stats())

        def sent_to_2() -> int:
            return next(
                s.requests for s in client.balancer.stats() if s.address == replica2.grpc_url
            )

        first = sent_to_2()
        _send(client, 40)
        got = sent_to_2() - first
        assert got >= 8, got  # a real share, not a stray request
        # ... which the restarted server ran (a fresh server: its counts start at 0)
        assert inference_counts(restarted.metrics_url, PLATE_LOCATOR, at_least=got)[0] >= got
    finally:
        client.close()
