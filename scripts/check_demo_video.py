#!/usr/bin/env python
"""Diagnostic: can the real PP-OCR detector + recogniser read the demo video's plates?

For each ground-truth plate, samples frames spread over the middle of the span in which the
whole plate is inside the frame, runs the plate proposer (DB text detector) on the full
frame, keeps the proposal overlapping the truth box best, and reads it.  Also reads a crop
of the truth box itself ("oracle box"), which separates detection misses from misreads.
Prints per-plate read rates; exits 0 regardless (this is a report, not a test).

    python scripts/check_demo_video.py [VIDEO [TRUTH]] [--samples 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alpr_common.geometry import iou  # noqa: E402
from edge_client.tools.demo_video import generate  # noqa: E402
from ensemble import text_det  # noqa: E402
from ensemble.engines import PlateProposer, PlateReader, crops_for  # noqa: E402

MODELS = REPO / "model_repository"


def read_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames: dict[int, np.ndarray] = {}
    i = 0
    while wanted - frames.keys():
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            frames[i] = frame
        i += 1
    cap.release()
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", type=Path, help="default: generate the demo video")
    ap.add_argument("truth", nargs="?", type=Path, help="default: <video stem>.truth.json")
    ap.add_argument("--samples", type=int, default=8, help="frames sampled per plate")
    ap.add_argument("--margin", type=float, default=0.15, help="fraction skipped at each end")
    ap.add_argument("--seed", type=int, default=0, help="seed when generating")
    args = ap.parse_args()
    video = args.video
    if video is None:
        t0 = time.perf_counter()
        video, truth_path = generate(Path(tempfile.mkdtemp(prefix="demo_video_")), seed=args.seed)
        print(f"generated {video} in {time.perf_counter() - t0:.1f}s")
    else:
        truth_path = args.truth or video.with_name(f"{video.stem}.truth.json")
    truth = json.loads(truth_path.read_text())
    proposer = PlateProposer(MODELS / "plate_detector/1/ppocr_det.onnx")
    reader = PlateReader(MODELS / "plate_ocr/1/ppocr_rec.onnx")

    plan: dict[int, list[int]] = {}
    for p in truth["plates"]:
        a, b = p["inside"] or (p["first_frame"], p["last_frame"])
        margin = (b - a) * args.margin
        plan[id(p)] = sorted({round(x) for x in np.linspace(a + margin, b - margin, args.samples)})
    frames = read_frames(video, {f for fs in plan.values() for f in fs})

    total_det = total_ok = total_oracle = total_n = 0
    for p in truth["plates"]:
        found = exact = oracle = 0
        misreads: list[str] = []
        for f in plan[id(p)]:
            img, box = frames[f], p["boxes"][str(f)]
            props = proposer.propose_many([img])[0]
            quads = props.quads
            boxes = np.concatenate([quads.min(1), quads.max(1)], 1) if len(quads) else []
            best = max(range(len(boxes)), key=lambda i: iou(boxes[i], box), default=None)
            text = "-"
            if best is not None and iou(boxes[best], box) > 0.3:
                crops, _ = crops_for(img, quads[best : best + 1], props.line_quads()[best:][:1])
                if len(crops):
                    found += 1
                    text = reader.read(crops)[0].text
                    exact += text == p["plate"]
            crops, _ = crops_for(img, text_det.box_quads([box]))
            otext = reader.read(crops)[0].text
            oracle += otext == p["plate"]
            if p["plate"] not in (text, otext) or text != otext:
                misreads.append(f"{f}:{text}/{otext}")
        n = len(plan[id(p)])
        h = np.median([b[3] - b[1] for b in p["boxes"].values()])
        print(
            f"{p['plate']:8s} {p['style']:9s} {p['direction']:11s} h~{h:3.0f}px  detected "
            f"{found}/{n}  exact {exact}/{n}  oracle-box exact {oracle}/{n}"
            + (f"  misses (frame:det/oracle) {' '.join(misreads)}" if misreads else "")
        )
        total_det, total_ok, total_oracle = (
            total_det + found,
            total_ok + exact,
            total_oracle + oracle,
        )
        total_n += n
    print(
        f"overall: detected {total_det}/{total_n}, exact {total_ok}/{total_n}, "
        f"oracle-box exact {total_oracle}/{total_n}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
