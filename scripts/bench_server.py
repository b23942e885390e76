"""Benchmark the Triton-served models against the in-process ceiling (a perf_analyzer stand-in).

perf_analyzer does not run on this machine (its glibc is too old), so this script is a small
``tritonclient`` load generator. In one run it:

1. starts its own ``tritonserver`` on free ports (``ensemble.ops.server_process.start_triton``,
   ``--model-control-mode=explicit``, all models of ``model_repository/`` loaded), waits for
   ``/v2/health/ready`` and always stops it at the end; or, with ``--url host:port`` (gRPC;
   alias ``--triton-url``),
   uses a server that is already running (without model control there, batching on/off and
   the delay sweep are skipped and the report says so);
2. measures the in-process ceiling while the server is idle: ``VehicleDetector.detect`` and
   the ``alpr`` path (plate_detector + plate_ocr services, the code the server runs) at batch
   sizes ``--batch-sizes``, best images/s = ceiling;
3. for ``vehicle_detector`` and ``alpr``, at each concurrency level C: C threads, each with its
   own gRPC client, send one-image requests back to back for ``--duration`` seconds after
   ``--warmup`` seconds; throughput counts requests that *complete* inside the window;
4. does that with dynamic batching on (config.pbtxt as is) and off: the model (for ``alpr``
   its composing models plate_detector and plate_ocr) is reloaded through the model-control
   API with ``dynamic_batching`` removed from its config, then reloaded with its original
   config;
5. sweeps ``max_queue_delay_microseconds`` (``--delays``) for vehicle_detector at
   ``--sweep-concurrency`` (default 8) and names the best delay (highest throughput; within
   2 % of it, the lowest p95);
6. writes JSON (``--out``, default bench/results/server.json) and a Markdown summary beside it
   (same name, ``.md``), and prints the Markdown to stdout (progress goes to stderr).

Inputs: the photo with the median pixel count in ../shared/data/openalpr-eu (or ``--image``;
a synthetic frame when neither exists), letterboxed to 640x640 RGB for vehicle_detector and
JPEG-encoded for alpr. ``--shm`` sends vehicle_detector inputs through Triton system shared
memory instead of inside the gRPC message.

The client threads share the machine with the server, so on a small machine absolute numbers
are pessimistic; compare the ratios, which are measured side by side in one run.

Examples::

    python scripts/bench_server.py --quick --out /tmp/bench_quick.json   # smoke run, ~1.5 min
    python scripts/bench_server.py                                         # full run, ~7 min
    python scripts/bench_server.py --url localhost:8001 --concurrency 1,4,16
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import gc
import importlib.metadata
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from ensemble.engines import VehicleDetector
from ensemble.ops.server_process import TritonProcess, start_triton
from ensemble.preprocess import letterbox
from ensemble.serving import (
    PlateDetectorService,
    PlateOcrService,
    build_plate_detector,
    build_plate_ocr,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPO = REPO_ROOT / "model_repository"
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "openalpr-eu"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "server.json"
VEHICLE = "vehicle_detector"
ALPR = "alpr"
COMPOSING = {VEHICLE: (VEHICLE,), ALPR: ("plate_detector", "plate_ocr")}
ALL_MODELS = (VEHICLE, "plate_detector", "plate_ocr", ALPR)
BEST_DELAY_TOLERANCE = 0.02
T = TypeVar("T")
RATIO_DEFINITIONS = {
    "triton_over_inprocess": "vehicle_detector infer/s with batching on at its best concurrency "
    "/ best in-process images/s over --batch-sizes",
    "batching_on_over_off_c8": "vehicle_detector infer/s at concurrency 8, batching on / off",
    "alpr_triton_over_inprocess": "the same for alpr (in-process: plate_detector + plate_ocr "
    "services on the JPEG, the code the server runs)",
    "alpr_batching_on_over_off_c8": "alpr infer/s at concurrency 8, dynamic batching of "
    "plate_detector and plate_ocr on / off",
    "best_queue_delay_us": "delay sweep point with the highest throughput; within 2 % of it, "
    "the lowest p95",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    concurrency: list[int]
    batch_sizes: list[int]
    delays_us: list[int]
    sweep_concurrency: int
    models: list[str]
    shm: bool
    url: str | None
    timeout_s: float
    server_timeout_s: float
    image: Path | None
    quick: bool
    out: Path


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--url",
        "--triton-url",
        dest="url",
        help="gRPC host:port of a running server (default: start one)",
    )
    p.add_argument("--duration", type=float, help="measured seconds per point (default 8)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per point (default 2)")
    p.add_argument("--concurrency", type=_int_list, help="levels, e.g. 1,2,4,8,16 (default)")
    p.add_argument("--batch-sizes", type=_int_list, help="in-process batches (default 1,2,4,8,16)")
    p.add_argument(
        "--delays",
        "--sweep-delay",
        type=_int_list,
        default=[0, 500, 2000, 5000],
        help="vehicle_detector max_queue_delay_microseconds sweep ('' skips it)",
    )
    p.add_argument("--sweep-concurrency", type=int, default=8, help="delay sweep level")
    p.add_argument("--models", default=f"{VEHICLE},{ALPR}", help="subset of vehicle_detector,alpr")
    p.add_argument("--shm", action="store_true", help="vehicle_detector input via system shm")
    p.add_argument("--image", type=Path, help="photo to send (default: from ../shared/data)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--server-timeout", type=float, default=180.0, help="seconds to become ready")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s, warm-up 1 s, C=1,8, batches 1,8"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path (.md beside it)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)

    def pick(value: Any, full: Any, fast: Any) -> Any:
        return value if value is not None else (fast if quick else full)

    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - {VEHICLE, ALPR}
    if unknown:
        raise SystemExit(f"unknown --models {sorted(unknown)}; choose from {VEHICLE},{ALPR}")
    return Settings(
        duration_s=pick(args.duration, 8.0, 2.0),
        warmup_s=pick(args.warmup, 2.0, 1.0),
        concurrency=pick(args.concurrency, [1, 2, 4, 8, 16], [1, 8]),
        batch_sizes=pick(args.batch_sizes, [1, 2, 4, 8, 16], [1, 8]),
        delays_us=list(args.delays),
        sweep_concurrency=args.sweep_concurrency,
        models=models,
        shm=bool(args.shm),
        url=args.url,
        timeout_s=args.timeout,
        server_timeout_s=args.server_timeout,
        image=args.image,
        quick=quick,
        out=args.out,
    )


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Inputs:
    source: str
    photo_bgr: np.ndarray
    letterboxed_rgb: np.ndarray  # [640, 640, 3]
    jpeg: bytes


def _median_photo(folder: Path) -> Path | None:
    photos = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    sized = []
    for path in photos:
        image = cv2.imread(str(path))
        if image is not None:
            sized.append((image.shape[0] * image.shape[1], path.name, path))
    if not sized:
        return None
    return sorted(sized)[len(sized) // 2][2]


def _synthetic_vehicle(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    image = np.asarray(cv2.GaussianBlur(image, (0, 0), 3), np.uint8)
    y0, x0 = height // 5, width // 6
    cv2.rectangle(image, (x0, y0), (width - x0, height - height // 8), (140, 60, 40), -1)
    pw, ph = width // 4, max(12, width // 20)
    px, py = (width - pw) // 2, int(height * 0.7)
    cv2.rectangle(image, (px, py), (px + pw, py + ph), (245, 245, 245), -1)
    cv2.putText(
        image,
        "AB123CD",
        (px + 6, py + int(ph * 0.8)),
        cv2.FONT_HERSHEY_DUPLEX,
        ph / 32,
        (10, 10, 10),
        max(1, ph // 12),
        cv2.LINE_AA,
    )
    return image


def load_inputs(image: Path | None) -> Inputs:
    path = image or _median_photo(DATA_DIR)
    photo = cv2.imread(str(path)) if path else None
    if path is not None and photo is None:
        raise SystemExit(f"cannot read image {path}")
    frame = photo if photo is not None else _synthetic_vehicle(720, 1280)
    crop = photo if photo is not None else _synthetic_vehicle(350, 450)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SystemExit("JPEG encoding failed")
    source = str(path) if photo is not None else "synthetic 1280x720 frame / 450x350 crop"
    boxed = letterbox(np.ascontiguousarray(frame[..., ::-1]))[0]
    return Inputs(source, frame, boxed, buf.tobytes())


# --------------------------------------------------------------------------- server
def start_server(timeout_s: float) -> TritonProcess:
    """The project's tritonserver on free (kernel-chosen, ephemeral) ports, explicit mode."""
    fd, log_name = tempfile.mkstemp(prefix="bench_triton_", suffix=".log")
    os.close(fd)
    log(f"starting tritonserver; log {log_name}")
    args = ["--model-control-mode=explicit", "--load-model=*", "--exit-timeout-secs=10"]
    server = start_triton(MODEL_REPO, Path(log_name), extra_args=args, timeout_s=timeout_s)
    log(f"tritonserver ready at {server.grpc_url} (gRPC)")
    return server


def wait_models_ready(
    client: grpcclient.InferenceServerClient, names: Sequence[str], timeout_s: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(names)
    while pending:
        pending = [n for n in pending if not _model_ready(client, n)]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"models not ready after {timeout_s:.0f} s: {pending}")
        if pending:
            time.sleep(0.25)


def wait_server_ready(client: grpcclient.InferenceServerClient, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(InferenceServerException):
            if client.is_server_ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no ready Triton server at {url} after {timeout_s:.0f} s")
        time.sleep(0.5)


def _model_ready(client: grpcclient.InferenceServerClient, name: str) -> bool:
    try:
        return bool(client.is_model_ready(name))
    except InferenceServerException:
        return False


# --------------------------------------------------------------------------- model control
ConfigEdit = Callable[[dict[str, Any]], dict[str, Any]]


def without_batching(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    cfg.pop("dynamic_batching", None)
    return cfg


def with_queue_delay(delay_us: int) -> ConfigEdit:
    def edit(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg = json.loads(json.dumps(cfg))
        cfg.setdefault("dynamic_batching", {})["max_queue_delay_microseconds"] = str(delay_us)
        return cfg

    return edit


def _batching_of(cfg: dict[str, Any]) -> dict[str, Any] | None:
    db = cfg.get("dynamic_batching")
    return dict(db) if db is not None else None


def _queue_delay(cfg: dict[str, Any]) -> int | None:
    """None without dynamic batching, else the delay (proto3 JSON omits a 0)."""
    db = cfg.get("dynamic_batching")
    return None if db is None else int(db.get("max_queue_delay_microseconds", 0) or 0)


class ModelControl:
    """Reload models with edited configs (config override) and restore the originals.

    A plain ``load_model(name)`` does not undo an override (Triton sees the repository
    unchanged and keeps the loaded config), so restoring reloads with the config the
    server reported before any edit.
    """

    def __init__(self, client: grpcclient.InferenceServerClient, names: Sequence[str]) -> None:
        self.client = client
        self.originals = {n: client.get_model_config(n, as_json=True)["config"] for n in names}

    def _load(self, name: str, cfg: dict[str, Any]) -> None:
        self.client.load_model(name, config=json.dumps(cfg))
        actual = self.client.get_model_config(name, as_json=True)["config"]
        want, got = _queue_delay(cfg), _queue_delay(actual)
        if want != got:
            raise RuntimeError(
                f"{name}: reload did not apply max_queue_delay_microseconds={want} "
                f"(server reports {got}; None = no dynamic_batching)"
            )

    @contextlib.contextmanager
    def edited(self, names: Sequence[str], edit: ConfigEdit) -> Iterator[None]:
        """Models reloaded with ``edit(original)`` inside the block, originals after it."""
        done: list[str] = []
        try:
            for name in names:
                done.append(name)
                self._load(name, edit(self.originals[name]))
            wait_models_ready(self.client, ALL_MODELS)
            yield
        finally:
            for name in done:
                self._load(name, self.originals[name])
            wait_models_ready(self.client, ALL_MODELS)


def probe_model_control(control: ModelControl) -> str | None:
    """None when config-override reloads work on this server, else the reason they don't."""
    try:
        with control.edited([VEHICLE], lambda cfg: cfg):
            pass
    except (InferenceServerException, RuntimeError) as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- load generator
@dataclass
class Payload:
    model: str
    inputs: list[grpcclient.InferInput]
    cleanup: Callable[[], None] = lambda: None


PayloadFactory = Callable[[grpcclient.InferenceServerClient, int], Payload]


def vehicle_payload(image: np.ndarray) -> PayloadFactory:
    batch = np.ascontiguousarray(image[None])

    def make(client: grpcclient.InferenceServerClient, index: int) -> Payload:
        tensor = grpcclient.InferInput("IMAGE", list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        return Payload(VEHICLE, [tensor])

    return make


def vehicle_shm_payload(image: np.ndarray) -> PayloadFactory:
    batch = np.ascontiguousarray(image[None])

    def make(client: grpcclient.InferenceServerClient, index: int) -> Payload:
        name = f"bench_{os.getpid()}_{index}"
        region = shm.create_shared_memory_region(name, f"/{name}", batch.nbytes)
        shm.set_shared_memory_region(region, [batch])
        client.register_system_shared_memory(name, f"/{name}", batch.nbytes)
        tensor = grpcclient.InferInput("IMAGE", list(batch.shape), "UINT8")
        tensor.set_shared_memory(name, batch.nbytes)

        def cleanup() -> None:
            with contextlib.suppress(InferenceServerException):
                client.unregister_system_shared_memory(name)
            shm.destroy_shared_memory_region(region)

        return Payload(VEHICLE, [tensor], cleanup)

    return make


def alpr_payload(jpeg: bytes) -> PayloadFactory:
    data = np.array([[jpeg]], dtype=object)

    def make(client: grpcclient.InferenceServerClient, index: int) -> Payload:
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(data)
        return Payload(ALPR, [tensor])

    return make


class LoadWorker(threading.Thread):
    """One client sending requests back to back until ``stop`` is set."""

    def __init__(
        self,
        url: str,
        factory: PayloadFactory,
        index: int,
        barrier: threading.Barrier,
        stop: threading.Event,
        timeout_s: float,
    ) -> None:
        super().__init__(daemon=True, name=f"load-{index}")
        self.url, self.factory, self.index = url, factory, index
        self.barrier, self.stop, self.timeout_s = barrier, stop, timeout_s
        self.records: list[tuple[float, float, bool]] = []  # (sent, done, ok)
        self.first_error: str | None = None

    def run(self) -> None:
        client = grpcclient.InferenceServerClient(self.url)
        try:
            payload = self.factory(client, self.index)
        except Exception as exc:
            self.first_error = f"setup failed: {exc}"
            self.barrier.abort()
            client.close()
            return
        try:
            self.barrier.wait()
            self._loop(client, payload)
        except threading.BrokenBarrierError:
            pass
        finally:
            payload.cleanup()
            client.close()

    def _loop(self, client: grpcclient.InferenceServerClient, payload: Payload) -> None:
        while not self.stop.is_set():
            sent = time.perf_counter()
            ok = True
            try:
                client.infer(payload.model, payload.inputs, client_timeout=self.timeout_s)
            except Exception as exc:  # count it and keep going, as perf_analyzer does
                ok = False
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
            self.records.append((sent, time.perf_counter(), ok))


@dataclass
class LoadResult:
    model: str
    batching: str
    concurrency: int
    infer_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    completed: int
    errors: int
    client_cpu_cores: float
    transport: str = "grpc"
    max_queue_delay_us: int | None = None
    first_error: str | None = None


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def summarize(
    records: Sequence[tuple[float, float, bool]], start: float, duration_s: float
) -> dict[str, Any]:
    """Stats over the requests that completed inside [start, start + duration)."""
    inside = [r for r in records if start <= r[1] < start + duration_s]
    lat = np.array([(done - sent) * 1e3 for sent, done, ok in inside if ok])
    return {
        "infer_per_s": round(len(lat) / duration_s, 2),
        "p50_ms": _pct(lat, 50),
        "p95_ms": _pct(lat, 95),
        "p99_ms": _pct(lat, 99),
        "mean_ms": round(float(lat.mean()), 2) if len(lat) else None,
        "completed": len(lat),
        "errors": sum(1 for r in inside if not r[2]),
    }


def run_load(url: str, factory: PayloadFactory, concurrency: int, s: Settings) -> dict[str, Any]:
    stop = threading.Event()
    barrier = threading.Barrier(concurrency + 1)
    workers = [LoadWorker(url, factory, i, barrier, stop, s.timeout_s) for i in range(concurrency)]
    for w in workers:
        w.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=60)
    t0, cpu0 = time.perf_counter(), time.process_time()
    stop.wait(s.warmup_s + s.duration_s)
    stop.set()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for w in workers:
        w.join(timeout=s.timeout_s + 5)
    records = [r for w in workers for r in w.records]
    stats = summarize(records, t0 + s.warmup_s, s.duration_s)
    stats["client_cpu_cores"] = round(cpu / wall, 2)
    stats["first_error"] = next((w.first_error for w in workers if w.first_error), None)
    return stats


def measure(
    url: str,
    model: str,
    factory: PayloadFactory,
    batching: str,
    concurrency: int,
    s: Settings,
    **extra: Any,
) -> LoadResult:
    stats = run_load(url, factory, concurrency, s)
    result = LoadResult(model=model, batching=batching, concurrency=concurrency, **stats, **extra)
    log(
        f"{model:16s} batching {batching:3s} C={concurrency:<2d} "
        f"{result.infer_per_s:7.2f} infer/s  p50 {result.p50_ms} ms  p95 {result.p95_ms} ms  "
        f"errors {result.errors}"
    )
    if result.first_error:
        log(f"  first error: {result.first_error}")
    return result


# --------------------------------------------------------------------------- in-process
@dataclass
class InprocResult:
    path: str
    batch: int
    images_per_s: float
    calls: int
    p50_ms_per_call: float | None


def measure_inprocess(
    path: str, fn: Callable[[Any], object], batch: Any, size: int, s: Settings
) -> InprocResult:
    fn(batch)
    warm_end = time.perf_counter() + s.warmup_s
    while time.perf_counter() < warm_end:
        fn(batch)
    lat: list[float] = []
    start = now = time.perf_counter()
    while now < start + s.duration_s:
        fn(batch)
        lat.append(time.perf_counter() - now)
        now = time.perf_counter()
    rate = len(lat) * size / (now - start)
    result = InprocResult(path, size, round(rate, 2), len(lat), _pct(np.array(lat) * 1e3, 50))
    log(f"in-process {path:16s} batch {size:<2d} {result.images_per_s:7.2f} images/s")
    return result


def vehicle_inprocess(image: np.ndarray, s: Settings) -> list[InprocResult]:
    detector = VehicleDetector(MODEL_REPO / VEHICLE / "1" / "model.onnx")

    def run(batch: np.ndarray) -> object:
        return detector.detect(batch, [None] * len(batch))

    return [
        measure_inprocess(VEHICLE, run, np.repeat(image[None], b, axis=0), b, s)
        for b in s.batch_sizes
    ]


def _model_args(name: str) -> dict[str, str]:
    return {"model_repository": str(MODEL_REPO / name), "model_version": "1"}


def alpr_pipeline(det: PlateDetectorService, ocr: PlateOcrService) -> Callable[[Any], object]:
    """plate_detector then plate_ocr on a [B, 1] bytes batch, as the ensemble runs them."""

    def run(batch: np.ndarray) -> object:
        found = det.run(det.items({"IMAGE": batch}))
        crops = np.stack([f["PLATE_CROPS"] for f in found])
        counts = np.stack([f["PLATE_COUNT"] for f in found])
        return ocr.run(ocr.items({"PLATE_CROPS": crops, "PLATE_COUNT": counts}))

    return run


def alpr_inprocess(
    jpeg: bytes, configs: dict[str, dict[str, Any]], s: Settings
) -> list[InprocResult]:
    det = build_plate_detector(_model_args("plate_detector"), configs["plate_detector"])
    ocr = build_plate_ocr(_model_args("plate_ocr"), configs["plate_ocr"])
    run = alpr_pipeline(det, ocr)
    return [
        measure_inprocess(ALPR, run, np.array([[jpeg]] * b, dtype=object), b, s)
        for b in s.batch_sizes
    ]


# --------------------------------------------------------------------------- phases
@dataclass
class Report:
    settings: dict[str, Any]
    machine: dict[str, Any]
    rows: list[LoadResult] = field(default_factory=list)
    delay_sweep: list[LoadResult] = field(default_factory=list)
    inprocess: list[InprocResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: int = 0


def factory_for(model: str, inputs: Inputs, s: Settings) -> PayloadFactory:
    if model == ALPR:
        return alpr_payload(inputs.jpeg)
    return (
        vehicle_shm_payload(inputs.letterboxed_rgb)
        if s.shm
        else vehicle_payload(inputs.letterboxed_rgb)
    )


def transport_for(model: str, s: Settings) -> str:
    return "system_shm" if s.shm and model == VEHICLE else "grpc"


def sweep_levels(
    url: str, model: str, factory: PayloadFactory, batching: str, s: Settings
) -> list[LoadResult]:
    transport = transport_for(model, s)
    return [
        measure(url, model, factory, batching, c, s, transport=transport) for c in s.concurrency
    ]


def batching_off_rows(
    url: str, model: str, factory: PayloadFactory, control: ModelControl, s: Settings
) -> list[LoadResult]:
    log(f"reloading {', '.join(COMPOSING[model])} without dynamic_batching")
    with control.edited(COMPOSING[model], without_batching):
        return sweep_levels(url, model, factory, "off", s)


def delay_rows(
    url: str, model: str, inputs: Inputs, control: ModelControl, delay: int, s: Settings
) -> list[LoadResult]:
    """``model`` at the sweep concurrency with one max_queue_delay_microseconds on every
    composing model."""
    factory = factory_for(model, inputs, s)
    log(f"reloading {', '.join(COMPOSING[model])} with max_queue_delay_microseconds={delay}")
    transport = transport_for(model, s)
    with control.edited(COMPOSING[model], with_queue_delay(delay)):
        c = s.sweep_concurrency
        return [
            measure(url, model, factory, "on", c, s, transport=transport, max_queue_delay_us=delay)
        ]


def guarded(report: Report, label: str, fn: Callable[[], T], default: T) -> T:
    """Run one phase; a failure is logged and noted in the report, and the run goes on."""
    try:
        return fn()
    except Exception as exc:
        message = f"{label} failed: {type(exc).__name__}: {exc}"
        log(message)
        report.notes.append(message)
        report.failures += 1
        return default


def inprocess_phase(
    inputs: Inputs, control_configs: dict[str, dict[str, Any]], s: Settings
) -> list[InprocResult]:
    log("in-process ceiling (server idle)")
    results: list[InprocResult] = []
    if VEHICLE in s.models:
        results += vehicle_inprocess(inputs.letterboxed_rgb, s)
    if ALPR in s.models:
        results += alpr_inprocess(inputs.jpeg, control_configs, s)
    gc.collect()  # drop the in-process sessions before the server is loaded
    return results


# --------------------------------------------------------------------------- report
def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "tritonclient": _version("tritonclient"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()),
    }


def _best(rows: Sequence[LoadResult], model: str, batching: str) -> LoadResult | None:
    mine = [r for r in rows if r.model == model and r.batching == batching and r.infer_per_s > 0]
    return max(mine, key=lambda r: r.infer_per_s, default=None)


def _at(rows: Sequence[LoadResult], model: str, batching: str, c: int) -> LoadResult | None:
    return next(
        (r for r in rows if r.model == model and r.batching == batching and r.concurrency == c),
        None,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _ceiling(results: Sequence[InprocResult], path: str) -> float | None:
    rates = [r.images_per_s for r in results if r.path == path]
    return max(rates) if rates else None


def best_delay(rows: Sequence[LoadResult]) -> int | None:
    """Highest throughput; among points within 2 % of it, the lowest p95."""
    ok = [r for r in rows if r.infer_per_s > 0 and r.p95_ms is not None]
    if not ok:
        return None
    top = max(r.infer_per_s for r in ok)
    close = [r for r in ok if r.infer_per_s >= top * (1 - BEST_DELAY_TOLERANCE)]
    return min(close, key=lambda r: r.p95_ms or 0.0).max_queue_delay_us


def summary_ratios(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, prefix in ((VEHICLE, ""), (ALPR, "alpr_")):
        best_on = _best(report.rows, model, "on")
        on8, off8 = _at(report.rows, model, "on", 8), _at(report.rows, model, "off", 8)
        out[f"{prefix}triton_over_inprocess"] = _ratio(
            best_on.infer_per_s if best_on else None, _ceiling(report.inprocess, model)
        )
        out[f"{prefix}triton_best_concurrency"] = best_on.concurrency if best_on else None
        out[f"{prefix}batching_on_over_off_c8"] = _ratio(
            on8.infer_per_s if on8 else None, off8.infer_per_s if off8 else None
        )
    for model, prefix in ((VEHICLE, ""), (ALPR, "alpr_")):
        out[f"{prefix}best_queue_delay_us"] = best_delay(
            [r for r in report.delay_sweep if r.model == model]
        )
    return out


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown(report: Report, ratios: dict[str, Any]) -> str:
    s, m = report.settings, report.machine
    lines = [
        "# Triton server benchmark",
        "",
        f"{m['date']} | {m['cpu_count']} CPUs | {m['platform']} | Python {m['python']} | "
        f"onnxruntime {m['onnxruntime']} | Triton {s.get('server_version')} | "
        f"{s['duration_s']} s per point after {s['warmup_s']} s warm-up | input {s['image']} | "
        f"vehicle_detector input via {'system shared memory' if s['shm'] else 'gRPC'} | "
        f"server: {s['url'] or 'started by this script'}",
        "",
        "| model | batching | concurrency | infer/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.batching} | {r.concurrency} | {r.infer_per_s} | {_cell(r.p50_ms)} | "
        f"{_cell(r.p95_ms)} | {_cell(r.p99_ms)} | {r.errors} |"
        for r in report.rows
    ]
    lines += _sweep_md(report) + _inproc_md(report) + ["", "## Ratios", ""]
    lines += [f"- `{k}`: {_cell(v)}" for k, v in ratios.items()]
    lines += [f"- note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _sweep_md(report: Report) -> list[str]:
    lines: list[str] = []
    for model in dict.fromkeys(r.model for r in report.delay_sweep):
        rows = [r for r in report.delay_sweep if r.model == model]
        lines += [
            "",
            f"## {model} queue-delay sweep (concurrency {rows[0].concurrency})",
            "",
            "| max_queue_delay_us | infer/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.max_queue_delay_us} | {r.infer_per_s} | {_cell(r.p50_ms)} | "
            f"{_cell(r.p95_ms)} | {_cell(r.p99_ms)} | {r.errors} |"
            for r in rows
        ]
        lines += ["", f"best: {_cell(best_delay(rows))} us"]
    return lines


def _inproc_md(report: Report) -> list[str]:
    if not report.inprocess:
        return []
    lines = [
        "",
        "## In-process ceiling (same code, no server; measured while it was idle)",
        "",
        "| path | batch | images/s | p50 ms per call |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r.path} | {r.batch} | {r.images_per_s} | {_cell(r.p50_ms_per_call)} |"
        for r in report.inprocess
    ]
    return lines


def write_report(report: Report, out: Path) -> str:
    report.machine["loadavg_end"] = list(os.getloadavg())
    ratios = summary_ratios(report)
    doc = {
        **ratios,
        "machine": report.machine,
        "settings": report.settings,
        "rows": [asdict(r) for r in report.rows],
        "delay_sweep": [asdict(r) for r in report.delay_sweep],
        "inprocess": [asdict(r) for r in report.inprocess],
        "inprocess_ceiling": {p: _ceiling(report.inprocess, p) for p in (VEHICLE, ALPR)},
        "notes": report.notes,
        "definitions": RATIO_DEFINITIONS,
    }
    text = markdown(report, ratios)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    return text


# --------------------------------------------------------------------------- main
def settings_record(s: Settings, inputs: Inputs, server_version: str | None) -> dict[str, Any]:
    record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(s).items()}
    record.update(
        image=inputs.source,
        image_shape=list(inputs.photo_bgr.shape),
        jpeg_bytes=len(inputs.jpeg),
        vehicle_input="letterboxed 640x640 RGB, one image per request, no SOURCE_SIZE",
        managed_server=s.url is None,
        server_version=server_version,
        ort_threads_env=os.environ.get("OVR_ALPR_ORT_THREADS"),
        throughput_counts="requests completing inside the measured window",
    )
    return record


def load_phases(
    url: str, model: str, inputs: Inputs, control: ModelControl | None, s: Settings, report: Report
) -> None:
    factory = factory_for(model, inputs, s)
    report.rows += guarded(
        report, f"{model} batching on", lambda: sweep_levels(url, model, factory, "on", s), []
    )
    if control is not None:
        report.rows += guarded(
            report,
            f"{model} batching off",
            lambda: batching_off_rows(url, model, factory, control, s),
            [],
        )


def delay_sweep(
    url: str, inputs: Inputs, control: ModelControl, s: Settings, report: Report
) -> None:
    for model in s.models:
        for delay in s.delays_us:
            point: Callable[[], list[LoadResult]] = functools.partial(
                delay_rows, url, model, inputs, control, delay, s
            )
            report.delay_sweep += guarded(report, f"{model} delay {delay} us", point, [])


def run_benchmark(url: str, s: Settings, inputs: Inputs, report: Report) -> None:
    client = grpcclient.InferenceServerClient(url)
    try:
        wait_server_ready(client, url, s.server_timeout_s if s.url is None else 10.0)
        wait_models_ready(client, ALL_MODELS)
        report.settings = settings_record(
            s, inputs, client.get_server_metadata(as_json=True).get("version")
        )
        probed = ModelControl(client, ALL_MODELS)
        configs = dict(probed.originals)
        reason = probe_model_control(probed)
        control = probed if reason is None else None
        report.settings["model_control"] = reason is None
        report.settings["dynamic_batching"] = {n: _batching_of(c) for n, c in configs.items()}
        if reason is not None:
            note = f"batching on/off and delay sweep skipped: model control unavailable ({reason})"
            log(note)
            report.notes.append(note)
        report.inprocess = guarded(
            report, "in-process ceiling", lambda: inprocess_phase(inputs, configs, s), []
        )
        for model in s.models:
            load_phases(url, model, inputs, control, s, report)
        if control is not None:
            delay_sweep(url, inputs, control, s, report)
    finally:
        client.close()


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    s = settings_from(parse_args(argv))
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally below stops the server
    inputs = load_inputs(s.image)
    log(f"input: {inputs.source} {inputs.photo_bgr.shape}, JPEG {len(inputs.jpeg)} bytes")
    report = Report(settings={}, machine=machine_info())
    server = start_server(s.server_timeout_s) if s.url is None else None
    try:
        run_benchmark(s.url or (server.grpc_url if server else ""), s, inputs, report)
    finally:
        if server is not None:
            log("stopping tritonserver")
            server.stop()
    text = write_report(report, s.out)
    print(text)
    log(f"wrote {s.out} and {s.out.with_suffix('.md')}")
    if report.failures:
        log(f"{report.failures} phase(s) failed; see notes")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
