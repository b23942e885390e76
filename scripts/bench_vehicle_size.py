#!/usr/bin/env python
"""Vehicle detector input side, side by side in one run: 416 against 640 (``--sides``).

``vehicle_detector``'s letterbox side is its config's choice (``IMAGE`` dims; the network
takes any multiple of 32). For each side, on one clip of real photographs
(``edge_client.tools.photo_clip``, openalpr-eu: a vehicle approaching a gate camera):

1. ``edge``: a tritonserver serving a copy of the repository with ``vehicle_detector`` at
   that side (``ensemble.ops.variants.sized``; ``vehicle_detector`` + the ``alpr``
   ensemble) and one ``edge-client`` in ``vehicles`` mode on the clip: plate accuracy per
   track (the reads of the vehicles it tracked) and processed fps;
2. ``model``: the bare network in process (onnxruntime's default threads, the same file)
   on clip frames letterboxed beforehand (``--model-frames`` of them, evenly spread):
   ms per frame, the photo frames in which it finds a vehicle and the empty frames in
   which it finds one;
3. ``photos``: the network alone on the labelled photos themselves (``--detector-photos``
   of them, default all, each letterboxed whole): in how many it finds a vehicle around
   the labelled plate (the detector's own accuracy, free of tracking and OCR);
4. ``agreement``: on the timed clip frames, how the smaller side's vehicle boxes match
   the larger side's (IoU).

Writes ``bench/results/vehicle_size.json``. ``--smoke`` is the test suite's run (2 photos,
short clip; correctness only, never time). ``--redis-url`` reuses a running Redis;
``--triton-url SIDE=GRPC_URL`` (once per side) reuses a running server for that side instead
of starting one (the test suite passes its own servers at 640 and 416): it must serve
``vehicle_detector`` at that side and the models ``vehicles`` mode calls, and the run still
checks the side the server declares.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from bench_edge import PHOTOS, plate_accuracy, run_cameras  # noqa: E402
from demo import start_redis  # noqa: E402

from alpr_common.demo_video import read_frames  # noqa: E402
from alpr_common.geometry import iou  # noqa: E402
from alpr_common.plate_text import normalize  # noqa: E402
from edge_client.tools.evaluate import load_labels  # noqa: E402
from edge_client.tools.photo_clip import photo_clip  # noqa: E402
from edge_client.triton_client import AlprClient  # noqa: E402
from ensemble.contracts import ALPR, PLATE_DETECTOR, PLATE_OCR, VEHICLE_DETECTOR  # noqa: E402
from ensemble.engines import VehicleDetector  # noqa: E402
from ensemble.ops.server_process import start_triton  # noqa: E402
from ensemble.ops.variants import image_side, sized  # noqa: E402
from ensemble.preprocess import letterbox  # noqa: E402

MODELS = (VEHICLE_DETECTOR, ALPR, PLATE_DETECTOR, PLATE_OCR)  # what vehicles mode calls
SOURCE = REPO / "model_repository"


def vehicles_camera(work: Path, clip: Path, triton_url: str, redis_url: str) -> Path:
    """One ``vehicles``-mode camera (``cam0``) on ``clip``: config/edge.yaml's gate camera
    thresholds, the whole frame as zone, every frame detected, a lost track kept 10
    frames (shorter than the clip's gap, so two photos never make one track)."""
    work.mkdir(parents=True, exist_ok=True)
    cam = {
        "source": str(clip),
        "mode": "vehicles",
        "regions": ["eu", "uk"],
        "thresholds": {"detection": 0.35, "min_box_px": 64, "stable_frames": 3,
                       "read_confidence": 0.9, "max_retries": 2},
        "tracking": {"lost_frames": 10},
        "zone": {"polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "line": [[0, 0.5], [1, 0.5]],
                 "entry": "down", "idle_every": 1, "crop_detection": False},
        "vehicle_colour": False,
        "sinks": [{"type": "jsonl", "path": str(work / "events-cam0.jsonl")}],
    }  # fmt: skip
    cfg = {
        "triton": {"urls": [triton_url]}, "redis": {"url": redis_url},
        "output_dir": str(work / "out"), "cameras": {"cam0": cam},
    }  # fmt: skip
    path = work / "edge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def edge_run(
    work: Path, side: int, clip: Path, truth: list[str], redis_url: str, url: str | None = None
) -> dict:
    """A server with ``vehicle_detector`` at ``side`` (the running one at ``url``, else one
    started on a sized copy of the repository) and edge-client on the clip."""
    server = None
    if url is None:
        repo = sized(work / f"repo-{side}", {VEHICLE_DETECTOR: side}, SOURCE, MODELS)
        server = start_triton(repo, work / f"triton-{side}.log")
        url = server.grpc_url
    try:
        client = AlprClient(url)
        try:
            served = client.input_side(VEHICLE_DETECTOR)
        finally:
            client.close()
        if served != side:
            raise RuntimeError(f"the server's vehicle_detector side is {served}, not {side}")
        config = vehicles_camera(work / f"edge-{side}", clip, url, redis_url)
        (s,) = run_cameras(config, 1)
    finally:
        if server is not None:
            server.stop()
    return {
        "input_side": served, "frames": s["frames"], "fps": s["fps"], "tracks": s["tracks"],
        "ocr_calls": s["reads"], "events": len(s["plates"]), "plates": s["plates"],
        **plate_accuracy(s["plates"], truth),
    }  # fmt: skip


def sample(count: int, total: int) -> list[int]:
    return sorted({round(i * (total - 1) / max(1, count - 1)) for i in range(min(count, total))})


def detector(side: int) -> VehicleDetector:
    det = VehicleDetector(SOURCE / VEHICLE_DETECTOR / "1" / "model.onnx", input_size=side)
    if det.input_size != side:
        raise RuntimeError(f"the network takes {det.input_size}, not {side}: re-run alpr-models")
    return det


def detect(det: VehicleDetector, image_bgr: np.ndarray) -> np.ndarray:
    """Vehicle boxes (xyxy, image pixels) in one image letterboxed as the client does."""
    side = det.input_size
    boxed = np.ascontiguousarray(letterbox(image_bgr, side)[0][..., ::-1])[None]
    boxes: np.ndarray = det.detect(boxed, [(image_bgr.shape[0], image_bgr.shape[1])])[0][0]
    return boxes


def model_run(
    video_frames: list[np.ndarray], picks: list[int], side: int
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The network alone at ``side`` on the picked frames, letterboxed beforehand; its
    figures and each frame's vehicle boxes in frame pixels."""
    det = detector(side)
    boxed = [
        np.ascontiguousarray(letterbox(video_frames[i], side)[0][..., ::-1])[None] for i in picks
    ]
    sizes = [(int(video_frames[i].shape[0]), int(video_frames[i].shape[1])) for i in picks]
    det.detect(boxed[0], [sizes[0]])  # warm-up
    found = []
    t0 = time.perf_counter()
    for b, hw in zip(boxed, sizes, strict=True):
        found.append(det.detect(b, [hw])[0][0])
    dt = time.perf_counter() - t0
    return {"frames": len(picks), "ms_per_frame": 1000 * dt / len(picks),
            "fps": len(picks) / dt, "input_side": side}, found  # fmt: skip


def around(box: np.ndarray, plate: tuple[float, float, float, float], slack: float) -> bool:
    return bool(box[0] - slack <= plate[0] and box[1] - slack <= plate[1]
                and plate[2] <= box[2] + slack and plate[3] <= box[3] + slack)  # fmt: skip


def photo_run(folder: Path, limit: int, side: int) -> dict[str, Any]:
    """The network alone on the first ``limit`` labelled photos (0: all): those where a vehicle
    box holds the labelled plate (2 % of the photo's long side of slack)."""
    det = detector(side)
    found: list[str] = []
    missed: list[str] = []
    for lab in load_labels(folder)[: limit or None]:
        image = cv2.imread(str(folder / lab.image))
        if image is None:
            continue
        plate = (lab.box.x1, lab.box.y1, lab.box.x2, lab.box.y2)
        slack = 0.02 * max(image.shape[:2])
        hit = any(around(b, plate, slack) for b in detect(det, image))
        (found if hit else missed).append(lab.image)
    n = len(found) + len(missed)
    return {"photos": n, "plate_vehicle_found": len(found), "recall": len(found) / max(1, n),
            "missed": missed}  # fmt: skip


def presence(found: list[np.ndarray], picks: list[int], photo_frames: set[int]) -> dict:
    on_photo = [len(f) > 0 for f, i in zip(found, picks, strict=True) if i in photo_frames]
    on_empty = [len(f) > 0 for f, i in zip(found, picks, strict=True) if i not in photo_frames]
    return {
        "photo_frames": len(on_photo), "photo_frames_with_vehicle": sum(on_photo),
        "empty_frames": len(on_empty), "empty_frames_with_vehicle": sum(on_empty),
        "vehicles_found": int(sum(len(f) for f in found)),
    }  # fmt: skip


def agreement(small: list[np.ndarray], large: list[np.ndarray]) -> dict[str, Any]:
    """Each of the larger side's boxes against its best match among the smaller side's."""
    best = [
        max((iou(tuple(map(float, b)), tuple(map(float, a))) for a in s), default=0.0)
        for s, lg in zip(small, large, strict=True)
        for b in lg
    ]
    return {
        "boxes": len(best),
        "matched_iou_0_5": sum(b >= 0.5 for b in best),
        "mean_best_iou": float(np.mean(best)) if best else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vehicle_size.json")
    ap.add_argument("--sides", default="640,416", help="letterbox sides to compare")
    ap.add_argument("--photos", type=Path, default=PHOTOS, help="labelled photos for the clip")
    ap.add_argument("--photo-limit", type=int, default=12, help="photos in the clip")
    ap.add_argument("--frames-per-photo", type=int, default=18)
    ap.add_argument("--model-frames", type=int, default=60, help="frames timed in process")
    ap.add_argument(
        "--detector-photos",
        type=int,
        default=0,
        help="photos for the detector's own recall (0: all labelled photos)",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny run (tests): 2 photos")
    ap.add_argument("--redis-url", help="use this running Redis")
    ap.add_argument(
        "--triton-url", action="append", default=[], metavar="SIDE=GRPC_URL",
        help="use this running server for that side (vehicle_detector at SIDE, the models "
             "vehicles mode calls); the other sides get a server started",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.photo_limit, args.frames_per_photo, args.model_frames = 2, 10, 8
        args.detector_photos = 3
    sides = [int(s) for s in args.sides.split(",") if s.strip()]
    if len(sides) < 2 or any(s % 32 or not 32 <= s <= 1280 for s in sides):
        ap.error(f"--sides: two or more multiples of 32 in 32..1280, got {args.sides}")
    urls: dict[int, str] = {}
    for item in args.triton_url:
        side_text, _, url = item.partition("=")
        if not side_text.strip().isdigit() or int(side_text) not in sides or not url:
            ap.error(f"--triton-url SIDE=GRPC_URL with SIDE one of {sides}, got {item!r}")
        urls[int(side_text)] = url
    if not args.photos.is_dir():
        print(f"bench_vehicle_size: no photos at {args.photos}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-vehicle-size-"))
    video, truth_path = photo_clip(args.photos, work / "clip", limit=args.photo_limit,
                                   frames_per_photo=args.frames_per_photo)  # fmt: skip
    clip_doc = json.loads(truth_path.read_text())
    truth = [normalize(p["plate"]) for p in clip_doc["plates"]]
    photo_frames = {
        i for p in clip_doc["plates"] for i in range(p["first_frame"], p["last_frame"] + 1)
    }
    redis_proc = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        redis_proc, redis_url = start_redis(work)
    try:
        video_frames = read_frames(video)
        picks = sample(args.model_frames, len(video_frames))
        model, edge, found, photos = {}, {}, {}, {}
        for side in sides:
            print(f"side {side}: in process ...", file=sys.stderr)
            model[side], found[side] = model_run(video_frames, picks, side)
            model[side].update(presence(found[side], picks, photo_frames))
            photos[side] = photo_run(args.photos, args.detector_photos, side)
            print(f"side {side}: server + edge-client (vehicles mode) ...", file=sys.stderr)
            edge[side] = edge_run(work, side, video, truth, redis_url, urls.get(side))
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    largest = max(sides)
    by_side = {
        str(s): {
            "accuracy_per_track": edge[s]["accuracy"], "correct": edge[s]["correct"],
            "wrong": edge[s]["wrong"], "missed": edge[s]["missed"], "fps": edge[s]["fps"],
            "model_ms_per_frame": model[s]["ms_per_frame"],
            "detector_recall": photos[s]["recall"],
            "edge": edge[s], "model": model[s], "photos": photos[s],
        }
        for s in sides
    }  # fmt: skip
    accuracies = {edge[s]["accuracy"] for s in sides}
    result = {
        "sides": sides,
        "configured_side": image_side((SOURCE / VEHICLE_DETECTOR / "config.pbtxt").read_text()),
        "accuracy_equal": len(accuracies) == 1,
        "by_side": by_side,
        "agreement": {
            f"{s}_vs_{largest}": agreement(found[s], found[largest]) for s in sides if s != largest
        },
        "clip": {"photos": len(truth), "frames": clip_doc["frames"], "plates": truth,
                 "frames_per_photo": args.frames_per_photo, "size": [1280, 720],
                 "model_frames": len(picks), "detector_photos": photos[largest]["photos"]},
        "smoke": bool(args.smoke),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds")},
        "definitions": {
            "accuracy_per_track": "edge-client, vehicles mode, on the photo clip: distinct "
                                  "plates reported correctly / max(photos, distinct plates "
                                  "reported) (scripts/bench_edge.py's scoring)",
            "fps": "frames edge-client handled per second of its loop (decode, letterbox, "
                   "vehicle_detector over gRPC, tracking, reads through alpr), every frame "
                   "detected (idle_every 1)",
            "model_ms_per_frame": "the vehicle network alone in process (onnxruntime default "
                                  "threads, YOLO decoding + NMS), one frame per run, frames "
                                  "letterboxed beforehand; model_frames of the clip, evenly "
                                  "spread",
            "detector_recall": "the network alone on whole labelled photos (openalpr-eu, "
                               "the first detector_photos by name): the fraction where a "
                               "vehicle box holds the labelled plate",
            "agreement": "the largest side's boxes on those frames, each against its best "
                         "IoU among the smaller side's",
            "note": "a short run on a shared 2-core machine: the clip has "
                    f"{len(truth)} photos, the in-process timing {len(picks)} frames; "
                    "fps figures are noisy (other work shares the cores), compare the "
                    "sides within this run only",
        },
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in sides:
        r = by_side[str(s)]
        print(f"{s}: accuracy {r['accuracy_per_track']:.3f} ({r['correct']}/{len(truth)}), "
              f"detector recall {r['detector_recall']:.3f}, edge {r['fps']:.2f} fps, "
              f"model {r['model_ms_per_frame']:.1f} ms/frame")  # fmt: skip
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
