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

Smoke run (a few photos, a server that is already running, on its configured engine:
``auto`` is YOLO when provisioned, so only the ``yolo_*`` variants)::

    python scripts/bench_engine_accuracy.py ../shared/data/openalpr-eu --limit 4 \
        --triton-url localhost:8001 --variants yolo_cascade yolo_full --out /tmp/acc.json
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
SERVER_ENGINE = "yolo"  # what a running server's `auto` engine is with the YOLO model


def server_args(extra: list[str], triton_url: str | None) -> list[str]:
    """A variant's server options: a fresh server with the variant's engine, or
    (``triton_url``) the running server, whose engine the variant cannot set."""
    if triton_url is None:
        return ["--start-server", *extra]
    return ["--url", triton_url, *[a for a in extra if a.endswith("cascade")]]


def evaluate_command(
    folder: Path, extra: list[str], regions: list[str], work: Path,
    triton_url: str | None = None, limit: int | None = None,
) -> list[str]:  # fmt: skip
    """The ``alpr-evaluate photos`` command of one variant."""
    return [
        str(Path(sys.executable).parent / "alpr-evaluate"), "photos", str(folder),
        "--quiet", "--out", str(work), "--summary", str(work / "summary.json"),
        "--regions", *regions, *server_args(extra, triton_url),
        *(["--limit", str(limit)] if limit else []),
    ]  # fmt: skip


def run(cmd: list[str], work: Path) -> dict[str, Any]:
    summary = work / "summary.json"
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
    ap.add_argument("--limit", type=int, help="only the first N photos (default: all)")
    ap.add_argument(
        "--triton-url",
        help="gRPC host:port of a running server on its configured engine (default: a fresh "
        "server per run); only the yolo_* variants then",
    )
    args = ap.parse_args(argv)
    if DEFAULT not in args.variants:
        ap.error(f"--variants must include {DEFAULT} (the headline)")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be at least 1, got {args.limit}")
    other = [v for v in args.variants if VARIANTS[v][1] != SERVER_ENGINE]
    if args.triton_url and other:
        ap.error(f"--triton-url runs the server's own engine ({SERVER_ENGINE}): drop {other}")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in args.variants:
                print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                work = Path(tmp) / f"{name}-{r}"
                cmd = evaluate_command(
                    args.folder, VARIANTS[name], args.regions, work, args.triton_url, args.limit
                )
                runs[name].append(run(cmd, work))
    variants: dict[str, dict[str, Any]] = {}
    for name, summaries in runs.items():
        ms = [s["ms_per_image"] for s in summaries]
        variants[name] = {
            **summaries[0],
            "ms_per_image": statistics.median(ms),
            "ms_per_image_runs": ms,
            "command": "alpr-evaluate photos FOLDER "
            + " ".join(server_args(VARIANTS[name], args.triton_url)),
        }
    head = variants[DEFAULT]
    result = {
        **{k: v for k, v in head.items() if k != "command"},
        "variant": DEFAULT,
        "command": f"python scripts/bench_engine_accuracy.py {args.folder} --rounds {args.rounds}"
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --triton-url {args.triton_url}" if args.triton_url else ""),
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
