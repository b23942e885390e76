"""Smoke run of the scale-out chaos harness (``scripts/scale.py --smoke``): 2 paced cameras,
2 real Triton replicas, a Sentinel Redis set and the gate, with a replica SIGKILLed and
restarted, the Redis master SIGKILLed and the gate SIGKILLed and restarted. Checks
correctness (nothing emitted is lost or doubled on the way to the gate's decisions, the
shares add up, the failover happened), never a time or a rate; and that the result has the
fields of the committed ``bench/results/scale.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_bench_smoke import assert_fields, assert_finite, fraction, run_bench

from scripts.scale import quantile, read_buckets

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


@pytest.mark.parametrize(
    ("buckets", "q", "want"),
    [
        ({0.1: 0, 0.5: 10, float("inf"): 10}, 0.5, 0.3),  # inside the (0.1, 0.5] bucket
        ({0.1: 5, 0.5: 10, float("inf"): 10}, 0.95, 0.46),
        ({0.1: 0, float("inf"): 4}, 0.95, 0.1),  # beyond the last bound: that bound
        ({0.1: 0, float("inf"): 0}, 0.95, None),  # no reads
    ],
)
def test_quantile_from_histogram_buckets(
    buckets: dict[float, int], q: float, want: float | None
) -> None:
    from collections import Counter

    got = quantile(Counter(buckets), q)
    assert got == pytest.approx(want) if want is not None else got is None


def test_read_buckets_sums_cameras() -> None:
    text = "\n".join(
        [
            'alpr_stage_seconds_bucket{camera="a",stage="read",le="0.5"} 3.0',
            'alpr_stage_seconds_bucket{camera="b",stage="read",le="0.5"} 2.0',
            'alpr_stage_seconds_bucket{camera="a",stage="detect",le="0.5"} 9.0',
            'alpr_stage_seconds_bucket{camera="a",stage="read",le="+Inf"} 4.0',
        ]
    )
    assert read_buckets(text) == {0.5: 5, float("inf"): 4}


def test_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run_bench("scale.py", "--smoke", "--out", out, timeout_s=900)
    res = json.loads(out.read_text())
    assert_fields(res, "scale.json", opaque=["settings"])
    assert_finite(res)
    steady, chaos = res["phases"][0], res["phases"][-1]
    for phase in res["phases"]:
        assert sum(phase["locator_requests"]) > 0 and fraction(phase["replica_share_min"])
        assert sum(phase["replica_share"]) == pytest.approx(1.0, abs=0.01)
        assert phase["events_got"] + phase["events_missed"] == phase["events_expected"]
    assert steady["replicas"] == 2 and 0.2 <= res["replica_share_min"] <= 0.5  # least_outstanding
    assert chaos["phase"] == "chaos" and chaos["replica_kills"] >= 1
    assert 0 < res["redis_failover_s"] < 60
    # nothing the cameras emitted is lost or doubled between them and the gate's records
    assert chaos["events_emitted"] >= 1
    assert res["events_lost"] == 0 and res["gate_restart_lost"] == 0
    assert chaos["stream_duplicated"] == 0
    assert out.with_suffix(".png").stat().st_size > 0
