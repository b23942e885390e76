#!/usr/bin/env python
"""Accuracy and time per photograph of the plate-detector engines, side by side.

Runs ``alpr-evaluate photos FOLDER --start-server`` (a fresh tritonserver per run, the
edge client's path) for each variant, alternating over ``--rounds`` rounds, on one
machine back to back:

* ``yolo_cascade`` (the default): YOLO plate boxes refined into PP-OCR text lines; the
  whole photo is read only when no vehicle crop gave a sure plate;
* ``yolo_full``: the same engine, the whole photo always read too;
* ``ppocr_cascade`` / ``ppocr_full``: the PP-OCR text detector alone as the plate
  proposer (the fallback engine when the YOLO model is not provisioned).

Writes ``bench/results/accuracy-<folder name>.json``: the default variant's summary at
the top level (``exact``, ``detection_recall``, ``ms_per_image``...), every variant's
(median time over rounds), and time ratios against the default.

    python scripts/bench_engine_accuracy.py ../shared/data/openalpr-eu --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VARIANTS: dict[str, list[str]] = {
    "yolo_cascade": ["--plate-engine", "yolo", "--cascade"],
    "yolo_full": ["--plate-engine", "yolo", "--no-cascade"],
    "ppocr_cascade": ["--plate-engine", "ppocr", "--cascade"],
    "ppocr_full": ["--plate-engine", "ppocr", "--no-cascade"],
}
DEFAULT = "yolo_cascade"


def run(folder: Path, extra: list[str], regions: list[str], work: Path) -> dict[str, Any]:
    summary = work / "summary.json"
    cmd = [
        str(Path(sys.executable).parent / "alpr-evaluate"), "photos", str(folder),
        "--start-server", "--quiet", "--out", str(work), "--summary", str(summary),
        "--regions", *regions, *extra,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    out: dict[str, Any] = json.loads(summary.read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--regions", nargs="+", default=["eu", "uk"])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if DEFAULT not in args.variants:
        ap.error(f"--variants must include {DEFAULT} (the headline)")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in args.variants:
                print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                work = Path(tmp) / f"{name}-{r}"
                runs[name].append(run(args.folder, VARIANTS[name], args.regions, work))
    variants: dict[str, dict[str, Any]] = {}
    for name, summaries in runs.items():
        ms = [s["ms_per_image"] for s in summaries]
        variants[name] = {
            **summaries[0],
            "ms_per_image": statistics.median(ms),
            "ms_per_image_runs": ms,
            "command": "alpr-evaluate photos FOLDER --start-server " + " ".join(VARIANTS[name]),
        }
    head = variants[DEFAULT]
    result = {
        **{k: v for k, v in head.items() if k != "command"},
        "variant": DEFAULT,
        "command": f"python scripts/bench_engine_accuracy.py {args.folder} --rounds {args.rounds}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "variants": variants,
        "ms_ratio_vs_default": {
            n: round(v["ms_per_image"] / head["ms_per_image"], 3) for n, v in variants.items()
        },
    }
    out = args.out or REPO / "bench" / "results" / f"accuracy-{args.folder.resolve().name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({n: [v["exact"], v["ms_per_image"]] for n, v in variants.items()}))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
