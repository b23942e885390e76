#!/usr/bin/env python
"""Capacity model: Triton replicas for N cameras, from the measured per-model costs.

Reads the committed benchmark results (nothing is measured here) and turns each measured
throughput into a cost in core-seconds (cores of the machine it ran on / items per
second), then sizes a fleet::

    load per camera  L = fps * c_detect + (vehicles_per_min / 60) * reads_per_track * c_read
    cameras/replica    = floor(cores * utilisation / L)
    replicas(N)        = max(min_replicas, ceil(N * L / (cores * utilisation)))

* ``c_detect`` (core-s per processed frame), per camera mode:
  - ``plates``: ``bench/results/edge.json`` ``cameras``, the best aggregate frames/s of N
    edge clients sharing one tritonserver (plate_locator per frame, dynamic batching).
    The edge clients ran on the same cores, so their decoding and tracking are in the
    figure: conservative for the server.
  - ``vehicles``: ``vehicle_detector`` through Triton, best infer/s with dynamic batching
    on (``--server-results``, default ``server-plate-yolo.json``: the run with the
    default plate engine).
* ``c_read`` (core-s per read): ``alpr`` through Triton in the same file, best infer/s
  with batching on; a track is read about once (``reads_per_track``: the highest
  ``ocr_calls / tracks`` of the edge.json runs).
* ``fps``: frames each camera processes per second (after ``process_every`` and zone idle
  skipping); ``vehicles_per_min``: tracks per camera per minute.
* ``cores``: CPU cores per Triton replica (default: those of the benchmark machine; the
  costs are assumed to scale linearly with cores); ``utilisation``: the share of them to
  plan for (0.7 leaves 30 % headroom for failover and bursts).

Replicas share the load (the edge clients balance every request over all ready pods), so
``replicas(N)`` packs fractional cameras; ``cameras/replica`` is the whole number a single
replica can carry. CPU figures only: no GPU has been measured (``gpu`` is null).

Writes ``bench/results/capacity.json`` (formula, every input with its value, unit and
source, the scenarios) and prints the scenarios as a markdown table.

    python scripts/capacity.py
    python scripts/capacity.py --fps 3 --vehicles-per-min 20 --cameras 50 --cores 8 --out -
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MODES = ("plates", "vehicles")
FORMULA = (
    "L = fps * c_detect[mode] + (vehicles_per_min / 60) * reads_per_track * c_read; "
    "cameras_per_replica = floor(cores * utilisation / L); "
    "replicas(N) = max(min_replicas, ceil(N * L / (cores * utilisation)))"
)


class CapacityError(ValueError):
    """A results file is missing, unreadable or lacks a measurement the model needs."""


@dataclass(frozen=True)
class Input:
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Inputs:
    """The measured costs the model runs on (core-seconds per item)."""

    c_detect: dict[str, Input]
    c_read: Input
    reads_per_track: Input
    bench_cores: Input
    plates_model_only: Input  # the locator network alone: the optimistic bound for plates
    machine_spread: Input | None  # spread of the same model's speed between the runs


@dataclass(frozen=True)
class Scenario:
    mode: str
    fps: float
    vehicles_per_min: float
    cores: float
    utilisation: float
    load_core_s_per_s: float  # L: core-seconds per second per camera
    detect_share: float  # of L
    cameras_per_replica: int
    replicas: dict[str, int]  # cameras -> replicas


# --- reading the results ------------------------------------------------------------------
def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CapacityError(f"{path}: not found (run the benchmark that writes it)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CapacityError(f"{path}: unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise CapacityError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _get(doc: dict[str, Any], path: Path, *keys: str) -> Any:
    value: Any = doc
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise CapacityError(f"{path}: missing {'.'.join(keys[: i + 1])}")
        value = value[key]
    return value


def _positive(value: Any, path: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CapacityError(f"{path}: {what} is not a number (got {value!r})")
    if not math.isfinite(value) or value <= 0:
        raise CapacityError(f"{path}: {what} must be a positive number (got {value!r})")
    return float(value)


def _best_triton(doc: dict[str, Any], path: Path, model: str) -> tuple[float, int]:
    """Highest infer/s of ``model`` with dynamic batching on and no errors, and its
    concurrency."""
    rows = [
        r
        for r in _get(doc, path, "rows")
        if r.get("model") == model and r.get("batching") == "on" and not r.get("errors")
    ]
    if not rows:
        raise CapacityError(f"{path}: no error-free rows for {model} with batching on")
    best = max(rows, key=lambda r: r["infer_per_s"])
    return _positive(best["infer_per_s"], path, f"{model} infer_per_s"), int(best["concurrency"])


def _show(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _cores(value: Any, path: Path) -> float:
    return _positive(value, path, "the machine's CPU count")


def read_inputs(results: Path, server_file: str) -> Inputs:
    edge_path, server_path = results / "edge.json", results / server_file
    edge, server = _load(edge_path), _load(server_path)
    edge_cores = _cores(_get(edge, edge_path, "machine", "cpus"), edge_path)
    server_cores = _cores(_get(server, server_path, "machine", "cpu_count"), server_path)
    e, s = _show(edge_path), _show(server_path)

    cams = _get(edge, edge_path, "cameras")
    if not isinstance(cams, dict) or not cams:
        raise CapacityError(f"{edge_path}: cameras is empty")
    n_best, best = max(
        ((n, _positive(c.get("aggregate_fps"), edge_path, f"cameras.{n}.aggregate_fps"))
         for n, c in cams.items()),
        key=lambda t: t[1],
    )  # fmt: skip
    ceiling_key = "model_ceiling_fps"  # the faster of the in-process ceilings bounds it
    ceiling = _positive(_get(edge, edge_path, ceiling_key), edge_path, ceiling_key)
    if edge.get("model_ceiling_instances_fps") is not None:
        per_instance = _positive(
            edge["model_ceiling_instances_fps"], edge_path, "model_ceiling_instances_fps"
        )
        if per_instance > ceiling:
            ceiling_key, ceiling = "model_ceiling_instances_fps", per_instance
    veh_fps, veh_c = _best_triton(server, server_path, "vehicle_detector")
    alpr_fps, alpr_c = _best_triton(server, server_path, "alpr")

    runs = {
        k: v for k, v in edge.items() if isinstance(v, dict) and {"ocr_calls", "tracks"} <= set(v)
    }
    clip = edge.get("clip")
    if isinstance(clip, dict) and isinstance(clip.get("new"), dict):
        runs["clip.new"] = clip["new"]
    ratios = {
        k: _positive(r["ocr_calls"], edge_path, f"{k}.ocr_calls")
        / _positive(r["tracks"], edge_path, f"{k}.tracks")
        for k, r in runs.items()
        if k != "per_frame"  # the old read-every-frame path, for comparison only
    }
    if not ratios:
        raise CapacityError(f"{edge_path}: no run with ocr_calls and tracks")
    worst = max(ratios, key=lambda k: ratios[k])

    spread = None
    ceilings = {}
    for f in sorted(results.glob("server*.json")):
        value = _load(f).get("inprocess_ceiling", {}).get("vehicle_detector")
        if isinstance(value, int | float) and value > 0:
            ceilings[f.name] = float(value)
    if len(ceilings) >= 2:
        fast, slow = (
            max(ceilings, key=lambda k: ceilings[k]),
            min(ceilings, key=lambda k: ceilings[k]),
        )
        spread = Input(
            ceilings[fast] / ceilings[slow],
            "ratio",
            f"vehicle_detector in-process images/s, {fast} ({ceilings[fast]}) over {slow} "
            f"({ceilings[slow]}): the same code on machines of the same size, run to run",
        )
    return Inputs(
        c_detect={
            "plates": Input(
                edge_cores / best, "core-s per frame",
                f"{e}: {edge_cores:g} cores / cameras.{n_best}.aggregate_fps {best:.2f} "
                f"(plate_locator per frame through Triton, edge clients on the same cores)",
            ),
            "vehicles": Input(
                server_cores / veh_fps, "core-s per frame",
                f"{s}: {server_cores:g} cores / vehicle_detector {veh_fps:.2f} infer/s "
                f"(Triton, batching on, concurrency {veh_c})",
            ),
        },
        c_read=Input(
            server_cores / alpr_fps, "core-s per read",
            f"{s}: {server_cores:g} cores / alpr {alpr_fps:.2f} infer/s "
            f"(Triton, batching on, concurrency {alpr_c})",
        ),
        reads_per_track=Input(
            ratios[worst], "reads per track",
            f"{e}: {worst}.ocr_calls / {worst}.tracks, the highest of "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(ratios.items())),
        ),
        bench_cores=Input(edge_cores, "cores", f"{e}: machine.cpus"),
        plates_model_only=Input(
            edge_cores / ceiling, "core-s per frame",
            f"{e}: {edge_cores:g} cores / {ceiling_key} {ceiling:.2f} (the locator network "
            "alone, in process: the optimistic bound for plates mode)",
        ),
        machine_spread=spread,
    )  # fmt: skip


# --- the model ----------------------------------------------------------------------------
def camera_load(c_detect: float, c_read: float, reads_per_track: float, fps: float,
                vehicles_per_min: float) -> float:  # fmt: skip
    """Core-seconds per second one camera costs the servers."""
    return fps * c_detect + vehicles_per_min / 60.0 * reads_per_track * c_read


def replicas_for(cameras: int, load: float, cores: float, utilisation: float,
                 min_replicas: int) -> int:  # fmt: skip
    # rounded to 1e-9 first so that an exact fit (e.g. 2.0000000000000004) is not one more
    return max(min_replicas, math.ceil(round(cameras * load / (cores * utilisation), 9)))


def cameras_per_replica(load: float, cores: float, utilisation: float) -> int:
    return math.floor(round(cores * utilisation / load, 9))


def scenario(
    inputs: Inputs,
    mode: str,
    fps: float,
    vehicles_per_min: float,
    cores: float,
    utilisation: float,
    cameras: Sequence[int],
    min_replicas: int,
) -> Scenario:
    c_detect = inputs.c_detect[mode].value
    load = camera_load(c_detect, inputs.c_read.value, inputs.reads_per_track.value, fps,
                       vehicles_per_min)  # fmt: skip
    return Scenario(
        mode=mode,
        fps=fps,
        vehicles_per_min=vehicles_per_min,
        cores=cores,
        utilisation=utilisation,
        load_core_s_per_s=load,
        detect_share=fps * c_detect / load,
        cameras_per_replica=cameras_per_replica(load, cores, utilisation),
        replicas={str(n): replicas_for(n, load, cores, utilisation, min_replicas) for n in cameras},
    )


def markdown(scenarios: Sequence[Scenario], cameras: Sequence[int]) -> str:
    head = ["mode", "fps", "vehicles/min", "L core-s/s", "detect share", "cameras/replica",
            *(f"replicas for {n:,}" for n in cameras)]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for s in scenarios:
        cells = [s.mode, f"{s.fps:g}", f"{s.vehicles_per_min:g}", f"{s.load_core_s_per_s:.3f}",
                 f"{s.detect_share:.0%}", str(s.cameras_per_replica),
                 *(f"{s.replicas[str(n)]:,}" for n in cameras)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(inputs: Inputs, args: argparse.Namespace) -> dict[str, Any]:
    cores = args.cores if args.cores is not None else inputs.bench_cores.value
    scenarios = [
        scenario(inputs, mode, fps, vpm, cores, args.utilisation, args.cameras, args.min_replicas)
        for mode in args.modes
        for fps in args.fps
        for vpm in args.vehicles_per_min
    ]
    return {
        "what": "Triton replicas for N cameras from measured per-model costs (CPU)",
        "command": " ".join(["python scripts/capacity.py", *args.argv]),
        "formula": FORMULA,
        "inputs": {
            **{f"c_detect_{m}": asdict(i) for m, i in inputs.c_detect.items()},
            "c_read": asdict(inputs.c_read),
            "reads_per_track": asdict(inputs.reads_per_track),
            "bench_cores": asdict(inputs.bench_cores),
            "cores": {
                "value": cores,
                "unit": "cores per Triton replica",
                "source": "--cores" if args.cores is not None else "bench_cores",
            },
            "utilisation": {
                "value": args.utilisation,
                "unit": "share of the cores planned for",
                "source": "--utilisation (headroom for failover and bursts)",
            },
            "min_replicas": {
                "value": args.min_replicas,
                "unit": "replicas",
                "source": "--min-replicas (the autoscaler's minReplicas, docker/k8s/triton.yaml)",
            },
        },
        "bounds": {
            "c_detect_plates_model_only": asdict(inputs.plates_model_only),
            "machine_spread": asdict(inputs.machine_spread) if inputs.machine_spread else None,
        },
        "scenarios": [asdict(s) for s in scenarios],
        "gpu": None,
        "notes": [
            "CPU only: every cost was measured on a 2-core CPU machine; no GPU has been "
            "measured, so no GPU sizing is given (rerun scripts/bench_server.py and "
            "scripts/bench_edge.py on a GPU host, then this script on their results)",
            "costs are assumed to scale linearly with cores; the same benchmark varied "
            "between runs by the machine_spread factor, so treat the replica counts as "
            "that uncertain",
            "server-side cost only: the edge clients' decoding runs in their own pods "
            "(plates mode's c_detect includes it, so it overstates the server's share)",
        ],
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="benchmark results folder")
    ap.add_argument(
        "--server-results",
        default="server-plate-yolo.json",
        help="bench_server.py output for vehicle_detector and alpr, in --results",
    )
    ap.add_argument("--fps", type=float, nargs="+", default=[5.0],
                    help="processed frames per second per camera")  # fmt: skip
    ap.add_argument("--vehicles-per-min", type=float, nargs="+", default=[10.0, 60.0],
                    help="vehicles (tracks) per minute per camera")  # fmt: skip
    ap.add_argument("--cameras", type=int, nargs="+", default=[100, 1000], help="fleet sizes")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument(
        "--cores",
        type=float,
        default=None,
        help="CPU cores per Triton replica (default: the benchmark machine's)",
    )
    ap.add_argument("--utilisation", type=float, default=0.7, help="share of the cores used")
    ap.add_argument("--min-replicas", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "capacity.json"), help="'-': no file")
    args = ap.parse_args(argv)
    checks = [
        (all(f > 0 for f in args.fps), "--fps must be > 0"),
        (all(v >= 0 for v in args.vehicles_per_min), "--vehicles-per-min must be >= 0"),
        (all(n >= 1 for n in args.cameras), "--cameras must be >= 1"),
        (args.cores is None or args.cores > 0, "--cores must be > 0"),
        (0 < args.utilisation <= 1, "--utilisation must be in (0, 1]"),
        (args.min_replicas >= 1, "--min-replicas must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            ap.error(message)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        inputs = read_inputs(args.results.resolve(), args.server_results)
    except CapacityError as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    doc = build(inputs, args)
    if args.out != "-":
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{FORMULA}\n")
    for name, item in doc["inputs"].items():
        print(f"- {name} = {item['value']:.4g} {item['unit']} ({item['source']})")
    for name, item in doc["bounds"].items():
        if item is not None:
            print(f"- bound {name} = {item['value']:.4g} {item['unit']} ({item['source']})")
    print()
    print(markdown([Scenario(**s) for s in doc["scenarios"]], args.cameras))
    return 0


if __name__ == "__main__":
    sys.exit(main())
