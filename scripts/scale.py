#!/usr/bin/env python
"""Scale-out load and chaos harness on loopback: M paced edge clients on looping videos
against K Triton replicas, Sentinel Redis and the gate.

    python scripts/scale.py                       # 32 cameras; K = 1, 2, 3; then chaos
    python scripts/scale.py --smoke --out /tmp/scale.json

Everything is real and local: ``tritonserver`` replicas (only ``plate_locator`` and the
``alpr`` ensemble loaded), a Redis master + replica + 3 sentinels, ``alpr-gate`` and one
``edge-client`` per camera (plates mode, the demo video looping at ``--speed`` of real
time, so that many cameras fit on 2 cores). Each client balances over the phase's
replicas (``triton.balance: least_outstanding``) and reaches Redis through the sentinels.

Steady phases, one per K: aggregate processed fps, each replica's share of the
``plate_locator`` requests (Triton's own counters), the p95 read latency (the clients'
``alpr_stage_seconds{stage="read"}``), and events expected / got / duplicated / lost
against the video's ground truth (a plate counts once per pass of the loop).

The chaos phase (K = 2 by default) runs the same load while a replica is SIGKILLed and
restarted every ``--kill-every`` seconds, the Redis master is SIGKILLed (``redis_failover_s``:
kill to the first write accepted by the promoted master) and the gate is SIGKILLed and
restarted (``gate_restart_lost``: plate events in the stream the gate never decided).

Writes ``bench/results/scale.json`` (``replica_share_min``, ``events_lost``,
``events_duplicated``, ``redis_failover_s``, ``gate_restart_lost`` at the top) and
``scale.png``. Every process runs in its own process group (``alpr_common.procgroup``).
The replicas start at once, while the video is rendered and the Sentinel set starts (on
ports picked together, so that no two servers are given the same one).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alpr_common import procgroup  # noqa: E402
from alpr_common.config import Redis as RedisConfig  # noqa: E402
from alpr_common.redis_conn import connect  # noqa: E402
from edge_client.tools.demo_video import generate  # noqa: E402
from ensemble.ops.server_process import (  # noqa: E402
    TritonProcess,
    free_port,
    inference_counts,
    start_triton,
)
from gate.process import GateProcess, start_gate  # noqa: E402

SERVICE = "mymaster"
STREAM = "alpr:events"
MODEL = "plate_locator"
REDIS_SERVER = "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else "redis-server"
EXE = Path(sys.executable).parent


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started by ``procgroup.spawn`` with its whole group (a crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- Redis: a master, a replica and three sentinels ---------------------------------------
def _ping(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    with redis.Redis(port=port, socket_timeout=1) as r:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                return bool(r.ping())
            except redis.RedisError:
                time.sleep(0.05)
    return False


@dataclass
class SentinelRedis:
    """Loopback Sentinel set: ``master`` and ``replica`` are (process, port)."""

    work: Path
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    sentinels: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def _server(self, *extra: str) -> int:
        for _ in range(3):
            port = free_port()
            proc = procgroup.spawn(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.work), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if _ping(port, proc):
                self.servers[port] = proc
                return port
            procgroup.stop(proc)
        raise RuntimeError("could not start redis-server")

    def start(self) -> SentinelRedis:
        master = self._server("--repl-diskless-sync-delay", "0")
        self._server("--replicaof", "127.0.0.1", str(master))
        for _ in range(3):
            port = free_port()
            conf = self.work / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.work}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
            )
            proc = procgroup.spawn(
                [REDIS_SERVER, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if not _ping(port, proc):
                raise RuntimeError("could not start a sentinel")
            self.sentinels.append((proc, port))
        deadline = time.monotonic() + 30
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("sentinels did not find each other and the replica")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        for _, port in self.sentinels:
            with redis.Redis(port=port, decode_responses=True, socket_timeout=1) as s:
                state = s.sentinel_master(SERVICE)
            if (int(state["num-other-sentinels"]), int(state["num-slaves"])) != (2, 1):
                return False
        return True

    def config(self) -> dict[str, Any]:
        return {
            "url": f"redis://{SERVICE}/0",
            "sentinels": [f"127.0.0.1:{p}" for _, p in self.sentinels],
            "sentinel_service": SERVICE,
        }

    def client(self) -> redis.Redis:
        return connect(RedisConfig(**self.config()), socket_timeout=1, decode_responses=True)

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinels[0][1], decode_responses=True, socket_timeout=1) as s:
            return int(s.sentinel_get_master_addr_by_name(SERVICE)[1])

    def kill_master(self) -> float:
        """SIGKILL the master; seconds until a write is accepted by the promoted one."""
        port = self.master_port()
        t0 = time.monotonic()
        sigkill(self.servers[port])
        probe = self.client()
        while time.monotonic() - t0 < 60:
            try:
                probe.set("scale:failover-probe", str(time.time()))
                return time.monotonic() - t0
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("no master accepted a write within 60 s of the kill")

    def stop(self) -> None:
        for proc, _ in self.sentinels:
            procgroup.stop(proc, 5)
        for proc in self.servers.values():
            procgroup.stop(proc, 5)


# --- Triton replicas ------------------------------------------------------------------------
TRITON_ARGS = [
    "--model-control-mode=explicit", f"--load-model={MODEL}", "--load-model=alpr",
    "--log-verbose=0",
]  # fmt: skip


def start_replica(work: Path, i: int, ports: tuple[int, int, int] | None = None) -> TritonProcess:
    return start_triton(
        REPO / "model_repository", work / f"triton{i}.log", extra_args=TRITON_ARGS,
        ports=ports, timeout_s=300,
    )  # fmt: skip


def distinct_ports(n: int) -> list[tuple[int, int, int]]:
    """``n`` (http, grpc, metrics) triples of free loopback ports, all different (every
    socket held until all are picked)."""
    socks = []
    try:
        for _ in range(3 * n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        ports = [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    return [(ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(n)]


def replica_ports(server: TritonProcess) -> tuple[int, int, int]:
    http = int(server.http_url.rsplit(":", 1)[1])
    grpc = int(server.grpc_url.rsplit(":", 1)[1])
    metrics = int(server.metrics_url.split(":")[2].split("/")[0])
    return http, grpc, metrics


def locator_count(server: TritonProcess) -> int | None:
    try:
        return inference_counts(server.metrics_url, MODEL, timeout_s=2)[0]
    except OSError:
        return None  # a killed or restarting replica answers nothing


class RequestCounter(threading.Thread):
    """Requests each replica served during a phase, from Triton's counters sampled every
    second; a counter that went down is a restarted replica (counted from zero again)."""

    def __init__(self, servers: list[TritonProcess]) -> None:
        super().__init__(daemon=True)
        self.servers = servers  # the list the chaos thread updates in place
        self.last = [locator_count(s) or 0 for s in servers]
        self.total = [0] * len(servers)
        self.stop = threading.Event()

    def sample(self) -> None:
        for i, server in enumerate(self.servers):
            now = locator_count(server)
            if now is None:
                continue
            self.total[i] += now if now < self.last[i] else now - self.last[i]
            self.last[i] = now

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.sample()

    def finish(self) -> list[int]:
        self.stop.set()
        self.join(10)
        self.sample()
        return self.total


# --- edge clients ---------------------------------------------------------------------------
@dataclass
class Camera:
    name: str
    config: Path
    metrics_port: int
    events: Path
    summary: Path
    proc: subprocess.Popen[bytes] | None = None


def edge_configs(
    work: Path, video: Path, names: list[str], urls: list[str], redis_cfg: dict[str, Any],
    speed: float, pass_media_s: float,
) -> list[Camera]:  # fmt: skip
    # a plate stays in view for at most ~4 s of video: a track broken by dropped frames
    # must not report it again (dedup window, in wall time), a later pass must
    dedup_s = round(min(0.5 * pass_media_s, 8.0) / speed, 1)
    cams = []
    for name in names:
        port = free_port()
        events = work / "events" / f"{name}.jsonl"
        cam = {
            "source": str(video), "mode": "plates", "loop": True, "realtime": True,
            "playback_speed": speed, "regions": ["uk", "eu", "us", "br"],
            "thresholds": {"detection": 0.5, "min_box_px": 20, "stable_frames": 2},
            "tracking": {"high_score": 0.5, "low_score": 0.3, "match_iou": 0.1, "lost_frames": 4},
            "dedup_window_s": dedup_s,
            "sinks": [{"type": "jsonl", "path": str(events)},
                      {"type": "redis_stream", "stream": STREAM, "maxlen": 100_000}],
        }  # fmt: skip
        doc = {
            "triton": {"urls": urls, "balance": "least_outstanding", "timeout_s": 20},
            "redis": {**redis_cfg, "track_ttl_s": 600}, "output_dir": str(work / "out"),
            "metrics_port": port, "status_interval_s": 60, "cameras": {name: cam},
        }  # fmt: skip
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        cams.append(Camera(name, path, port, events, work / f"{name}.summary.json"))
    return cams


def start_cameras(cams: list[Camera], work: Path) -> None:
    for c in cams:
        log = (work / f"{c.name}.log").open("ab")
        c.proc = procgroup.spawn(
            [str(EXE / "edge-client"), "--camera", c.name, "--config", str(c.config),
             "--summary", str(c.summary), "--wait-triton", "120", "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return ""


def read_buckets(text: str) -> Counter[float]:
    """Cumulative ``alpr_stage_seconds_bucket{stage="read"}`` counts by upper bound."""
    out: Counter[float] = Counter()
    for line in text.splitlines():
        if line.startswith("alpr_stage_seconds_bucket{") and 'stage="read"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] += int(float(line.rsplit(" ", 1)[1]))
    return out


def quantile(buckets: Counter[float], q: float) -> float | None:
    """The ``q`` quantile from cumulative histogram buckets (linear inside a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    want, lo, below = q * buckets[bounds[-1]], 0.0, 0
    for b in bounds:
        if buckets[b] >= want:
            if b == float("inf"):
                return lo
            inside = buckets[b] - below
            return lo + (b - lo) * ((want - below) / inside if inside else 1.0)
        lo, below = b, buckets[b]
    return lo


def stop_cameras(cams: list[Camera]) -> None:
    for c in cams:
        if c.proc is not None and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)  # flush: the last reads, then the summary
    for c in cams:
        if c.proc is not None:
            procgroup.stop(c.proc, 60)


# --- accounting -----------------------------------------------------------------------------
def plate_events(cams: list[Camera]) -> dict[str, list[dict[str, Any]]]:
    """Each camera's plate events, from its local JSONL record (read once per phase)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cams:
        lines = c.events.read_text().splitlines() if c.events.exists() else []
        events = (json.loads(line) for line in lines)
        out[c.name] = [ev for ev in events if ev.get("kind", "plate") == "plate"]
    return out


def account(
    cams: list[Camera], events: dict[str, list[dict[str, Any]]], truth: dict[str, Any]
) -> dict[str, Any]:  # fmt: skip
    """Events against the truth: a plate is expected once per pass of the loop that the
    camera processed to the plate's last frame (``missed``: no event for it: a reading
    miss, or a read lost to a fault); more than one event for it is a duplicate; a text not
    in the truth is a misread."""
    per_pass = truth["frames"]
    plates = {p["plate"]: p for p in truth["plates"]}
    expected = got = duplicated = missed = misread = frames = 0
    for c in cams:
        summary = json.loads(c.summary.read_text()) if c.summary.exists() else {}
        frames += int(summary.get("frames", 0)) + int(summary.get("idle_skipped", 0))
        last = int(summary.get("last_frame", 0))
        seen: Counter[tuple[str, int]] = Counter()
        for ev in events[c.name]:
            if ev["plate"] not in plates:
                misread += 1
                continue
            seen[(ev["plate"], int(ev["frame"]) // per_pass)] += 1
        want = {  # each phase's cameras are new: they start at frame 0
            (t, k)
            for k in range(last // per_pass + 1)
            for t, p in plates.items()
            if k * per_pass + p["last_frame"] < last
        }
        expected += len(want)
        got += sum(1 for key in want if seen[key])
        missed += sum(1 for key in want if not seen[key])
        duplicated += sum(n - 1 for n in seen.values() if n > 1)
    return {
        "events_expected": expected, "events_got": got, "events_missed": missed,
        "events_duplicated": duplicated, "misreads": misread, "frames": frames,
    }  # fmt: skip


def delivery(
    events: dict[str, list[dict[str, Any]]], client: redis.Redis, db: Path | None
) -> dict[str, int]:  # fmt: skip
    """Emitted plate events against the stream (and the gate's records, with ``db``):
    ``events_lost`` = emitted but not in the stream + in the stream but never decided."""
    names = set(events)
    emitted = [str(ev["event_id"]) for evs in events.values() for ev in evs]
    in_stream: Counter[str] = Counter()
    entries: list[tuple[str, dict[str, str]]] = client.xrange(STREAM, "-", "+")  # type: ignore[assignment]
    for _, fields in entries:
        ev: dict[str, Any] = json.loads(fields.get("event", "{}"))
        if ev.get("camera") in names and ev.get("kind", "plate") == "plate":
            in_stream[str(ev.get("event_id"))] += 1
    out = {
        "events_emitted": len(emitted),
        "stream_lost": len(set(emitted) - set(in_stream)),
        "stream_duplicated": sum(n - 1 for n in in_stream.values() if n > 1),
    }  # fmt: skip
    if db is not None:
        decided: set[str] = set()
        if db.exists():
            with sqlite3.connect(db) as con:
                for (raw,) in con.execute("SELECT event_ids FROM vehicle_records"):
                    decided.update(json.loads(raw or "[]"))
        out["gate_undecided"] = len(set(in_stream) - decided)
    out["events_lost"] = out["stream_lost"] + out.get("gate_undecided", 0)
    return out


# --- phases ---------------------------------------------------------------------------------
@dataclass
class Run:
    args: argparse.Namespace
    work: Path
    video: Path
    truth: dict[str, Any]
    redis: SentinelRedis
    replicas: list[TritonProcess]
    gate: GateProcess | None = None
    gate_config: Path | None = None

    def phase(self, name: str, k: int, seconds: float, chaos: bool = False) -> dict[str, Any]:
        names = [f"{name}c{i + 1}" for i in range(self.args.cameras)]
        servers = self.replicas[:k]
        cams = edge_configs(
            self.work, self.video, names, [s.grpc_url for s in servers], self.redis.config(),
            self.args.speed, self.truth["frames"] / self.truth["fps"],
        )  # fmt: skip
        counter = RequestCounter(servers)
        counter.start()
        start_cameras(cams, self.work)
        t0 = time.monotonic()
        chaos_out: dict[str, Any] = {}
        if chaos:
            chaos_out = self._chaos(servers, seconds, t0)
        else:
            time.sleep(seconds)
        texts = [scrape(c.metrics_port) for c in cams]
        wall = time.monotonic() - t0
        stop_cameras(cams)
        delta = counter.finish()
        share = [d / max(1, sum(delta)) for d in delta]
        buckets: Counter[float] = Counter()
        for text in texts:
            buckets.update(read_buckets(text))
        events = plate_events(cams)  # the clients have stopped: their records are complete
        acc = account(cams, events, self.truth)
        time.sleep(5 if chaos else 1)  # the stream sink and the gate catch up
        db = self.work / "history.db" if chaos else None
        acc.update(delivery(events, self.redis.client(), db))
        p95 = quantile(buckets, 0.95)
        out = {
            "phase": name, "replicas": k, "cameras": len(cams), "seconds": round(wall, 1),
            "processed_fps": round(acc["frames"] / max(1e-6, wall), 2),
            "locator_requests": delta, "replica_share": [round(s, 3) for s in share],
            "replica_share_min": round(min(share), 3),
            "read_p95_s": None if p95 is None else round(p95, 3), **acc, **chaos_out,
        }  # fmt: skip
        print(json.dumps(out), flush=True)
        return out

    def _chaos(self, servers: list[TritonProcess], seconds: float, t0: float) -> dict[str, Any]:
        assert self.gate is not None and self.gate_config is not None
        events: list[tuple[float, str]] = []
        stop = threading.Event()
        kills = 0

        def replica_chaos() -> None:
            nonlocal kills
            i = 0
            while not stop.wait(self.args.kill_every):
                victim = servers[i % len(servers)]
                ports = replica_ports(victim)
                sigkill(victim.proc)
                events.append((time.monotonic() - t0, f"replica {i % len(servers)} killed"))
                kills += 1
                fresh = start_replica(self.work, 100 + i, ports)
                servers[i % len(servers)] = fresh
                self.replicas[self.replicas.index(victim)] = fresh
                events.append((time.monotonic() - t0, f"replica {i % len(servers)} back"))
                i += 1

        thread = threading.Thread(target=replica_chaos, daemon=True)
        thread.start()
        time.sleep(seconds / 3)
        failover = self.redis.kill_master()
        events.append((time.monotonic() - t0, f"redis master killed, failover {failover:.2f}s"))
        time.sleep(max(0.0, t0 + 2 * seconds / 3 - time.monotonic()))
        sigkill(self.gate.proc)
        events.append((time.monotonic() - t0, "gate killed"))
        time.sleep(3)
        self.gate = start_gate(self.gate_config, self.work / "gate.log")
        events.append((time.monotonic() - t0, "gate back"))
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        stop.set()
        thread.join(600)
        return {
            "replica_kills": kills, "redis_failover_s": round(failover, 2),
            "timeline": [[round(t, 1), what] for t, what in events],
        }  # fmt: skip


def gate_config(work: Path, redis_cfg: dict[str, Any], cameras: list[str]) -> Path:
    gates = {
        f"g_{c}": {"plate_camera": c, "merge_window_s": 1,
                   "publish": [{"type": "jsonl", "path": str(work / "decisions.jsonl")}]}
        for c in cameras
    }  # fmt: skip
    cfg = {
        "redis": redis_cfg, "stream": STREAM,
        "database": {"url": f"sqlite:///{work / 'history.db'}"},
        "crops_dir": str(work / "gate-crops"), "http": {"host": "127.0.0.1", "port": free_port()},
        "gates": gates,
    }  # fmt: skip
    path = work / "gate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def plot(res: dict[str, Any], out: Path) -> None:
    """Per phase: each replica's share of requests (bars) and events lost / duplicated."""
    phases = res["phases"]
    w, h = 900, 320
    img = np.full((h, w, 3), 255, np.uint8)
    colors = [(200, 60, 30), (30, 120, 200), (40, 160, 40), (20, 20, 180)]
    cv2.putText(img, "share of plate_locator requests per replica", (10, 22),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)  # fmt: skip
    slot = (w - 40) // max(1, len(phases))
    base = h - 60
    for p, ph in enumerate(phases):
        x0 = 30 + p * slot
        for r, s in enumerate(ph["replica_share"]):
            bw = max(6, (slot - 30) // max(1, len(ph["replica_share"])))
            x = x0 + r * bw
            cv2.rectangle(img, (x, base - int(s * 200)), (x + bw - 4, base), colors[r % 4], -1)
        cv2.line(img, (x0, base - 100), (x0 + slot - 20, base - 100), (0, 0, 0), 1)  # 50 %
        label = f"{ph['phase']} K={ph['replicas']}"
        cv2.putText(img, label, (x0, base + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        lost = f"lost {ph['events_lost']} dup {ph['events_duplicated']}"
        cv2.putText(img, lost, (x0, base + 40), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(out), img)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=32)
    ap.add_argument("--replicas", default="1,2,3", help="steady phases: replica counts")
    ap.add_argument("--chaos-replicas", type=int, default=2)
    ap.add_argument("--phase-s", type=float, default=150.0)
    ap.add_argument("--chaos-s", type=float, default=180.0)
    ap.add_argument("--kill-every", type=float, default=60.0)
    ap.add_argument("--speed", type=float, default=0.06, help="playback speed of the videos")
    ap.add_argument("--video-fps", type=float, default=15.0)
    ap.add_argument("--smoke", action="store_true", help="2 cameras, K=2, short phases")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = ap.parse_args(argv)
    if args.smoke:
        args.cameras, args.replicas, args.chaos_replicas = 2, "2", 2
        args.phase_s, args.chaos_s, args.kill_every, args.speed = 25.0, 50.0, 20.0, 0.5
    ks = sorted({int(k) for k in args.replicas.split(",")})
    if min(ks) < 1 or args.cameras < 1 or args.chaos_replicas < 1:
        print("scale.py: --cameras and replica counts must be >= 1", file=sys.stderr)
        return 2
    procgroup.install_teardown()
    with tempfile.TemporaryDirectory(prefix="ovr-scale-") as tmp:
        work = Path(tmp)
        sentinel = SentinelRedis(work)
        replicas: list[TritonProcess] = []
        run: Run | None = None
        n = max(*ks, args.chaos_replicas)
        pool = cf.ThreadPoolExecutor(n)
        starting = [pool.submit(start_replica, work, i, p) for i, p in enumerate(distinct_ports(n))]
        try:
            video, truth_path = generate(work / "video", fps=args.video_fps, name="scale")
            truth = json.loads(truth_path.read_text())
            sentinel.start()
            replicas.extend(f.result() for f in starting)
            run = Run(args, work, video, truth, sentinel, replicas)
            phases = [run.phase(f"k{k}", k, args.phase_s) for k in ks]
            chaos_names = [f"chaosc{i + 1}" for i in range(args.cameras)]
            run.gate_config = gate_config(work, sentinel.config(), chaos_names)
            run.gate = start_gate(run.gate_config, work / "gate.log")
            chaos = run.phase("chaos", args.chaos_replicas, args.chaos_s, chaos=True)
            phases.append(chaos)
        finally:
            pool.shutdown(wait=True)  # every start ended: stop the ones that came up too
            if run is not None and run.gate is not None:
                run.gate.stop()
            started = [f.result() for f in starting if f.exception() is None]
            for server in [*replicas, *(s for s in started if s not in replicas)]:
                server.stop()
            sentinel.stop()
    two = next((p for p in phases if p["replicas"] == 2 and p["phase"] != "chaos"), phases[0])
    res = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "command": "python scripts/scale.py" + (" --smoke" if args.smoke else ""),
        "replica_share_min": two["replica_share_min"],
        "events_lost": chaos["events_lost"],
        "events_duplicated": chaos["events_duplicated"] + chaos["stream_duplicated"],
        "redis_failover_s": chaos["redis_failover_s"],
        "gate_restart_lost": chaos["gate_undecided"],
        "settings": {k: getattr(args, k) for k in
                     ("cameras", "replicas", "chaos_replicas", "phase_s", "chaos_s",
                      "kill_every", "speed", "video_fps")},
        "phases": phases,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    plot(res, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
