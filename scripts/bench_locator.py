#!/usr/bin/env python
"""The plate locator's network, float against int8, side by side in one run.

    python scripts/bench_locator.py            # writes bench/results/locator.json
    python scripts/bench_locator.py --smoke    # the test suite's run (tiny, correctness only)

1. ``speed``: both provisioned files (``plate_locator/1/yolo_plate.onnx`` and
   ``yolo_plate_int8.onnx``) in process with onnxruntime (``--threads``, default 2: the
   server's ``intra_op_threads: 0`` on this machine), on the demo video's frames letterboxed
   to 416 beforehand, in alternating rounds (noise hits both alike): median ms per frame.
2. ``recall``: per labelled photo (openalpr-eu and openalpr-us-dev, evaluation only, when
   ``../shared/data`` is present), whether the network finds the labelled plate (a box with
   IoU >= 0.3 at the locator's score threshold), and how many boxes lie on no label.

The int8 file is built by ``alpr-models fetch`` (``ensemble.ops.quantize``) from synthetic
frames only; these photos never take part in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alpr_common.demo_video import generate, read_frames  # noqa: E402
from alpr_common.geometry import iou  # noqa: E402
from edge_client.tools.evaluate import load_labels  # noqa: E402
from ensemble.engines import VehicleDetector  # noqa: E402
from ensemble.ops.quantize import RECIPE  # noqa: E402
from ensemble.params import PlateLocatorParams  # noqa: E402
from ensemble.preprocess import letterbox  # noqa: E402

LOCATOR = REPO / "model_repository" / "plate_locator" / "1"
FILES = {"float": "yolo_plate.onnx", "int8": "yolo_plate_int8.onnx"}
DATA = REPO.parent / "shared" / "data"
SETS = ("openalpr-eu", "openalpr-us-dev")
SIDE = 416


def boxed(frame: np.ndarray, side: int = SIDE) -> np.ndarray:
    return cv2.cvtColor(letterbox(frame, side, fast=True)[0], cv2.COLOR_BGR2RGB)[None]


def video_frames(count: int) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        video, _ = generate(Path(tmp), seed=0, font="hershey")
        return read_frames(video, count)


def speed(nets: dict[str, VehicleDetector], frames: list[np.ndarray], rounds: int) -> dict:
    inputs = [(boxed(f), f.shape[:2]) for f in frames]
    per: dict[str, list[float]] = {k: [] for k in nets}
    for det in nets.values():
        det.detect(inputs[0][0], [inputs[0][1]])  # warm-up
    for _ in range(rounds):
        for name, det in nets.items():
            t0 = time.perf_counter()
            for x, hw in inputs:
                det.detect(x, [hw])
            per[name].append((time.perf_counter() - t0) / len(inputs) * 1000)
    ms = {k: float(np.median(v)) for k, v in per.items()}
    return {"frames": len(inputs), "rounds": rounds, "ms_per_frame": ms, "rounds_ms": per,
            "int8_speedup": ms["float"] / ms["int8"]}  # fmt: skip


def recall(nets: dict[str, VehicleDetector], folder: Path, limit: int | None) -> dict:
    labels = load_labels(folder)[:limit]
    out: dict[str, Any] = {"photos": 0}
    found = {k: 0 for k in nets}
    extra = {k: 0 for k in nets}
    missed: dict[str, list[str]] = {k: [] for k in nets}
    for lab in labels:
        image = cv2.imread(str(folder / lab.image))
        if image is None:
            continue
        out["photos"] += 1
        gt = (lab.box.x1, lab.box.y1, lab.box.x2, lab.box.y2)
        for name, det in nets.items():
            boxes = det.detect(boxed(image), [image.shape[:2]])[0][0]
            hits = [iou(gt, tuple(map(float, b))) >= 0.3 for b in boxes]
            found[name] += any(hits)
            extra[name] += len(hits) - sum(hits)
            if not any(hits):
                missed[name].append(lab.plate)
    out.update({"found": found, "extra_boxes": extra, "missed": missed,
                "recall": {k: v / max(1, out["photos"]) for k, v in found.items()}})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "locator.json")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--frames", type=int, default=120, help="demo frames timed per round")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding the photo sets")
    ap.add_argument("--smoke", action="store_true", help="tiny run (tests): 3 photos a set")
    args = ap.parse_args(argv)
    limit = None
    if args.smoke:
        args.frames, args.rounds, limit = 8, 1, 3
    missing = [f for f in FILES.values() if not (LOCATOR / f).is_file()]
    if missing:
        print(f"bench_locator: {', '.join(missing)} missing; run `alpr-models fetch`",
              file=sys.stderr)  # fmt: skip
        return 1
    threshold = PlateLocatorParams().score_threshold
    nets = {
        name: VehicleDetector(
            LOCATOR / f,
            classes=(0,),
            input_size=SIDE,
            threads=args.threads,
            score_threshold=threshold,
        )
        for name, f in FILES.items()
    }
    result: dict[str, Any] = {
        "speed": speed(nets, video_frames(args.frames), args.rounds),
        "recall": {s: recall(nets, args.data / s, limit) for s in SETS
                   if (args.data / s).is_dir()},
        "input_side": SIDE, "threads": args.threads, "score_threshold": threshold,
        "recipe": RECIPE, "files": FILES, "smoke": args.smoke,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds")},
        "definitions": {
            "ms_per_frame": "network + YOLO decoding in process, median over alternating "
                            "rounds, frames letterboxed beforehand",
            "recall": "labelled photos whose plate a box (IoU >= 0.3) covers / photos",
            "extra_boxes": "boxes covering no labelled plate (other plates, false finds)",
        },
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sp = result["speed"]
    print(f"ms/frame: float {sp['ms_per_frame']['float']:.1f}, int8 "
          f"{sp['ms_per_frame']['int8']:.1f} ({sp['int8_speedup']:.2f}x)")  # fmt: skip
    for s, r in result["recall"].items():
        print(f"{s}: found float {r['found']['float']}/{r['photos']}, "
              f"int8 {r['found']['int8']}/{r['photos']}")  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
