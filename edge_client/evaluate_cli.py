"""`alpr-evaluate`: the command-line side of :mod:`edge_client.evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from .evaluate import evaluate_photo, load_labels, score_video, summarise, write_report
from .plates.formats import load_formats, select
from .triton_client import AlprClient, InferenceError

REPO = Path(__file__).resolve().parent.parent


def photos(args: argparse.Namespace) -> int:
    labels = load_labels(args.folder)
    if not labels:
        print(f"alpr-evaluate: no labelled images (NAME.txt) in {args.folder}", file=sys.stderr)
        return 2
    formats = select(load_formats(), args.regions)
    server = None
    url = args.url
    if args.plate_engine and not args.start_server:
        print("alpr-evaluate: --plate-engine needs --start-server", file=sys.stderr)
        return 2
    if args.start_server:
        from ensemble.server_process import start_triton

        env = {"OVR_ALPR_PLATE_ENGINE": args.plate_engine} if args.plate_engine else None
        server = start_triton(REPO / "model_repository", args.out / "tritonserver.log", env=env)
        url = server.grpc_url
    try:
        client = AlprClient(url)
        if not client.ready():
            print(f"alpr-evaluate: Triton is not reachable at {url}", file=sys.stderr)
            return 3
        results, crops = [], {}
        for label in tqdm(labels, desc="images", unit="img", disable=args.quiet):
            try:
                res, crop = evaluate_photo(client, args.folder, label, formats, args.cascade)
            except (InferenceError, OSError) as exc:
                print(f"alpr-evaluate: {label.image}: {exc}", file=sys.stderr)
                continue
            results.append(res)
            crops[res.image] = crop
    finally:
        if server:
            server.stop()
    summary = {**summarise(results), "regions": args.regions, "folder": str(args.folder),
               "cascade": args.cascade, "plate_engine": args.plate_engine or "config"}  # fmt: skip
    report = write_report(args.out, summary, results, crops)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"report: {report}", file=sys.stderr)
    return 0


def video(args: argparse.Namespace) -> int:
    events = [json.loads(x) for x in args.events.read_text().splitlines() if x.strip()]
    truth = json.loads(args.truth.read_text())
    result = score_video(events, truth)
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="alpr-evaluate", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    ph = sub.add_parser("photos", help="labelled photographs through the server")
    ph.add_argument("folder", type=Path)
    ph.add_argument("--url", default="localhost:8001", help="Triton gRPC host:port")
    ph.add_argument("--start-server", action="store_true", help="start tritonserver for the run")
    ph.add_argument("--regions", nargs="+", default=["eu", "uk"], help="plate formats to apply")
    ph.add_argument("--out", type=Path, default=Path("runs/evaluate"))
    ph.add_argument("--summary", type=Path, help="also write the summary JSON here")
    ph.add_argument("--quiet", action="store_true")
    ph.add_argument(
        "--cascade", action=argparse.BooleanOptionalAction, default=True,
        help="read the whole photo only when no vehicle crop gave a sure plate (the "
        "default, the edge client's path); --no-cascade reads it always",
    )  # fmt: skip
    ph.add_argument(
        "--plate-engine", choices=["auto", "yolo", "ppocr"],
        help="with --start-server: plate_detector's engine for this run (default: its config)",
    )  # fmt: skip
    vi = sub.add_parser("video", help="score an edge-client run against ground truth")
    vi.add_argument("--events", type=Path, required=True)
    vi.add_argument("--truth", type=Path, required=True)
    args = p.parse_args(argv)
    return photos(args) if args.cmd == "photos" else video(args)
