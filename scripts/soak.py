#!/usr/bin/env python
"""Soak test: several edge clients on looping videos against one server, for a while.

    python scripts/soak.py --cameras 4 --minutes 10

Starts tritonserver, a private redis-server and N `edge-client` processes (cameras
cam1..camN, each looping the demo video with a short dedup window and track TTL so plates
are re-reported every pass and keys expire). Every ``--interval`` seconds it records the
RSS of every process (Triton with its backend stubs), Redis key count and memory, and each
client's queue depths, drops, reads and events (from its Prometheus endpoint). Writes
bench/results/soak.json and bench/results/soak.png, and checks that memory levels off,
keys stay bounded, and every frame is accounted for (processed or counted as dropped).

Smoke run (one camera for half a minute, the server of the caller; ``--triton-pid`` is
whose memory ``rss_server_mb`` measures, 0 without it)::

    python scripts/soak.py --cameras 1 --minutes 0.5 --interval 5 \
        --triton-url localhost:8001 --triton-pid PID --out /tmp/soak.json

Every process it starts runs in a process group of its own (``alpr_common.procgroup``):
SIGTERM, SIGHUP or Ctrl-C stops them all (the server with its Python-backend stubs,
redis-server, the clients) before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import redis
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from demo import start_redis  # noqa: E402

from alpr_common import procgroup  # noqa: E402
from edge_client.tools.demo_video import generate  # noqa: E402
from ensemble.ops.server_process import free_port, start_triton, tree_rss_mb  # noqa: E402

METRIC = re.compile(r"^(alpr_[a-z_]+)\{([^}]*)\} ([0-9.e+-]+)$")


def scrape(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        m = METRIC.match(line)
        if m and not m.group(1).endswith(("_bucket", "_created")):
            labels = dict(kv.split("=", 1) for kv in m.group(2).split(",") if "=" in kv)
            key = m.group(1) + "".join(
                f".{v.strip(chr(34))}" for k, v in labels.items() if k != "camera"
            )
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def total(metrics: list[dict[str, float]], prefix: str) -> float:
    return sum(v for x in metrics for k, v in x.items() if k.startswith(prefix))


def config(work: Path, video: Path, triton: str, redis_url: str, n: int) -> tuple[Path, list[int]]:
    ports = [free_port() for _ in range(n)]
    cams = {
        f"cam{i + 1}": {
            "source": str(video), "mode": "plates", "loop": True,
            "regions": ["uk", "eu", "us", "br"],
            "thresholds": {"detection": 0.5, "min_box_px": 20, "stable_frames": 3},
            "tracking": {"high_score": 0.5, "low_score": 0.3, "match_iou": 0.1, "lost_frames": 10},
            "dedup_window_s": 5,
            "sinks": [{"type": "jsonl", "path": str(work / "events" / "{camera}.jsonl")},
                      {"type": "redis_stream", "stream": "alpr:events", "maxlen": 1000}],
        }
        for i in range(n)
    }  # fmt: skip
    paths = []
    for i, port in enumerate(ports):
        doc = {"triton": {"urls": [triton]}, "redis": {"url": redis_url, "track_ttl_s": 60},
               "output_dir": str(work / "out"), "metrics_port": port, "status_interval_s": 60,
               "cameras": {f"cam{i + 1}": cams[f"cam{i + 1}"]}}  # fmt: skip
        p = work / f"edge{i + 1}.yaml"
        p.write_text(yaml.safe_dump(doc))
        paths.append(p)
    return work, ports


def expected_events(truth: dict, frames: int) -> int:
    """Plates fully shown within ``frames`` processed frames of a looping video (each pass
    re-reports them: the dedup window is shorter than a pass)."""
    loops, rest = divmod(frames, truth["frames"])
    return loops * len(truth["plates"]) + sum(p["last_frame"] < rest for p in truth["plates"])


def plot(samples: list[dict], out: Path) -> None:
    """A small multi-panel line chart drawn with OpenCV (no plotting dependency)."""
    panels = [("RSS MB (server, clients)", ["rss_server_mb", "rss_clients_mb"]),
              ("Redis keys", ["redis_keys"]), ("Redis memory MB", ["redis_mb"]),
              ("events / drops", ["events", "dropped"])]  # fmt: skip
    w, h = 900, 220
    img = np.full((h * len(panels), w, 3), 255, np.uint8)
    colors = [(200, 60, 30), (30, 120, 200), (40, 160, 40), (20, 20, 180)]
    t = np.array([s["t"] for s in samples])
    for p, (title, keys) in enumerate(panels):
        y0 = p * h
        cv2.putText(img, title, (10, y0 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
        vals = [np.array([s[k] for s in samples], float) for k in keys]
        hi = max(1e-9, max(v.max() for v in vals))
        for k, v in enumerate(vals):
            xs = 50 + (t - t[0]) / max(1e-9, t[-1] - t[0]) * (w - 70)
            ys = y0 + h - 25 - v / hi * (h - 60)
            pts = np.stack([xs, ys], 1).astype(np.int32)
            cv2.polylines(img, [pts], False, colors[k], 2)
            label = f"{keys[k]} (max {hi:.0f})" if k == 0 else keys[k]
            cv2.putText(img, label, (300 + 250 * k, y0 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        colors[k], 1)  # fmt: skip
        cv2.line(img, (50, y0 + h - 25), (w - 20, y0 + h - 25), (0, 0, 0), 1)
    cv2.imwrite(str(out), img)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    ap.add_argument("--triton-url", help="gRPC host:port of a running server (default: start one)")
    ap.add_argument("--triton-pid", type=int, help="with --triton-url: that server's process id")
    args = ap.parse_args()
    if args.triton_pid is not None and not args.triton_url:
        ap.error("--triton-pid goes with --triton-url")
    procgroup.install_teardown()  # SIGTERM/SIGHUP/Ctrl-C: stop every child, then exit
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    video, truth_path = generate(work, font="hershey", width=960, height=540)
    truth = json.loads(truth_path.read_text())
    samples: list[dict] = []
    with ExitStack() as started:  # stopped in reverse order, whatever ends the run
        redis_proc, redis_url = start_redis(work)
        if redis_proc is not None:
            started.callback(procgroup.stop, redis_proc)
        log = work / "tritonserver.log"
        server = None if args.triton_url else start_triton(REPO / "model_repository", log)
        if server is not None:
            started.callback(server.stop)
        server_pid = server.proc.pid if server else args.triton_pid
        triton_url = args.triton_url or (server.grpc_url if server else "")
        _, ports = config(work, video, triton_url, redis_url, args.cameras)
        edge = str(Path(sys.executable).parent / "edge-client")
        clients: list[subprocess.Popen[bytes]] = []
        for i in range(args.cameras):
            err = started.enter_context((work / f"edge{i + 1}.log").open("w"))
            clients.append(procgroup.spawn(
                [edge, "--camera", f"cam{i + 1}", "--config", str(work / f"edge{i + 1}.yaml"),
                 "--fresh", "--log-level", "WARNING"], stderr=err,
            ))  # fmt: skip
            started.callback(procgroup.stop, clients[-1], 30)
        r = redis.Redis.from_url(redis_url)
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.interval)
            m = [scrape(p) for p in ports]
            info = r.info("memory")
            s = {
                "t": round(time.monotonic() - t0, 1),
                "rss_server_mb": round(tree_rss_mb(server_pid), 1) if server_pid else 0.0,
                "rss_clients_mb": round(sum(tree_rss_mb(c.pid) for c in clients), 1),
                "rss_per_client_mb": [round(tree_rss_mb(c.pid), 1) for c in clients],
                "redis_keys": int(r.dbsize()), "redis_mb": round(info["used_memory"] / 2**20, 2),
                "frames": sum(x.get("alpr_frames_processed_total", 0) for x in m),
                "frames_per_camera": [x.get("alpr_frames_processed_total", 0) for x in m],
                "dropped": total(m, "alpr_frames_dropped_total"),
                "read_queue": sum(x.get("alpr_queue_depth.reads", 0) for x in m),
                "frame_queue": sum(x.get("alpr_queue_depth.frames", 0) for x in m),
                "reads": sum(x.get("alpr_ocr_reads_total", 0) for x in m),
                "events": sum(x.get("alpr_events_total", 0) for x in m),
                "duplicates": total(m, "alpr_duplicates"),
                "clients_alive": sum(c.poll() is None for c in clients),
            }  # fmt: skip
            samples.append(s)
            print(json.dumps(s), flush=True)
    half = samples[len(samples) // 2 :]
    growth = lambda k: (half[-1][k] - half[0][k]) if len(half) > 1 else 0.0  # noqa: E731
    checks = {
        "server_rss_growth_second_half_mb": round(growth("rss_server_mb"), 1),
        "clients_rss_growth_second_half_mb": round(growth("rss_clients_mb"), 1),
        "redis_keys_max": max(s["redis_keys"] for s in samples),
        "redis_keys_last": samples[-1]["redis_keys"],
        "all_clients_alive": all(s["clients_alive"] == args.cameras for s in samples),
        "events_total": samples[-1]["events"], "frames_total": samples[-1]["frames"],
        "dropped_total": samples[-1]["dropped"],
    }  # fmt: skip
    checks["events_expected"] = sum(
        expected_events(truth, int(f)) for f in samples[-1]["frames_per_camera"]
    )
    result = {"cameras": args.cameras, "minutes": args.minutes, "interval_s": args.interval,
              "machine": {"cpus": os.cpu_count()}, "checks": checks,
              "samples": samples}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(samples, args.out.with_suffix(".png"))
    print(json.dumps(checks, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
