#!/usr/bin/env python
"""In-process cost of the plate detector's engines per image, side by side in one run.

The code ``plate_detector`` runs (``ensemble.engines``), without the server: the YOLO
plate model refined by PP-OCR text lines (``yolo``, the default) against the PP-OCR text
detector alone (``ppocr``), alternating image by image so that both see the same machine
load. Two kinds of input:

* ``frames``: 1280x720 frames of the demo video (what a plate camera sends whole);
* ``photos``: the labelled photographs of ``../shared/data/openalpr-eu`` when present
  (vehicle-crop-sized scenes).

Writes ``bench/results/plate_engines.json``: per input kind and engine the median and
p95 ms per image and candidates per image, and ``ms_ratio_yolo_over_ppocr``.

    python scripts/bench_plate_engines.py --frames 60
    python scripts/bench_plate_engines.py --frames 4 --photos 3 --out /tmp/pe.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_client.tools.demo_video import generate  # noqa: E402
from ensemble.engines import REFINE_PARAMS, PlateProposer, Proposer, YoloPlateProposer  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "openalpr-eu"


def video_frames(n: int) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = generate(Path(tmp))
        cap = cv2.VideoCapture(str(path))
        frames = []
        ok, frame = cap.read()
        while ok:
            frames.append(frame)
            ok, frame = cap.read()
        cap.release()
    if not frames:
        raise SystemExit("the demo video could not be decoded")
    step = max(1, len(frames) // n)
    return frames[::step][:n]


def measure(engines: dict[str, Proposer], images: list[np.ndarray]) -> dict[str, dict]:
    for engine in engines.values():  # warm-up (session initialisation, first allocation)
        engine.propose_many(images[:1])
    times: dict[str, list[float]] = {name: [] for name in engines}
    found: dict[str, int] = {name: 0 for name in engines}
    for image in images:
        for name, engine in engines.items():
            t0 = time.perf_counter()
            found[name] += len(engine.propose_many([image])[0])
            times[name].append(1000 * (time.perf_counter() - t0))
    return {
        name: {
            "images": len(images),
            "ms_median": float(np.median(ms)),
            "ms_p95": float(np.percentile(ms, 95)),
            "candidates_per_image": found[name] / len(images),
        }
        for name, ms in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=60, help="demo video frames to time")
    ap.add_argument(
        "--photos", type=int, default=None, help="only the first N photos (default: all)"
    )
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/plate_engines.json")
    args = ap.parse_args(argv)
    if args.photos is not None and args.photos < 1:
        ap.error(f"--photos must be at least 1, got {args.photos}")
    vdir = REPO / "model_repository/plate_detector/1"
    det = vdir / "ppocr_det.onnx"
    engines: dict[str, Proposer] = {
        "yolo": YoloPlateProposer(
            vdir / "yolo_plate.onnx", threads=args.threads,
            refine=PlateProposer(det, threads=args.threads, params=REFINE_PARAMS),
        ),
        "ppocr": PlateProposer(det, threads=args.threads),
    }  # fmt: skip
    inputs = {"frames": video_frames(args.frames)}
    if PHOTOS.is_dir():
        paths = sorted(PHOTOS.glob("*.jpg"))[: args.photos]
        inputs["photos"] = [cv2.imread(str(p)) for p in paths]
    result: dict = {
        "command": f"python scripts/bench_plate_engines.py --frames {args.frames}"
        + (f" --photos {args.photos}" if args.photos is not None else ""),
        "machine": f"{os.cpu_count()} CPU cores, onnxruntime intra-op threads {args.threads}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for kind, images in inputs.items():
        print(f"{kind}: {len(images)} images", file=sys.stderr, flush=True)
        r = measure(engines, images)
        r["ms_ratio_yolo_over_ppocr"] = round(r["yolo"]["ms_median"] / r["ppocr"]["ms_median"], 3)
        result[kind] = r
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
