#!/usr/bin/env python
"""Plate-reading accuracy and cost of the recognisers, every dev set side by side, one run.

Readers (``plate_ocr``'s ``reader``): ``fused`` (the default: both recognisers, fused per
crop), ``ppocr`` (PP-OCRv6 rec, the previous default) and ``plate`` (OVR-ALPR's
plate-trained CTC model alone). For each reader, on one machine back to back:

* **photographs**, the whole pipeline as the edge client runs it (``alpr-evaluate photos
  --start-server --plate-reader R``, cascade): ``openalpr-us-dev`` with the ``us``
  formats, ``openalpr-eu`` with ``eu uk``; exact rate, O/0-I/1-equal rate, ms per photo;
* **crop validation splits** (``us-plate-crops``, ``br-plate-crops``, the split of the
  shipped model's card): each crop as ``plate_ocr`` receives it, read in-process by the
  same reader classes the server runs; exact rate of the raw read, and with the set's
  regional formats applied as the edge client does (``choose`` + ``correct``);
* **the recogniser alone**: ms per plate at batch 1 and 8 (onnxruntime, 2 threads).

Writes ``bench/results/accuracy.json``: the default reader's figures at the top level
(``us_dev_exact``, ``eu_exact``, ``us_crops_val_exact``, ``br_crops_val_exact``,
``rec_ms_per_plate_b1``, ``rec_ms_per_plate_b8``, ``ms_per_photo_eu``, ...), the previous
reader's under ``previous`` and the plate model's alone under ``plate``, with miss categories and
confusions per set. ``--limit N`` / ``--crops N`` make a smoke run (the test suite's).
``--triton-url`` reuses a running server for the default reader's photo runs (it must
serve ``fused``, i.e. run without ``OVR_ALPR_PLATE_READER``; the test suite passes its
session server); every other reader gets a fresh server as before.

    python scripts/bench_accuracy.py                # full run, ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_client.plates import PlateFormat, load_formats, select  # noqa: E402
from edge_client.plates.choose import choose  # noqa: E402
from edge_client.plates.formats import correct  # noqa: E402
from ensemble.contracts import Box, PlateRead  # noqa: E402
from ensemble.serving import build_reader  # noqa: E402
from training.cli import ms_per_plate, served_crop  # noqa: E402
from training.data import load_dataset, split  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PHOTO_SETS = {"us_dev": ("openalpr-us-dev", ["us"]), "eu": ("openalpr-eu", ["eu", "uk"])}
CROP_SETS = {"us_crops_val": "us-plate-crops", "br_crops_val": "br-plate-crops"}
READERS = {"fused": "default", "ppocr": "previous", "plate": "plate"}
DEFAULT = "fused"
CROP_REGIONS = {"us_crops_val": ["us"], "br_crops_val": ["br"]}


def photos(
    folder: Path, regions: list[str], reader: str, work: Path, limit: int | None,
    url: str | None = None,
) -> dict:  # fmt: skip
    """``alpr-evaluate photos`` with ``reader``: on a fresh server, or on the running one
    at ``url`` (which serves ``reader``)."""
    summary = work / "summary.json"
    server = ["--url", url] if url else ["--start-server", "--plate-reader", reader]
    cmd = [
        str(Path(sys.executable).parent / "alpr-evaluate"), "photos", str(folder),
        *server, "--quiet", "--out", str(work), "--summary", str(summary),
        "--regions", *regions, *(["--limit", str(limit)] if limit else []),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    out: dict[str, Any] = json.loads(summary.read_text())
    return out


def crop_split(name: str, val_percent: int, limit: int | None) -> tuple[np.ndarray, list[str]]:
    from ensemble.contracts import PLATE_ALPHABET

    _, val = split(load_dataset(SHARED / name, PLATE_ALPHABET), val_percent)
    val = val[:limit] if limit else val
    crops = np.stack([served_crop(cv2.imread(str(s.path))) for s in val])
    return crops, [s.text for s in val]


def with_formats(read: Any, formats: Sequence[PlateFormat]) -> str:
    """The edge client's text for one read: top-k rescoring and look-alike correction
    with the camera's regional formats."""
    plate = PlateRead(Box(0, 0, 1, 1), 1.0, read.text, read.confidence, read.char_confidences,
                      read.alternatives, read.alt_confidences)  # fmt: skip
    chosen = choose([plate], formats)
    if chosen is None:
        return str(read.text)
    return correct(chosen.text, formats, chosen.char_confidences)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readers", nargs="+", choices=list(READERS), default=list(READERS))
    ap.add_argument("--limit", type=int, help="photos per set (smoke runs)")
    ap.add_argument("--crops", type=int, help="validation crops per set (smoke runs)")
    ap.add_argument("--photo-sets", nargs="*", choices=list(PHOTO_SETS), default=list(PHOTO_SETS))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "accuracy.json")
    ap.add_argument(
        "--triton-url",
        help=f"a running server serving the default reader ({DEFAULT}) for its photo runs",
    )
    args = ap.parse_args(argv)
    if DEFAULT not in args.readers:
        ap.error(f"--readers must include {DEFAULT} (the headline)")
    card = json.loads((REPO / "weights/plate_ocr/plate_rec.card.json").read_text())
    val_percent = int(card["recipe"]["data"]["val_percent"])
    vdir = REPO / "model_repository" / "plate_ocr" / "1"
    figures: dict[str, dict[str, Any]] = {r: {"sets": {}} for r in args.readers}
    crops = {
        key: crop_split(name, val_percent, args.crops)
        for key, name in CROP_SETS.items() if (SHARED / name).is_dir()
    }  # fmt: skip
    every_format = load_formats()
    crop_formats = {key: select(every_format, regions) for key, regions in CROP_REGIONS.items()}
    for r in args.readers:
        os.environ["OVR_ALPR_PLATE_READER"] = r
        reader = build_reader(vdir, {}, threads=2)
        for key, (x, texts) in crops.items():
            reads = reader.read(x)
            figures[r][f"{key}_exact"] = round(
                float(np.mean([a.text == t for a, t in zip(reads, texts, strict=True)])), 4
            )
            fixed = [with_formats(a, crop_formats[key]) for a in reads]
            figures[r][f"{key}_exact_with_formats"] = round(
                float(np.mean([a == t for a, t in zip(fixed, texts, strict=True)])), 4
            )
        if crops:
            sample = np.concatenate([x for x, _ in crops.values()])[:64]
            figures[r].update(
                {f"rec_ms_per_plate_b{b}": ms for b, ms in ms_per_plate(reader, sample).items()}
            )
    os.environ.pop("OVR_ALPR_PLATE_READER", None)
    with tempfile.TemporaryDirectory() as tmp:
        for key, (name, regions) in PHOTO_SETS.items():
            if key not in args.photo_sets or not (SHARED / name).is_dir():
                continue
            for r in args.readers:
                print(f"{name}: {r}", file=sys.stderr, flush=True)
                url = args.triton_url if r == DEFAULT else None
                s = photos(SHARED / name, regions, r, Path(tmp) / f"{key}-{r}", args.limit, url)
                figures[r][f"{key}_exact"] = s["exact"]
                figures[r][f"{key}_exact_o0_i1_equal"] = s.get("exact_o0_i1_equal")
                figures[r][f"ms_per_photo_{key}"] = s["ms_per_image"]
                figures[r]["sets"][name] = {
                    k: s.get(k) for k in ("images", "exact", "exact_o0_i1_equal",
                                          "detection_recall", "ms_per_image", "categories",
                                          "top_confusions")
                }  # fmt: skip
    head = figures[DEFAULT]
    result: dict[str, Any] = {
        **head,
        "reader": DEFAULT,
        "command": "python scripts/bench_accuracy.py"
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --crops {args.crops}" if args.crops else "")
        + (
            ""
            if set(args.photo_sets) == set(PHOTO_SETS)
            else " --photo-sets " + " ".join(args.photo_sets)
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_sha256": card["sha256"],
    }
    for r in args.readers:
        if r != DEFAULT:
            result[READERS[r]] = figures[r]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("us_dev_exact", "eu_exact", "us_crops_val_exact", "br_crops_val_exact",
            "rec_ms_per_plate_b8", "ms_per_photo_eu")  # fmt: skip
    for r in args.readers:
        print(r, {k: figures[r].get(k) for k in keys})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
