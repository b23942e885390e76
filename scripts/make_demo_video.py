#!/usr/bin/env python
"""Generate the synthetic plate-camera demo video and its ground truth.

    python scripts/make_demo_video.py --out runs/demo_video
    python scripts/make_demo_video.py --size 640x360 --fps 10 --plates "AB12CDE:uk,7ABC123:us"

Writes <out>/<name>.mp4 and <out>/<name>.truth.json (schema: alpr_common/demo_video.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_client.tools.demo_video import generate, parse_plates  # noqa: E402


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def plates(text: str) -> list[tuple[str, str]]:
    try:
        return parse_plates(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "demo_video", help="directory")
    ap.add_argument("--name", default="demo", help="file stem (default: demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--size", type=size, default=(1280, 720), help="WxH (default 1280x720)")
    ap.add_argument(
        "--plates",
        type=plates,
        default=None,
        help='TEXT:REGION list, e.g. "AB12CDE:uk,AB-123-CD:eu,7ABC123:us,ABC1D23:br"; '
        "regions uk eu us br or styles uk_front uk_rear fr nl us br_old mercosur",
    )
    ap.add_argument("--font", choices=["auto", "hershey", "ttf"], default="auto")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    video, truth = generate(
        args.out, seed=args.seed, width=args.size[0], height=args.size[1], fps=args.fps,
        plates=args.plates, name=args.name, font=args.font,
    )  # fmt: skip
    doc = json.loads(truth.read_text())
    took = time.perf_counter() - t0
    print(f"{video} ({video.stat().st_size / 1e6:.1f} MB, {doc['frames']} frames, "
          f"{doc['frames'] / doc['fps']:.1f} s, font {doc['font']}) in {took:.1f}s")  # fmt: skip
    print(f"{truth}")
    for p in doc["plates"]:
        print(f"  {p['plate']:9s} {p['region']:3s} {p['style']:9s} {p['direction']:11s} "
              f"frames {p['first_frame']}-{p['last_frame']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
