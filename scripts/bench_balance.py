#!/usr/bin/env python
"""Balancing benchmark: one Triton replica against two, side by side, through AlprClient.

Starts two tritonserver replicas of ``model_repository/`` on loopback (or reuses running
ones, ``--replica GRPC_URL,METRICS_URL``) and sends the same load through
``edge_client.triton_client.AlprClient``: ``--requests`` one-frame ``plate_locator``
requests from ``--threads`` threads, in these runs:

- ``one_replica``: the client knows replica 1 only;
- ``two_replicas``: both, ``triton.balance: least_outstanding`` (the default);
- ``two_replicas_round_robin``: both, ``round_robin``;
- ``two_replicas_failover``: both, ``failover`` (today's behaviour before balancing: all
  on the first one).

Per run: throughput, failed requests, and per replica its share of the requests and the
average batch it ran (its own ``nv_inference_count`` / ``nv_inference_exec_count`` deltas,
from its metrics endpoint): spreading requests over replicas also spreads the requests that
dynamic batching could have put together, and this is where that shows.

Writes ``bench/results/balance.json``. ``--smoke`` is the test suite's run (fewer requests;
correctness only: shares and no failed request, never time).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_client.balancer import BalanceSettings, Policy
from edge_client.triton_client import AlprClient, InferenceError, TritonEndpoint
from ensemble.contracts import PLATE_LOCATOR
from ensemble.ops.server_process import TritonProcess, inference_counts, start_triton

REPO = Path(__file__).resolve().parent.parent

MODEL = PLATE_LOCATOR
FRAME_HW = (480, 640)
RUNS: tuple[tuple[str, int, Policy], ...] = (
    ("one_replica", 1, "least_outstanding"),
    ("two_replicas", 2, "least_outstanding"),
    ("two_replicas_round_robin", 2, "round_robin"),
    ("two_replicas_failover", 2, "failover"),
)


def frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (*FRAME_HW, 3), np.uint8) for _ in range(n)]


def send(client: AlprClient, images: list[np.ndarray], n: int, threads: int) -> list[str]:
    """``n`` one-frame requests from ``threads`` threads; the errors of those that failed."""

    def one(i: int) -> str | None:
        try:
            client.locate_plates([images[i % len(images)]])
        except InferenceError as exc:
            return str(exc)
        return None

    with cf.ThreadPoolExecutor(threads) as pool:
        return [e for e in pool.map(one, range(n)) if e is not None]


def counts(replicas: list[tuple[str, str]]) -> list[tuple[int, int]]:
    return [inference_counts(metrics, MODEL) for _, metrics in replicas]


def steady(replicas: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """The counts once nothing more is being published: Triton updates its metrics every
    2 s, so earlier requests (the warm-up, another client's) may still be on their way."""
    last = None
    while True:
        now = counts(replicas)
        if now == last:
            return now
        last = now
        time.sleep(2.2)


def settled(
    replicas: list[tuple[str, str]], before: list[tuple[int, int]], total: int
) -> list[tuple[int, int]]:
    """Each replica's (inferences, executions) since ``before``; Triton publishes its
    counters asynchronously, so poll until the inferences add up to ``total``."""
    deadline = time.monotonic() + 15
    while True:
        now = counts(replicas)
        delta = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(now, before, strict=True)]
        if sum(d[0] for d in delta) >= total or time.monotonic() > deadline:
            return delta
        time.sleep(0.2)


def run(
    replicas: list[tuple[str, str]], policy: Policy, requests: int, threads: int, seed: int
) -> dict[str, Any]:
    urls = [grpc for grpc, _ in replicas]
    endpoint = TritonEndpoint(urls[0], 30.0, tuple(urls[1:]), BalanceSettings(policy))
    client = AlprClient(endpoint)
    images = frames(16, seed)
    try:
        send(client, images, 2 * threads, threads)  # warm-up (and the letterbox side)
        before = steady(replicas)
        t0 = time.perf_counter()
        failed = send(client, images, requests, threads)
        seconds = time.perf_counter() - t0
        delta = settled(replicas, before, requests - len(failed))
    finally:
        client.close()
    return {
        "replicas": len(replicas),
        "policy": policy,
        "requests": requests,
        "failed": len(failed),
        "errors": failed[:3],
        "seconds": seconds,
        "throughput_rps": requests / seconds,
        "per_replica": [
            {
                "share": inf / max(1, requests),
                "inferences": inf,
                "executions": ex,
                "average_batch": inf / ex if ex else 0.0,
            }
            for inf, ex in delta
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "balance.json")
    ap.add_argument("--requests", type=int, default=600, help="requests per run")
    ap.add_argument("--threads", type=int, default=8, help="client threads sending at once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny run (tests): 80 requests, 4 threads")
    ap.add_argument(
        "--replica", action="append", default=[], metavar="GRPC_URL,METRICS_URL",
        help="use this running server (up to two; the others are started)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.requests, args.threads = 80, 4
    if len(args.replica) > 2 or any(r.count(",") != 1 for r in args.replica):
        ap.error("--replica GRPC_URL,METRICS_URL, at most twice")
    if args.requests < 1 or args.threads < 1:
        ap.error("--requests and --threads must be >= 1")
    replicas = [tuple(r.split(",")) for r in args.replica]
    started: list[TritonProcess] = []
    work = Path(tempfile.mkdtemp(prefix="bench-balance-"))
    try:
        while len(replicas) < 2:
            print(f"starting replica {len(replicas) + 1} ...", file=sys.stderr)
            log = work / f"tritonserver-{len(replicas) + 1}.log"
            server = start_triton(REPO / "model_repository", log)
            started.append(server)
            replicas.append((server.grpc_url, server.metrics_url))
        runs = {}
        for name, n, policy in RUNS:
            print(f"{name} ({policy}) ...", file=sys.stderr)
            runs[name] = run(list(replicas[:n]), policy, args.requests, args.threads, args.seed)
    finally:
        for server in started:
            server.stop()
    one, two = runs["one_replica"], runs["two_replicas"]
    result = {
        "throughput_rps": {name: r["throughput_rps"] for name, r in runs.items()},
        "two_over_one_replica": two["throughput_rps"] / one["throughput_rps"],
        "shares": {name: [p["share"] for p in r["per_replica"]] for name, r in runs.items()},
        "average_batch": {
            name: [p["average_batch"] for p in r["per_replica"]] for name, r in runs.items()
        },
        "failed": {name: r["failed"] for name, r in runs.items()},
        "runs": runs,
        "model": MODEL,
        "frame": list(FRAME_HW),
        "requests": args.requests,
        "threads": args.threads,
        "smoke": bool(args.smoke),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds")},
        "definitions": {
            "load": "one-frame plate_locator requests (random frames of the given size, "
                    "letterboxed by the client) from `threads` threads, through AlprClient",
            "share": "the replica's inferences during the run / requests sent (its own "
                     "nv_inference_count delta)",
            "average_batch": "the replica's nv_inference_count / nv_inference_exec_count "
                             "deltas during the run (dynamic batching, 2 ms queue delay)",
            "throughput_rps": "requests / seconds of the run, client side",
            "replicas": "tritonserver processes on this machine, sharing its CPUs: two "
                        "replicas here show the balancing, not a second machine's capacity",
        },
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in runs.items():
        shares = ", ".join(
            f"{p['share']:.0%} (batch {p['average_batch']:.2f})" for p in r["per_replica"]
        )
        print(f"{name}: {r['throughput_rps']:.1f} req/s, failed {r['failed']}, replicas {shares}")
    bad = {name: r["failed"] for name, r in runs.items() if r["failed"]}
    if bad:
        print(f"bench_balance: failed requests {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
