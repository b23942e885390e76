"""Smoke run of scripts/bench_balance.py: the session's tritonserver as replica 1, the
session's second replica (``triton_replica2``, tests/conftest.py) as replica 2; correctness
only (every request answered, each replica's share of the requests from its own counters,
the runs' fields as committed), never time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ensemble.ops.server_process import TritonProcess
from tests.test_bench_smoke import assert_fields, assert_finite, fraction

REPO = Path(__file__).resolve().parent.parent
# (run, replicas, lowest share, highest share): round_robin splits exactly; least_outstanding
# follows how fast each replica answers (both share this box's two cores): a wider band
SHARES = [
    ("one_replica", 1, 1.0, 1.0),
    ("two_replicas", 2, 0.25, 0.75),
    ("two_replicas_round_robin", 2, 0.4, 0.6),
    ("two_replicas_failover", 2, 0.0, 1.0),
]


def test_bench_balance_smoke(
    triton: TritonProcess, triton_replica2: list[TritonProcess], tmp_path: Path
) -> None:
    replica2 = triton_replica2[0]
    assert replica2.alive() and replica2.ready(), "the session's second replica is down"
    out = tmp_path / "balance.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_balance.py"), "--smoke", "--out",
           str(out), "--replica", f"{triton.grpc_url},{triton.metrics_url}",
           "--replica", f"{replica2.grpc_url},{replica2.metrics_url}"]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=900, cwd=REPO)
    res = json.loads(out.read_text())
    assert_fields(res, "balance.json", keyed=["throughput_rps", "shares", "average_batch",
                                              "failed", "runs"])  # fmt: skip
    assert_finite(res)
    assert res["smoke"] and set(res["runs"]) == {name for name, *_ in SHARES}
    for name, replicas, low, high in SHARES:
        run = res["runs"][name]
        assert run["failed"] == 0 and run["errors"] == [], (name, run["errors"])
        per = run["per_replica"]
        assert len(per) == replicas
        # every request ran exactly once, on one of the replicas (their own counters)
        assert sum(p["inferences"] for p in per) == run["requests"] == res["requests"]
        for p in per:
            assert fraction(p["share"]) and low <= p["share"] <= high, (name, per)
            assert 0 <= p["executions"] <= p["inferences"]
            assert p["average_batch"] == (p["inferences"] / p["executions"] if p["executions"]
                                          else 0.0)  # fmt: skip
    # failover keeps everything on the first replica it finds healthy
    assert sorted(p["share"] for p in res["runs"]["two_replicas_failover"]["per_replica"]) == [
        0.0, 1.0,
    ]  # fmt: skip
    assert res["shares"]["two_replicas"] == [
        p["share"] for p in res["runs"]["two_replicas"]["per_replica"]
    ]
