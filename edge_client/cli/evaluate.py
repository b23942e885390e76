"""`alpr-evaluate`: the command-line side of :mod:`edge_client.tools.evaluate`.

``alpr-evaluate photos FOLDER [FOLDER ...]`` reads labelled photographs through the
server and writes, under ``--out``, ``results.json``, ``summary.md`` (one row per set),
``report.html`` and ``chart.png``; the summary JSON goes to stdout (and ``--summary``).
With one folder its top-level keys are that set's figures (``exact``,
``detection_recall``, ``ms_per_image``...); with several they are pooled over all photos,
and ``sets`` holds each folder's own. ``--compare A B`` runs the photos twice, with
``--plate-reader A`` then ``B`` (a fresh server each), and writes them side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
from tqdm import tqdm

from edge_client.plates.formats import PlateFormat, load_formats, select
from edge_client.tools.evaluate import (
    ImageResult,
    Label,
    compare_markdown,
    differences,
    evaluate_photo,
    load_labels,
    score_video,
    set_names,
    summarise,
    summarise_sets,
    summary_markdown,
    write_report,
)
from edge_client.triton_client import AlprClient, InferenceError
from ensemble.ops.checkout import CheckoutNotFoundError, checkout_root
from ensemble.params import ReaderName

PLATE_READERS: tuple[str, ...] = get_args(ReaderName)  # plate_ocr reader: values


@dataclass(frozen=True)
class PhotoSet:
    name: str
    folder: Path
    labels: list[Label]


class Unreachable(RuntimeError):
    """No Triton server answers at the URL."""


def server_env(plate_engine: str | None, plate_reader: str | None) -> dict[str, str] | None:
    """The variables the models read, for a server started for this run (None: none)."""
    env = {"OVR_ALPR_PLATE_ENGINE": plate_engine, "OVR_ALPR_PLATE_READER": plate_reader}
    return {k: v for k, v in env.items() if v} or None


def option_problem(args: argparse.Namespace) -> str | None:
    """Why the ``photos`` options do not go together (None when they do)."""
    needs_server = {"--plate-engine": args.plate_engine, "--plate-reader": args.plate_reader,
                    "--compare": args.compare}  # fmt: skip
    for flag, value in needs_server.items():
        if value and not args.start_server:
            return f"{flag} needs --start-server (it is set in the server process's environment)"
    if args.compare and args.plate_reader:
        return "--compare A B sets the plate reader of each run; drop --plate-reader"
    if args.compare and args.compare[0] == args.compare[1]:
        return f"--compare needs two different readers, got {args.compare[0]} twice"
    return None


def run_photos(
    args: argparse.Namespace,
    sets: Sequence[PhotoSet],
    formats: Sequence[PlateFormat],
    plate_reader: str | None,
    out: Path,
) -> tuple[list[ImageResult], dict[str, np.ndarray | None]]:
    """Every photo of ``sets`` through the server (started for the run with
    ``--start-server``); results, and the chosen read's crop keyed by ``set/image``."""
    server = None
    url = args.url
    if args.start_server:
        from ensemble.ops.server_process import start_triton

        env = server_env(args.plate_engine, plate_reader)
        repository = args.model_repository or checkout_root() / "model_repository"
        server = start_triton(repository, out / "tritonserver.log", env=env)
        url = server.grpc_url
    results: list[ImageResult] = []
    crops: dict[str, np.ndarray | None] = {}
    try:
        client = AlprClient(url)
        if not client.ready():
            raise Unreachable(f"Triton is not reachable at {url}")
        for s in sets:
            for label in tqdm(s.labels, desc=s.name, unit="img", disable=args.quiet):
                try:
                    res, crop = evaluate_photo(
                        client, s.folder, label, formats, args.cascade, s.name
                    )
                except (InferenceError, OSError) as exc:
                    print(f"alpr-evaluate: {s.name}/{label.image}: {exc}", file=sys.stderr)
                    continue
                results.append(res)
                crops[f"{s.name}/{res.image}"] = crop
    finally:
        if server:
            server.stop()
    return results, crops


def run_summary(
    args: argparse.Namespace, sets: Sequence[PhotoSet], results: Sequence[ImageResult],
    plate_reader: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The pooled figures at the top level (one set: that set's, as before), the run's
    settings, and ``sets``: each set's figures."""
    folders = [str(s.folder) for s in sets]
    return {
        **summarise(results), "regions": args.regions,
        **({"folder": folders[0]} if len(folders) == 1 else {}), "folders": folders,
        "cascade": args.cascade, "plate_engine": args.plate_engine or "config",
        "plate_reader": plate_reader or "config", "limit": args.limit,
        "sets": summarise_sets(results),
    }  # fmt: skip


def emit(args: argparse.Namespace, summary: Mapping[str, Any], table: str) -> None:
    """The summary JSON to stdout (and ``--summary``), the markdown tables to stderr."""
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(table, file=sys.stderr)


def photos(args: argparse.Namespace) -> int:
    sets = []
    for name, folder in zip(set_names(args.folders), args.folders, strict=True):
        labels = load_labels(folder)[: args.limit]
        if not labels:
            print(f"alpr-evaluate: no labelled images (NAME.txt) in {folder}", file=sys.stderr)
            return 2
        sets.append(PhotoSet(name, folder, labels))
    formats = select(load_formats(), args.regions)
    readers = tuple(args.compare) if args.compare else (args.plate_reader,)
    runs: dict[str, tuple[list[ImageResult], dict[str, Any]]] = {}
    for reader in readers:
        out = args.out / reader if args.compare else args.out
        try:
            results, crops = run_photos(args, sets, formats, reader, out)
        except (Unreachable, CheckoutNotFoundError) as exc:
            print(f"alpr-evaluate: {exc}", file=sys.stderr)
            return 3
        summary = run_summary(args, sets, results, reader)
        report = write_report(out, summary, results, crops)
        print(f"report: {report}", file=sys.stderr)
        runs[reader or "config"] = (results, summary)
    if not args.compare:
        ((_, summary),) = runs.values()
        emit(args, summary, summary_markdown(summary["sets"], summary))
        return 0
    a, b = args.compare
    names = (a, b)
    diffs = differences(runs[a][0], runs[b][0])
    compare: dict[str, Any] = {n: runs[n][1] for n in names}
    compare["differ"] = [d.as_json(names) for d in diffs]
    summary = {"compare": compare, "folders": [str(s.folder) for s in sets],
               "regions": args.regions, "cascade": args.cascade, "limit": args.limit}  # fmt: skip
    table = compare_markdown(names, runs[a][1]["sets"], runs[b][1]["sets"], diffs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(table)
    emit(args, summary, table)
    return 0


def video(args: argparse.Namespace) -> int:
    events = [json.loads(x) for x in args.events.read_text().splitlines() if x.strip()]
    truth = json.loads(args.truth.read_text())
    result = score_video(events, truth)
    print(json.dumps(result, indent=2))
    return 0


def positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alpr-evaluate", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ph = sub.add_parser("photos", help="labelled photographs through the server")
    ph.add_argument("folders", type=Path, nargs="+", metavar="FOLDER", help="one set each")
    ph.add_argument("--url", default="localhost:8001", help="Triton gRPC host:port")
    ph.add_argument("--start-server", action="store_true", help="start tritonserver for the run")
    ph.add_argument(
        "--model-repository", type=Path, default=None,
        help="with --start-server: the repository to serve (default: model_repository/ of "
        "the checkout: the current directory or a parent, or $OVR_ALPR_ROOT)",
    )  # fmt: skip
    ph.add_argument("--regions", nargs="+", default=["eu", "uk"], help="plate formats to apply")
    ph.add_argument("--out", type=Path, default=Path("runs/evaluate"))
    ph.add_argument("--summary", type=Path, help="also write the summary JSON here")
    ph.add_argument("--quiet", action="store_true")
    ph.add_argument("--limit", type=positive, help="only the first N photos of each folder")
    ph.add_argument(
        "--cascade", action=argparse.BooleanOptionalAction, default=True,
        help="read the whole photo only when no vehicle crop gave a sure plate (the "
        "default, the edge client's path); --no-cascade reads it always",
    )  # fmt: skip
    ph.add_argument(
        "--plate-engine", choices=["auto", "yolo", "ppocr"],
        help="with --start-server: plate_detector's engine for this run (default: its config)",
    )  # fmt: skip
    ph.add_argument(
        "--plate-reader", choices=PLATE_READERS,
        help="with --start-server: plate_ocr's recogniser for this run (plate: the "
        "plate-trained one, ppocr: PP-OCRv6, fused: both; default: its config)",
    )  # fmt: skip
    ph.add_argument(
        "--compare", nargs=2, choices=PLATE_READERS, metavar=("A", "B"),
        help="with --start-server: run the photos with --plate-reader A, then B (a fresh "
        "server each), and write them side by side (reports under OUT/A and OUT/B)",
    )  # fmt: skip
    vi = sub.add_parser("video", help="score an edge-client run against ground truth")
    vi.add_argument("--events", type=Path, required=True)
    vi.add_argument("--truth", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "video":
        return video(args)
    problem = option_problem(args)
    if problem:
        p.error(problem)
    return photos(args)
