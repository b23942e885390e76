#!/usr/bin/env python
"""Edge benchmark: per-frame reading (the naive pipeline) vs per-track reading, one run.

On the same demo video, against one tritonserver (+ a private redis-server):

1. detector only: decode + plate detection on every frame (the ceiling for FPS);
2. per-frame reading: decode + detection + OCR of every detected plate in every frame,
   each distinct string read is reported (what an untracked pipeline emits);
3. per-track reading: `edge-client` itself (track, read once per track, vote, Redis).

Writes bench/results/edge.json with OCR calls, processed FPS and plate accuracy
against the ground truth, and the ratios ``ocr_calls_per_frame_over_per_track``,
``fps_over_detector_ceiling``, ``accuracy_per_track``, ``accuracy_per_frame``.
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

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from demo import start_redis  # noqa: E402

from alpr_common.plate_text import normalize  # noqa: E402
from edge_client.detect import PlateFrameDetector  # noqa: E402
from edge_client.tools.demo_video import demo_edge_config, generate  # noqa: E402
from edge_client.triton_client import AlprClient  # noqa: E402
from ensemble.image_io import encode_jpeg  # noqa: E402
from ensemble.ops.server_process import start_triton  # noqa: E402


def frames(video: Path):  # type: ignore[no-untyped-def]
    cap = cv2.VideoCapture(str(video))
    while True:
        ok, image = cap.read()
        if not ok:
            break
        yield image
    cap.release()


def plate_accuracy(reported: list[str], truth: list[str]) -> dict[str, float | int]:
    correct = len(set(reported) & set(truth))
    wrong = len([p for p in set(reported) if p not in truth])
    duplicates = len(reported) - len(set(reported))
    return {
        "correct": correct, "wrong": wrong, "missed": len(set(truth) - set(reported)),
        "duplicates": duplicates,
        "accuracy": correct / max(len(truth), len(reported)) if truth else 0.0,
    }  # fmt: skip


def detector_only(client: AlprClient, video: Path) -> dict[str, float]:
    det = PlateFrameDetector(client)
    t0, n = time.perf_counter(), 0
    for image in frames(video):
        det.detect([image])
        n += 1
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": dt, "fps": n / dt}


def per_frame(client: AlprClient, video: Path, truth: list[str], min_len: int) -> dict[str, object]:
    det = PlateFrameDetector(client)
    t0, n, ocr, requests = time.perf_counter(), 0, 0, 0
    reads: list[str] = []
    for image in frames(video):
        (dets,) = det.detect([image])
        n += 1
        if len(dets) == 0:
            continue
        crops = []
        for x1, y1, x2, y2 in dets.boxes.astype(int):
            crop = image[max(0, y1) : y2, max(0, x1) : x2]
            if crop.size:
                crops.append(encode_jpeg(crop, 85))
        for start in range(0, len(crops), 8):
            batch = crops[start : start + 8]
            requests += 1
            ocr += len(batch)
            reads += [normalize(t) for t, _, _ in client.read_plate_crops(batch)]
    dt = time.perf_counter() - t0
    reported = list(dict.fromkeys(r for r in reads if len(r) >= min_len))  # distinct strings
    correct_reads = sum(r in truth for r in reads)
    return {
        "frames": n, "seconds": dt, "fps": n / dt, "ocr_calls": ocr, "requests": requests,
        "read_exact_fraction": correct_reads / max(1, len(reads)),
        **plate_accuracy(reported, truth),
    }  # fmt: skip


def per_track(config: Path, out: Path, truth: list[str]) -> dict[str, object]:
    summary = out / "summary.json"
    events_file = out / "events.jsonl"
    events_file.unlink(missing_ok=True)
    cmd = [str(Path(sys.executable).parent / "edge-client"), "--camera", "demo", "--config",
           str(config), "--fresh", "--summary", str(summary), "--log-level", "WARNING"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    s = json.loads(summary.read_text())
    plates = [json.loads(x)["plate"] for x in events_file.read_text().splitlines()]
    return {
        "frames": s["frames"], "fps": s["fps"], "wall_seconds_incl_startup": wall,
        "ocr_calls": s["reads"], "requests": s["read_requests"], "tracks": s["tracks"],
        "events": len(plates), **plate_accuracy(plates, truth),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "edge.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    video, truth_path = generate(work, seed=args.seed, font="hershey")
    truth_doc = json.loads(truth_path.read_text())
    truth = [p["plate"] for p in truth_doc["plates"]]
    redis_proc, redis_url = start_redis(work)
    server = start_triton(REPO / "model_repository", work / "tritonserver.log")
    try:
        client = AlprClient(server.grpc_url)
        config = demo_edge_config(work, video, server.grpc_url, redis_url)
        print("detector only ...", file=sys.stderr)
        ceiling = detector_only(client, video)
        print("per-track (edge-client) ...", file=sys.stderr)
        track = per_track(config, work, truth)
        print("per-frame reading ...", file=sys.stderr)
        frame = per_frame(client, video, truth, min_len=4)
    finally:
        server.stop()
        if redis_proc:
            redis_proc.terminate()
    result = {
        "ocr_calls_per_frame_over_per_track": frame["ocr_calls"] / max(1, track["ocr_calls"]),  # type: ignore[operator]
        "fps_over_detector_ceiling": track["fps"] / ceiling["fps"],  # type: ignore[operator]
        "accuracy_per_track": track["accuracy"],
        "accuracy_per_frame": frame["accuracy"],
        "detector_only": ceiling,
        "per_track": track,
        "per_frame": frame,
        "video": {"frames": truth_doc["frames"], "fps": truth_doc["fps"],
                  "size": [truth_doc["width"], truth_doc["height"]], "plates": truth},
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds")},
        "definitions": {
            "accuracy": "distinct plates reported correctly / max(truth plates, distinct plates "
                        "reported); per-frame reports every distinct string it reads",
            "fps": "processed frames per second: decode + detection (+ tracking and reading)",
        },
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k in ("ocr_calls_per_frame_over_per_track", "fps_over_detector_ceiling",
              "accuracy_per_track", "accuracy_per_frame"):  # fmt: skip
        print(f"{k}: {result[k]:.3f}")
    print(f"OCR calls per-frame {frame['ocr_calls']} vs per-track {track['ocr_calls']}; "
          f"fps ceiling {ceiling['fps']:.1f}, per-track {track['fps']:.1f}, per-frame "
          f"{frame['fps']:.1f}; wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
