"""`alpr-train`: train OVR-ALPR's plate recogniser, reproducibly, on a CPU.

    alpr-train ocr --config config/train/plate_ocr.yaml            # the shipped recipe
    alpr-train ocr --config my.yaml --install                       # and serve the result
    alpr-train card runs/plate_ocr --config config/train/plate_ocr.yaml  # card of a run

``ocr`` runs in the runtime environment and does, in order:

1. validates the config (``training.config``) and every labelled crop (a missing or
   corrupt image, an empty label or a character outside the alphabet stops the run
   with the file and line named) before any time is spent;
2. writes the data manifest (set, file, split, sha256) and the resolved job;
3. trains in the cached torch environment (``ensemble.ops.yolo_export.ensure_env``, the same
   one the YOLO export uses; the runtime environment never imports torch):
   ``python -m training.train job.json`` writes ``plate_rec.onnx``;
4. evaluates that ONNX file through the serving code (``ensemble.engines.PlateCtcReader``
   on the crops as ``plate_ocr`` receives them) on every validation split, and writes the
   model card (``plate_rec.card.json`` / ``.md``) and ``report.md``.

``--install`` then runs ``alpr-models use plate_ocr`` on the result. Exit status: 0 done,
1 training failed, 2 bad config or data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.ops.provision import sha256_of

from .config import ConfigError, TrainConfig, job, load
from .data import DataError, Sample, load_dataset, read_image, split

CARD_NAME = "plate_rec.card"


def _log(msg: str) -> None:
    print(f"[alpr-train] {msg}", file=sys.stderr, flush=True)


def load_sets(cfg: TrainConfig) -> dict[str, list[Sample]]:
    """Every configured set, validated (DataError names the bad file)."""
    out = {}
    for s in cfg.data.sets:
        if not s.folder.is_dir():
            raise DataError(f"data set {s.name}: folder {s.folder} not found")
        out[s.name] = load_dataset(s.folder, cfg.alphabet, labels=s.labels, name=s.name)
    return out


def licence_of(folder: Path) -> str:
    """The ``Licence:`` line of a set's README, if it has one."""
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(errors="replace").splitlines():
            if line.lower().startswith(("licence:", "license:")):
                return line.split(":", 1)[1].strip()
    return "not stated (add a 'Licence:' line to the set's README.md)"


def write_manifest(sets: dict[str, list[Sample]], percent: int, path: Path) -> str:
    """CSV of every training/validation file (set, file, split, sha256; no labels) and
    its own sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "file", "split", "sha256"])
        for name, samples in sets.items():
            train, val = split(samples, percent)
            for part, rows in (("train", train), ("val", val)):
                for s in sorted(rows, key=lambda s: s.path.name):
                    w.writerow([name, s.path.name, part, sha256_of(s.path)])
    return sha256_of(path)


def trainer_path() -> Path:
    """A folder holding only the packages the trainer imports (``training`` and
    ``ensemble``), so the torch environment never sees the runtime site-packages."""
    here = Path(__file__).resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix="ovr-alpr-train-"))
    for pkg in (here, here.parent / "ensemble"):
        os.symlink(pkg, tmp / pkg.name)
    return tmp


def run_trainer(job_path: Path) -> None:
    from ensemble.ops.yolo_export import ExportError, ensure_env

    try:
        python = ensure_env()
    except ExportError as exc:
        raise RuntimeError(f"the torch training environment could not be built: {exc}") from None
    path = trainer_path()
    try:
        env = {**os.environ, "PYTHONPATH": str(path)}
        proc = subprocess.run([str(python), "-m", "training.train", str(job_path)], env=env)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}); see the output above")


def served_crop(image: np.ndarray) -> np.ndarray:
    """A plate image as ``plate_ocr`` receives it in ``PLATE_IMAGE`` (whole image rectified
    to the 48 x 320 recogniser crop)."""
    from ensemble.preprocess import rec_crop
    from ensemble.text_det import box_quads

    h, w = image.shape[:2]
    return rec_crop(image, box_quads([[0, 0, w, h]])[0])


def evaluate_onnx(onnx: Path, sets: dict[str, list[Sample]], percent: int) -> dict[str, Any]:
    """Exact-match rate of the served recogniser on each validation split, its misreads,
    and its time per plate (batch 1 and 8)."""
    from ensemble.engines import PlateCtcReader

    reader = PlateCtcReader(onnx, threads=2)
    figures: dict[str, Any] = {"exact": {}, "n": {}, "misreads": {}}
    all_crops = []
    for name, samples in sets.items():
        _, val = split(samples, percent)
        if not val:
            continue
        crops = np.stack([served_crop(read_image(s.path)) for s in val])
        all_crops.append(crops)
        reads = reader.read(crops)
        right = [r.text == s.text for r, s in zip(reads, val, strict=True)]
        figures["exact"][name] = round(float(np.mean(right)), 4)
        figures["n"][name] = len(val)
        figures["misreads"][name] = [
            {"file": s.path.name, "truth": s.text, "read": r.text}
            for r, s, ok in zip(reads, val, right, strict=True)
            if not ok
        ]
    if all_crops:
        for b, ms in ms_per_plate(reader, np.concatenate(all_crops)[:64]).items():
            figures[f"ms_per_plate_b{b}"] = ms
    return figures


def ms_per_plate(
    reader: Any, crops: np.ndarray, batches: Sequence[int] = (1, 8)
) -> dict[int, float]:
    """A recogniser's time per plate over ``crops`` at each batch size (after a warm-up)."""
    out = {}
    for b in batches:
        reader.read(crops[:b], batch=b)
        t = time.perf_counter()
        for i in range(0, len(crops), b):
            reader.read(crops[i : i + b], batch=b)
        out[b] = round(1000 * (time.perf_counter() - t) / len(crops), 3)
    return out


def write_card(
    out: Path,
    cfg: TrainConfig,
    config_path: Path,
    sets: dict[str, list[Sample]],
    manifest_sha: str,
    figures: dict[str, Any],
    command: str,
) -> Path:
    onnx = out / "plate_rec.onnx"
    log = (
        json.loads((out / "train_log.json").read_text())
        if (out / "train_log.json").is_file()
        else {}
    )
    data = []
    for s in cfg.data.sets:
        samples = sets.get(s.name, [])
        train, val = split(samples, cfg.data.val_percent)
        data.append(
            {
                "set": s.name,
                "folder": str(s.folder),
                "files": len(samples),
                "train": len(train),
                "val": len(val),
                "weight": s.weight,
                "licence": licence_of(s.folder),
            }
        )
    card = {
        "model": "plate_ocr",
        "file": onnx.name,
        "sha256": sha256_of(onnx),
        "bytes": onnx.stat().st_size,
        "format": "ONNX opset 17; input x float32 [N, 3, H, W] RGB in [-1, 1]; output probs "
        "[N, T, 1 + |alphabet|] (CTC, blank first); metadata: alphabet, input size",
        "architecture": "compact CNN + CTC (training/model.py): 7 conv stages, "
        f"channels {list(cfg.model.channels)}, input {cfg.input.height}x{cfg.input.width}",
        "alphabet": cfg.alphabet,
        "seed": cfg.seed,
        "command": command,
        "recipe": json.loads(cfg.model_dump_json()),
        "config_file": str(config_path),
        "data": data,
        "synthetic": {
            **cfg.data.synthetic.model_dump(),
            "renderer": "training/synth.py (Pillow, Matplotlib's DejaVu/STIX/CM "
            "fonts, OpenCV Hershey); licence: generated by this project",
        },
        "manifest": {"file": "plate_rec.manifest.csv", "sha256": manifest_sha},
        "validation_exact": figures.get("exact", {}),
        "validation_n": figures.get("n", {}),
        "validation_synthetic_during_training": (log.get("val") or [{}])[-1].get("synthetic"),
        "ms_per_plate_b1": figures.get("ms_per_plate_b1"),
        "ms_per_plate_b8": figures.get("ms_per_plate_b8"),
        "training": {
            k: log.get(k)
            for k in ("steps_done", "stopped_early", "train_s", "ms_per_sample", "render_s")
        },
        "license": "AGPL-3.0: the weights are trained on AGPL-3.0 data "
        "(openalpr benchmarks / train-detector crops); the code is Apache-2.0",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    path = out / f"{CARD_NAME}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    (out / f"{CARD_NAME}.md").write_text(card_markdown(card, log, figures))
    (out / "report.md").write_text(card_markdown(card, log, figures, misreads=True))
    return path


def card_markdown(
    card: dict[str, Any], log: dict[str, Any], figures: dict[str, Any], misreads: bool = False
) -> str:
    """The card as markdown; ``misreads`` adds the validation misreads with their labels
    (for the run's report only: the card ships, and the labels are the data set's)."""
    cols = ("set", "files", "train", "val", "weight", "licence")
    rows = "\n".join("| " + " | ".join(str(d[c]) for c in cols) + " |" for d in card["data"])
    val = "\n".join(
        f"| {k} | {card['validation_n'].get(k, '')} | {v:.3f} |"
        for k, v in card["validation_exact"].items()
    )
    curve = "\n".join(
        f"| {v['step']} | " + " | ".join(f"{k}={x}" for k, x in v.items() if k != "step") + " |"
        for v in log.get("val", [])
    )
    miss = []
    for name, items in figures.get("misreads", {}).items() if misreads else ():
        for m in items[:40]:
            miss.append(f"| {name} | {m['truth']} | {m['read']} |")
    t = card["training"]
    return f"""# Model card: plate_ocr (`{card["file"]}`)

OVR-ALPR's plate recogniser, trained by this project. sha256 `{card["sha256"]}`
({card["bytes"]} bytes). {card["format"]}.

- **Architecture:** {card["architecture"]}.
- **Alphabet:** `{card["alphabet"]}`. **Seed:** {card["seed"]}.
- **Command:** `{card["command"]}` (recipe: `{card["config_file"]}`, copied in full in
  the JSON card). Training: {t.get("steps_done")} steps in {t.get("train_s")} s
  ({t.get("ms_per_sample")} ms per sample, 2 CPU threads; stopped early:
  {t.get("stopped_early")}); rendering the synthetic plates {t.get("render_s")} s.
- **Licence:** {card["license"]}.

## Data

| set | files | train | val | weight | licence |
|---|---|---|---|---|---|
{rows}

Synthetic plates: {card["synthetic"]["count"]} rendered once per run (weight
{card["synthetic"]["weight"]}), {card["synthetic"]["renderer"]}. The validation split is
fixed by the sha1 of the plate text (`training/data.py`). Manifest: `{card["manifest"]["file"]}`
(set, file, split, sha256; sha256 `{card["manifest"]["sha256"]}`). The evaluation sets
`openalpr-eu` and `openalpr-us-dev` are never used for training.

## Validation (exact plate match, served path: the crop as `plate_ocr` receives it)

| set | plates | exact |
|---|---|---|
{val}

Recogniser alone, onnxruntime, 2 threads: {card["ms_per_plate_b1"]} ms per plate at
batch 1, {card["ms_per_plate_b8"]} ms at batch 8.

## During training (greedy decoding in torch, same validation splits)

| step | exact per set |
|---|---|
{curve}
""" + (
        "\n## Validation misreads (first 40 per set)\n\n| set | truth | read |\n|---|---|---|\n"
        + "\n".join(miss)
        + "\n"
        if misreads
        else ""
    )


def _command(argv: Sequence[str]) -> str:
    return "alpr-train " + " ".join(argv)


def cmd_ocr(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = load(args.config)
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if overrides:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=overrides)})
    if args.synthetic is not None:
        syn = cfg.data.synthetic.model_copy(
            update={
                "count": args.synthetic,
                "val_count": min(cfg.data.synthetic.val_count, args.synthetic),
            }
        )
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"synthetic": syn})})
    if cfg.init_from and not cfg.init_from.is_file():
        raise ConfigError(f"init_from: {cfg.init_from} not found")
    out = args.out or cfg.output
    _log("validating the data ...")
    sets = load_sets(cfg)
    for name, samples in sets.items():
        train, val = split(samples, cfg.data.val_percent)
        _log(f"{name}: {len(samples)} crops ({len(train)} train, {len(val)} val)")
    out.mkdir(parents=True, exist_ok=True)
    manifest_sha = write_manifest(sets, cfg.data.val_percent, out / "plate_rec.manifest.csv")
    job_path = out / "job.json"
    job_path.write_text(json.dumps(job(cfg, out), indent=1) + "\n")
    _log(f"training -> {out} (torch environment)")
    run_trainer(job_path)
    return finish(out, cfg, args.config, sets, manifest_sha, _command(argv), args.install)


def finish(
    out: Path,
    cfg: TrainConfig,
    config_path: Path,
    sets: dict[str, list[Sample]],
    manifest_sha: str,
    command: str,
    install: bool,
) -> int:
    onnx = out / "plate_rec.onnx"
    _log("evaluating the exported model through the serving code ...")
    figures = evaluate_onnx(onnx, sets, cfg.data.val_percent)
    card = write_card(out, cfg, config_path, sets, manifest_sha, figures, command)
    _log(f"validation exact: {figures['exact']}; card: {card}")
    if install:
        from ensemble.ops.provision import use

        use("plate_ocr", onnx)
    return 0


def cmd_card(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = load(args.config)
    sets = load_sets(cfg)
    out: Path = args.run
    if not (out / "plate_rec.onnx").is_file():
        raise DataError(f"{out}: no plate_rec.onnx (run `alpr-train ocr` first)")
    manifest_sha = write_manifest(sets, cfg.data.val_percent, out / "plate_rec.manifest.csv")
    command = args.command or _command(["ocr", "--config", str(args.config)])
    return finish(out, cfg, args.config, sets, manifest_sha, command, args.install)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="alpr-train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("ocr", help="train the plate recogniser")
    o.add_argument("--config", type=Path, default=Path("config/train/plate_ocr.yaml"))
    o.add_argument("--out", type=Path, help="output folder (default: the config's output)")
    o.add_argument("--steps", type=int, help="override train.steps (smoke runs)")
    o.add_argument("--synthetic", type=int, help="override data.synthetic.count")
    o.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    o.add_argument("--install", action="store_true", help="alpr-models use plate_ocr the result")
    c = sub.add_parser("card", help="evaluate a finished run and write its model card")
    c.add_argument("run", type=Path)
    c.add_argument("--config", type=Path, default=Path("config/train/plate_ocr.yaml"))
    c.add_argument("--command", help="the command that trained the run (for the card)")
    c.add_argument("--install", action="store_true")
    args = p.parse_args(argv)
    try:
        return cmd_ocr(args, argv) if args.cmd == "ocr" else cmd_card(args, argv)
    except (ConfigError, DataError) as exc:
        _log(f"error: {exc}")
        return 2
    except RuntimeError as exc:
        _log(f"error: {exc}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
