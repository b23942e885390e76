#!/usr/bin/env python
"""Gate benchmark: decision latency (first sighting -> decision) on the demo video through
the real server, and the cost of an empty zone, side by side in one run.

One tritonserver, one private redis-server, one `alpr-gate` (SQLite history). The demo
video is played by `edge-client --camera demo` paced at the video's frame rate (like a
live camera), twice per round, alternating:

* ``zone_idle``: the camera's zone as configured (``idle_every: 3``): with no vehicle in
  the zone the detector sees one frame in 3;
* ``every_frame``: the same zone with ``idle_every: 1``.

Writes bench/results/gate.json: ``decision_latency_p50_ms`` / ``_p95_ms`` (all decisions
of all runs), per-variant latencies, detector calls, idle-skipped frames, decisions vs the
ground truth, and ``detector_calls_zone_idle_over_every_frame``.

Smoke run (one variant once, the server of the caller)::

    python scripts/bench_gate.py --rounds 1 --variants zone_idle --triton-url localhost:8001 \
        --out /tmp/gate.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from demo import start_redis, wait_decisions  # noqa: E402

from edge_client.tools.demo_video import demo_edge_config, generate  # noqa: E402
from ensemble.ops.server_process import start_triton  # noqa: E402
from gate.process import demo_gate_config, start_gate  # noqa: E402

BIN = Path(sys.executable).parent
VARIANTS = {"zone_idle": 3, "every_frame": 1}  # variant -> the zone's idle_every


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_client(
    work: Path, video: Path, fps: float, triton: str, redis_url: str, idle_every: int, tag: str
) -> tuple[dict[str, Any], float]:
    out = work / tag
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = demo_edge_config(out, video, triton, redis_url)
    cfg = yaml.safe_load(cfg_path.read_text())
    cam = cfg["cameras"]["demo"]
    cam["max_fps"] = fps
    cam["zone"]["idle_every"] = idle_every
    cfg_path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    cmd = [str(BIN / "edge-client"), "--camera", "demo", "--config", str(cfg_path), "--fresh",
           "--summary", str(out / "summary.json"), "--log-level", "WARNING"]  # fmt: skip
    subprocess.run(cmd, check=True)
    return json.loads((out / "summary.json").read_text()), time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds of (zone_idle, every_frame)")
    ap.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="variants played each round (default: both)",
    )  # fmt: skip
    ap.add_argument("--triton-url", help="gRPC host:port of a running server (default: start one)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gate.json")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")

    work = Path(tempfile.mkdtemp(prefix="alpr-bench-gate-"))
    video, truth_path = generate(work / "video", seed=0)
    truth = json.loads(truth_path.read_text())
    want = {p["plate"] for p in truth["plates"]}
    lists = yaml.safe_load((REPO / "config" / "gate.yaml").read_text())["gates"]["demo_gate"]
    redis_proc, redis_url = start_redis(work)
    log = work / "tritonserver.log"
    server = None if args.triton_url else start_triton(REPO / "model_repository", log)
    triton_url = args.triton_url or (server.grpc_url if server else "")
    gate = start_gate(demo_gate_config(work / "gate", redis_url), work / "gate" / "gate.log")
    decisions_path = work / "gate" / "decisions-demo_gate.jsonl"
    runs: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = [(v, VARIANTS[v]) for v in VARIANTS if v in args.variants]
            for tag, idle in order if r % 2 == 0 else order[::-1]:
                before = (
                    len(decisions_path.read_text().splitlines()) if decisions_path.exists() else 0
                )
                summary, wall = run_client(
                    work, video, truth["fps"], triton_url, redis_url, idle, f"{tag}-{r}"
                )
                rows = wait_decisions(decisions_path, work / f"{tag}-{r}")[before:]
                runs.append({
                    "variant": tag, "round": r, "wall_s": round(wall, 2),
                    "frames_detected": summary["frames"], "idle_skipped": summary["idle_skipped"],
                    "fps": round(summary["fps"], 2), "events": summary["events"],
                    "decisions": [
                        {k: d[k] for k in ("plate", "decision", "latency_ms")} for d in rows
                    ],
                    "correct_plates": sorted({d["plate"] for d in rows} & want),
                })  # fmt: skip
                print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        gate.stop()
        if server is not None:
            server.stop()
        if redis_proc:
            redis_proc.terminate()

    def lat(variant: str | None) -> list[float]:
        return [
            float(d["latency_ms"])
            for run in runs
            if variant is None or run["variant"] == variant
            for d in run["decisions"]
        ]

    def calls(variant: str) -> float:
        sel = [run["frames_detected"] for run in runs if run["variant"] == variant]
        return float(np.mean(sel)) if sel else 0.0

    all_lat = lat(None)
    command = f"python scripts/bench_gate.py --rounds {args.rounds}"
    if args.variants != list(VARIANTS):
        command += " --variants " + " ".join(args.variants)
    if args.triton_url:
        command += f" --triton-url {args.triton_url}"
    result = {
        "what": "first sighting -> gate decision, demo video paced at its frame rate, through "
        "tritonserver + redis stream + alpr-gate (SQLite)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores",
        "command": command,
        "decision_latency_p50_ms": pct(all_lat, 50),
        "decision_latency_p95_ms": pct(all_lat, 95),
        "decision_latency_max_ms": pct(all_lat, 100),
        "decisions": len(all_lat),
        "by_variant": {
            v: {
                "p50_ms": pct(lat(v), 50),
                "p95_ms": pct(lat(v), 95),
                "n": len(lat(v)),
                "detector_calls_mean": calls(v),
            }
            for v in VARIANTS
        },
        "detector_calls_zone_idle_over_every_frame": round(
            calls("zone_idle") / max(1.0, calls("every_frame")), 3
        )
        if set(args.variants) == set(VARIANTS)
        else None,  # one variant alone: no ratio
        "gate_lists": {"allow": lists["lists"]["allow"], "deny": lists["lists"]["deny"]},
        "truth_plates": sorted(want),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in (
        "decision_latency_p50_ms", "decision_latency_p95_ms", "decisions",
        "detector_calls_zone_idle_over_every_frame")}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
