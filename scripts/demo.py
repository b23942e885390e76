#!/usr/bin/env python
"""Demo of the whole path: tritonserver + Redis + edge-client on a synthetic video + events.

1. generates the demo video (6 plates of UK, EU, US and Brazilian formats, with its
   ground truth) into runs/demo/,
2. starts tritonserver on the model repository and a private redis-server (when the
   binary exists; otherwise the client runs on its local buffer),
3. starts the gate service (`alpr-gate`: access decisions, history, dashboard) on the
   demo gate of config/gate.yaml, with its SQLite history under runs/demo/gate/,
4. runs `edge-client --camera demo` on the video and prints every event (JSON lines,
   also in runs/demo/events.jsonl; crops under runs/demo/out/crops/),
5. prints the gate's decisions (allow / deny / unknown, with decision latency) and
   compares the events with the ground truth. ``--dashboard`` keeps the dashboard up.

Every process it starts runs in a process group of its own (``alpr_common.procgroup``):
SIGTERM, SIGHUP or Ctrl-C, or the crash of one of them, stops them all (tritonserver with
its Python-backend stubs, redis-server, alpr-gate, edge-client); none outlives the demo.

``--images A.jpg B.jpg`` instead reads still photographs through vehicle_detector and
the `alpr` ensemble.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

from alpr_common import procgroup  # noqa: E402
from edge_client.tools.demo_video import demo_edge_config, generate  # noqa: E402
from ensemble.ops.server_process import free_port, start_triton  # noqa: E402
from gate.process import demo_gate_config, start_gate  # noqa: E402


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        print("redis-server not found: the client will run on its local buffer", file=sys.stderr)
        return None, "redis://127.0.0.1:9/0"
    port = free_port()
    proc = procgroup.spawn(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


def run_client(cmd: list[str]) -> int:
    """Run the edge client (in its own group) to its end; stopped with the demo."""
    client = procgroup.spawn(cmd)
    try:
        return client.wait()
    finally:
        procgroup.stop(client, 30)


def watch(children: dict[str, subprocess.Popen[bytes]]) -> str | None:
    """Wait until one of ``children`` ends (its name) or Ctrl-C (None)."""
    try:
        while True:
            for name, proc in children.items():
                if proc.poll() is not None:
                    return name
            time.sleep(1)
    except KeyboardInterrupt:
        return None


def video_demo(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "events.jsonl").unlink(missing_ok=True)
    video, truth_path = generate(out, seed=args.seed)
    truth = json.loads(truth_path.read_text())
    print(
        f"demo video: {video} ({truth['frames']} frames, {len(truth['plates'])} plates)",
        file=sys.stderr,
    )
    decisions: list[dict[str, object]] = []
    records: dict[str, dict[str, object]] = {}
    with ExitStack() as started:  # stopped in reverse order, whatever ends the demo
        redis_proc, redis_url = start_redis(Path(tempfile.mkdtemp(prefix="alpr-redis-")))
        children: dict[str, subprocess.Popen[bytes]] = {}
        if redis_proc is not None:
            started.callback(procgroup.stop, redis_proc)
            children["redis-server"] = redis_proc
        print("starting tritonserver (model_repository/) ...", file=sys.stderr)
        server = start_triton(REPO / "model_repository", out / "tritonserver.log")
        started.callback(server.stop)
        children["tritonserver"] = server.proc
        gate = None
        if redis_proc is not None:
            shutil.rmtree(out / "gate", ignore_errors=True)
            gate_cfg = demo_gate_config(out / "gate", redis_url, port=args.port)
            gate = start_gate(gate_cfg, out / "gate" / "gate.log")
            started.callback(gate.stop)
            children["alpr-gate"] = gate.proc
            print(f"gate dashboard: {gate.url}/", file=sys.stderr)
        config = demo_edge_config(out, video, server.grpc_url, redis_url)
        cmd = [str(BIN / "edge-client"), "--camera", "demo", "--config", str(config), "--fresh"]
        rc = run_client(cmd)
        if gate is not None:
            decisions = wait_decisions(out / "gate" / "decisions-demo_gate.jsonl", out)
            records = gate_records(gate, len(decisions))
            if args.dashboard:
                print(f"\ndashboard at {gate.url}/ - Ctrl-C to stop", file=sys.stderr)
                crashed = watch(children)
                if crashed is not None:
                    code = children[crashed].returncode
                    print(f"{crashed} exited ({code}): stopping the demo", file=sys.stderr)
                    rc = rc or 1
    events = (
        [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        if (out / "events.jsonl").exists()
        else []
    )
    events = [e for e in events if e.get("kind", "plate") == "plate"]
    print("\n--- events ---")
    for e in events:
        print(
            json.dumps(
                {
                    k: e[k]
                    for k in (
                        "plate",
                        "confidence",
                        "format",
                        "track_id",
                        "frame",
                        "latency_ms",
                        "crop_path",
                    )
                }
            )
        )
    want = sorted(p["plate"] for p in truth["plates"])
    got = sorted(e["plate"] for e in events)
    correct = sum(g in want for g in got)
    missed, wrong = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    print(f"\n{len(events)} events for {len(want)} plates; correct: {correct}; missed: {missed}; "
          f"wrong: {wrong}")  # fmt: skip
    if decisions:
        print("\n--- gate decisions (demo_gate; lists in config/gate.yaml) ---")
        print("(direction and dwell come from the vehicle record, completed when the plate leaves)")
        for d in decisions:
            matched, label = d.get("matched") or "-", d.get("label") or ""
            rec = records.get(str(d["record_id"]), {})
            way, dwell = rec.get("direction") or "-", rec.get("dwell_s")
            stay = f"{dwell:.1f} s" if isinstance(dwell, float) else "-"
            print(
                f"{d['plate']:>10}  {str(d['decision']).upper():<8} {matched:<14} {label:<20} "
                f"latency={d['latency_ms']:>4.0f} ms  direction={way:<6} dwell={stay}"
            )
    return rc


def gate_records(gate: Any, n: int, timeout_s: float = 10.0) -> dict[str, dict[str, object]]:
    """The gate's records by id, once ``n`` of them have a direction (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    records: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        try:
            items = gate.get("/api/records?gate=demo_gate&limit=100")["items"]
        except OSError:
            items = []
        records = {r["record_id"]: r for r in items}
        if sum(1 for r in items if r.get("direction")) >= n:
            break
        time.sleep(0.3)
    return records


def wait_decisions(path: Path, out: Path, timeout_s: float = 10.0) -> list[dict[str, object]]:
    """The gate's decisions once it has caught up with the client's plate events."""
    events = out / "events.jsonl"
    want = sum(
        1 for x in (events.read_text().splitlines() if events.exists() else [])
        if json.loads(x).get("kind", "plate") == "plate"
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(rows) >= want:
            break
        time.sleep(0.2)
    return rows


def image_demo(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from edge_client.triton_client import AlprClient
    from ensemble.plates import best_plate

    out: Path = args.out
    server = start_triton(REPO / "model_repository", out / "tritonserver.log")
    try:
        client = AlprClient(server.grpc_url)
        for path in args.images:
            data = path.read_bytes()
            frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            vehicles = client.detect_vehicles([frame])[0] if frame is not None else []
            reads = client.read_plates([data])[0]
            best = best_plate(reads)
            row = {"image": path.name, "vehicles": len(vehicles), "plate": None}
            if best:
                row.update(plate=best.text, confidence=round(best.confidence, 4))
            print(json.dumps(row))
    finally:
        server.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, nargs="*", help="read these photographs instead")
    parser.add_argument("--seed", type=int, default=0, help="demo video seed")
    parser.add_argument("--dashboard", action="store_true", help="keep the gate dashboard up")
    parser.add_argument("--port", type=int, default=None, help="dashboard port (default: free)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "runs" / "demo", help="output folder (runs/demo/)"
    )
    args = parser.parse_args()
    procgroup.install_teardown()  # SIGTERM/SIGHUP/Ctrl-C: stop every child, then exit
    try:
        return image_demo(args) if args.images else video_demo(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
