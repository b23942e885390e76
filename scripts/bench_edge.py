#!/usr/bin/env python
"""Edge benchmark, one run, side by side: what a plate camera costs per frame.

Against one tritonserver (+ a private redis-server), on the synthetic demo video (6 plates)
and on a clip made of real photographs (``edge_client.tools.photo_clip``, openalpr-eu):

1. ``model_ceiling``: the bare YOLO plate network (``plate_locator``'s ONNX file) in
   process with onnxruntime, at the locator's input side, on pre-letterboxed frames: the
   most frames per second any client could process on this machine;
2. ``plates`` (the new path, ``plate_finder: locator``): ``edge-client`` runs only
   ``plate_locator`` per frame and reads each track's best crop once through ``alpr``;
3. ``plates_before`` (``plate_finder: detector``): ``edge-client`` runs the heavy
   ``plate_detector`` (YOLO + text-line refinement + crops) on every frame;
4. ``per_frame``: what an untracked pipeline would read: every plate the locator finds in
   every frame through ``alpr`` (OCR calls, accuracy of every distinct string);
5. ``cameras``: N edge clients (N in ``--cameras``) on the demo video at once against the
   same server: aggregate processed fps and the average batch Triton ran
   (``nv_inference_count`` / ``nv_inference_exec_count`` of ``plate_locator``, from its
   metrics endpoint).

Writes ``bench/results/edge.json``. ``--smoke`` is the test suite's run (cameras 1 and 2,
3 photos; correctness only). ``--triton-url``/``--metrics-url``/``--redis-url`` reuse
running servers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from demo import start_redis  # noqa: E402

from alpr_common.demo_video import read_frames  # noqa: E402
from alpr_common.plate_text import normalize  # noqa: E402
from alpr_common.procgroup import descendants, read_proc  # noqa: E402
from edge_client.config import Crops  # noqa: E402
from edge_client.tools.demo_video import demo_edge_config, generate  # noqa: E402
from edge_client.tools.photo_clip import photo_clip  # noqa: E402
from edge_client.trackbook import crop_box  # noqa: E402
from edge_client.triton_client import AlprClient  # noqa: E402
from ensemble.contracts import PLATE_LOCATOR  # noqa: E402
from ensemble.engines import VehicleDetector  # noqa: E402
from ensemble.image_io import encode_jpeg  # noqa: E402
from ensemble.ops.server_process import inference_counts, start_triton  # noqa: E402
from ensemble.params import (  # noqa: E402
    PlateLocatorParams,
    cpu_instances,
    threads_per_instance,
    usable_cores,
)
from ensemble.preprocess import letterbox  # noqa: E402

CROPS = Crops()  # the plates camera's crop defaults, as edge-client reads them
FP32_FILE = "yolo_plate.onnx"  # the float YOLO plate network (plate_detector's)
PHOTOS = REPO.parent / "shared" / "data" / "openalpr-eu"


def plate_accuracy(reported: list[str], truth: list[str]) -> dict[str, float | int]:
    correct = len(set(reported) & set(truth))
    wrong = len([p for p in set(reported) if p not in truth])
    return {
        "correct": correct, "wrong": wrong, "missed": len(set(truth) - set(reported)),
        "duplicates": len(reported) - len(set(reported)),
        "accuracy": correct / max(len(truth), len(set(reported))) if truth else 0.0,
    }  # fmt: skip


def served_locator(triton_url: str) -> tuple[str, int]:
    """The ONNX file the running ``plate_locator`` serves (its ``onnx_file`` parameter) and
    its number of CPU instances."""
    grpc = grpcclient.InferenceServerClient(triton_url)
    try:
        cfg = grpc.get_model_config(PLATE_LOCATOR, as_json=True)["config"]
    finally:
        grpc.close()
    param = cfg.get("parameters", {}).get("onnx_file", {}).get("string_value")
    return str(param or PlateLocatorParams.model_fields["onnx_file"].default), cpu_instances(cfg)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median fps (the lower middle one), with every run's fps."""
    ordered = sorted(runs, key=lambda r: r["fps"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_fps": [r["fps"] for r in runs]}


def model_ceiling(
    video_frames: list[np.ndarray], side: int, onnx_file: str, sessions: int = 1
) -> dict[str, Any]:
    """The locator's network alone, in process: one session with onnxruntime's default
    threads, one frame at a time (``sessions`` 1); or ``sessions`` single-purpose sessions
    splitting the cores (``threads_per_instance``, as the served instances do), each in its
    own thread on every ``sessions``-th frame."""
    threads = threads_per_instance(sessions, usable_cores())
    path = REPO / "model_repository" / PLATE_LOCATOR / "1" / onnx_file
    nets = [
        VehicleDetector(path, classes=(0,), input_size=side, threads=threads)
        for _ in range(sessions)
    ]
    boxed = [
        np.ascontiguousarray(letterbox(f, side, fast=True)[0][..., ::-1])[None]
        for f in video_frames
    ]
    sizes = [f.shape[:2] for f in video_frames]
    for det in nets:
        det.detect(boxed[0], [sizes[0]])  # warm-up

    def share(k: int) -> None:
        for i in range(k, len(boxed), sessions):
            nets[k].detect(boxed[i], [sizes[i]])

    t0, cpu0 = time.perf_counter(), time.process_time()
    if sessions == 1:
        share(0)
    else:
        with ThreadPoolExecutor(sessions) as pool:
            list(pool.map(share, range(sessions)))
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"frames": len(boxed), "seconds": dt, "fps": len(boxed) / dt, "input_side": side,
            "onnx_file": onnx_file, "sessions": sessions, "threads_per_session": threads,
            "cpu_ms_per_frame": 1000 * cpu / len(boxed)}  # fmt: skip


def camera_config(
    work: Path, name: str, video: Path, triton_url: str, redis_url: str, *,
    finder: str, cameras: int = 1, regions: list[str] | None = None,
) -> Path:  # fmt: skip
    """The demo camera on ``video`` with ``plate_finder: finder``; ``cameras`` copies
    (``cam0``...), each with its own events file."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(demo_edge_config(out, video, triton_url, redis_url).read_text())
    demo = base["cameras"].pop("demo")
    demo["plate_finder"] = finder
    if demo.get("zone"):  # every frame through the detector: fps compares per-frame cost
        demo["zone"]["idle_every"] = 1
    if regions:
        demo["regions"] = regions
    for k in range(cameras):
        cam = dict(demo)
        cam["sinks"] = [{"type": "jsonl", "path": str(out / f"events-cam{k}.jsonl")}]
        base["cameras"][f"cam{k}"] = cam
    base["output_dir"] = str(out / "out")
    path = out / "edge.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def run_cameras(config: Path, cameras: int) -> list[dict[str, Any]]:
    """``cameras`` edge-client processes at once; each one's summary and plate events."""
    exe = str(Path(sys.executable).parent / "edge-client")
    out = config.parent
    procs = []
    for k in range(cameras):
        (out / f"events-cam{k}.jsonl").unlink(missing_ok=True)
        summary = str(out / f"summary-cam{k}.json")
        cmd = [exe, "--camera", f"cam{k}", "--config", str(config), "--fresh",
               "--summary", summary, "--log-level", "WARNING"]  # fmt: skip
        procs.append(subprocess.Popen(cmd))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"edge-client exited with {p.returncode} ({config})")
    results = []
    for k in range(cameras):
        summary = json.loads((out / f"summary-cam{k}.json").read_text())
        lines = (out / f"events-cam{k}.jsonl").read_text().splitlines()
        events = [json.loads(x) for x in lines]
        summary["plates"] = [e["plate"] for e in events if e.get("kind", "plate") == "plate"]
        results.append(summary)
    return results


def per_track(config: Path, truth: list[str]) -> dict[str, Any]:
    (s,) = run_cameras(config, 1)
    return track_result(s, truth)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its descendants (the server with
    its Python-backend stubs)."""
    procs = [read_proc(pid), *descendants(pid)]
    return sum(p.cpu_ticks for p in procs if p is not None) / os.sysconf("SC_CLK_TCK")


def track_result(s: dict[str, Any], truth: list[str]) -> dict[str, Any]:
    return {
        "frames": s["frames"], "fps": s["fps"], "ocr_calls": s["reads"],
        "requests": s["read_requests"], "tracks": s["tracks"], "events": len(s["plates"]),
        "plates": s["plates"], **plate_accuracy(s["plates"], truth),
        "edge_cpu_ms_per_frame": 1000 * s["cpu_s"] / max(1, s["frames"]),
    }  # fmt: skip


def side_by_side(
    new_cfg: Path,
    old_cfg: Path,
    truth: list[str],
    repeats: int,
    server_pid: int | None,
    before_each: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The new and the old path ``repeats`` times each, alternating (machine noise hits
    both alike), ``before_each`` (the model ceilings) before every pair: the worst run's
    plates and counts, the median fps, every run's fps and plates; with ``server_pid`` the
    server's CPU per frame (median) too."""
    runs: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
    for _ in range(repeats):
        before_each()
        for key, cfg in (("new", new_cfg), ("old", old_cfg)):
            cpu0 = tree_cpu_s(server_pid) if server_pid else 0.0
            res = track_result(run_cameras(cfg, 1)[0], truth)
            res["server_cpu_ms_per_frame"] = (
                1000 * (tree_cpu_s(server_pid) - cpu0) / max(1, res["frames"])
                if server_pid else None
            )  # fmt: skip
            runs[key].append(res)
    out = []
    for key in ("new", "old"):
        first = dict(min(runs[key], key=lambda r: r["accuracy"]))  # the worst run
        fps = [r["fps"] for r in runs[key]]
        first["fps"], first["runs_fps"] = float(np.median(fps)), fps
        for cpu in ("edge_cpu_ms_per_frame", "server_cpu_ms_per_frame"):
            values = [r[cpu] for r in runs[key] if r[cpu] is not None]
            first[cpu] = float(np.median(values)) if values else None
        first["runs_plates"] = [r["plates"] for r in runs[key]]
        out.append(first)
    return out[0], out[1]


def per_frame(client: AlprClient, video_frames: list[np.ndarray], truth: list[str]) -> dict:
    """Every plate the locator finds in every frame, read through ``alpr``."""
    ocr, reads = 0, []
    t0 = time.perf_counter()
    for image in video_frames:
        (found,) = client.locate_plates([image])
        crops = [
            encode_jpeg(
                crop_box(image, tuple(map(float, b)), CROPS.plate_margin), CROPS.jpeg_quality
            )
            for b in found.boxes
        ]
        for start in range(0, len(crops), 8):
            batch = crops[start : start + 8]
            ocr += len(batch)
            for cands in client.read_plates(batch, alternatives=False):
                best = max(cands, key=lambda r: r.confidence, default=None)
                reads.append(normalize(best.text) if best else "")
    dt = time.perf_counter() - t0
    reported = list(dict.fromkeys(r for r in reads if len(r) >= 4))
    return {
        "frames": len(video_frames), "fps": len(video_frames) / dt, "ocr_calls": ocr,
        "read_exact_fraction": sum(r in truth for r in reads) / max(1, len(reads)),
        **plate_accuracy(reported, truth),
    }  # fmt: skip


def many_cameras(
    work: Path, video: Path, urls: tuple[str, str, str], counts: list[int], truth: list[str]
) -> dict[str, Any]:
    triton_url, metrics_url, redis_url = urls
    out: dict[str, Any] = {}
    for n in counts:
        config = camera_config(work, f"cams{n}", video, triton_url, redis_url,
                               finder="locator", cameras=n)  # fmt: skip
        before = inference_counts(metrics_url, PLATE_LOCATOR)
        runs = run_cameras(config, n)
        detected = sum(r["frames"] - r["idle_skipped"] for r in runs)
        after = inference_counts(metrics_url, PLATE_LOCATOR, at_least=before[0] + detected)
        inferences, executions = after[0] - before[0], after[1] - before[1]
        out[str(n)] = {
            "aggregate_fps": sum(r["fps"] for r in runs),
            "per_camera_fps": [round(r["fps"], 2) for r in runs],
            "locator_inferences": inferences,
            "locator_executions": executions,
            "average_batch": inferences / max(1, executions),
            "all_correct": all(plate_accuracy(r["plates"], truth)["accuracy"] == 1.0 for r in runs),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "edge.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", type=Path, default=PHOTOS, help="labelled photos for the clip")
    ap.add_argument("--photo-limit", type=int, default=20, help="photos in the real clip")
    ap.add_argument("--cameras", default="1,2,4,8", help="camera counts to run at once")
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of the new and the old path each, alternating (median fps)",
    )
    ap.add_argument("--smoke", action="store_true",
                    help="tiny run (tests): cameras 1,2; 3 photos; one run each")  # fmt: skip
    ap.add_argument("--triton-url", help="use this running server (gRPC host:port)")
    ap.add_argument("--metrics-url", help="its metrics endpoint (with --triton-url)")
    ap.add_argument("--redis-url", help="use this running Redis")
    args = ap.parse_args(argv)
    if args.smoke:
        args.cameras, args.photo_limit, args.repeats = "1,2", 3, 1
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if bool(args.triton_url) != bool(args.metrics_url):
        ap.error("--triton-url and --metrics-url go together")
    counts = [int(c) for c in args.cameras.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    video, truth_path = generate(work, seed=args.seed, font="hershey")
    truth_doc = json.loads(truth_path.read_text())
    truth = [p["plate"] for p in truth_doc["plates"]]
    clip = None
    if args.photos.is_dir():
        clip = photo_clip(args.photos, work / "clip", limit=args.photo_limit)
    redis_proc = server = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        redis_proc, redis_url = start_redis(work)
    if args.triton_url:
        triton_url, metrics_url = args.triton_url, args.metrics_url
    else:
        server = start_triton(REPO / "model_repository", work / "tritonserver.log")
        triton_url, metrics_url = server.grpc_url, server.metrics_url
    try:
        client = AlprClient(triton_url)
        demo_frames = read_frames(video)
        side = client.input_side(PLATE_LOCATOR)
        served, instances = served_locator(triton_url)
        ceilings: dict[str, list[dict[str, Any]]] = {"one": [], "instances": []}

        def measure_ceilings() -> None:
            print("model ceilings ...", file=sys.stderr)
            ceilings["one"].append(model_ceiling(demo_frames, side, served))
            ceilings["instances"].append(
                model_ceiling(demo_frames, side, served, sessions=instances)
            )

        print(f"model ceilings, plates (locator) and plates_before (detector), {args.repeats} "
              "runs each, alternating ...", file=sys.stderr)  # fmt: skip
        new, old = side_by_side(
            camera_config(work, "new", video, triton_url, redis_url, finder="locator"),
            camera_config(work, "old", video, triton_url, redis_url, finder="detector"),
            truth, args.repeats, server.proc.pid if server is not None else None,
            before_each=measure_ceilings,
        )  # fmt: skip
        ceiling, ceiling_instances = median_run(ceilings["one"]), median_run(ceilings["instances"])
        ceiling_fp32 = model_ceiling(demo_frames, side, FP32_FILE) if served != FP32_FILE else None
        print("per-frame reading ...", file=sys.stderr)
        frame = per_frame(client, demo_frames, truth)
        clip_result: dict[str, Any] | None = None
        if clip is not None:
            print("real-photo clip ...", file=sys.stderr)
            clip_doc = json.loads(clip[1].read_text())
            clip_truth = [normalize(p["plate"]) for p in clip_doc["plates"]]
            regions = ["eu", "uk"]
            c_new, c_old = (
                per_track(camera_config(work, f"clip-{finder}", clip[0], triton_url, redis_url,
                                        finder=finder, regions=regions), clip_truth)
                for finder in ("locator", "detector")
            )  # fmt: skip
            clip_result = {
                "photos": len(clip_truth), "frames": clip_doc["frames"],
                "accuracy_per_track": c_new["accuracy"],
                "accuracy_per_track_before": c_old["accuracy"],
                "correct": c_new["correct"], "correct_before": c_old["correct"],
                "plates_only_before": sorted(set(c_old["plates"]) & set(clip_truth)
                                             - set(c_new["plates"])),
                "plates_only_new": sorted(set(c_new["plates"]) & set(clip_truth)
                                          - set(c_old["plates"])),
                "fps": c_new["fps"], "fps_before": c_old["fps"],
                "new": c_new, "before": c_old,
            }  # fmt: skip
        print(f"cameras {counts} ...", file=sys.stderr)
        cams = many_cameras(work, video, (triton_url, metrics_url, redis_url), counts, truth)
        client.close()
    finally:
        if server is not None:
            server.stop()
        if redis_proc is not None:
            redis_proc.terminate()
    result = {
        "plates_fps": new["fps"],
        "plates_fps_before": old["fps"],
        "plates_speedup": new["fps"] / old["fps"],
        "model_ceiling_fps": ceiling["fps"],
        "fps_over_model_ceiling": new["fps"] / ceiling["fps"],
        "model_ceiling_instances_fps": ceiling_instances["fps"],
        "fps_over_model_ceiling_instances": new["fps"] / ceiling_instances["fps"],
        "cameras8_over_model_ceiling": (
            cams["8"]["aggregate_fps"] / ceiling["fps"] if "8" in cams else None
        ),
        "ocr_calls_per_frame_over_per_track": frame["ocr_calls"] / max(1, new["ocr_calls"]),
        "cpu_ms_per_frame": {
            "model_ceiling": ceiling["cpu_ms_per_frame"],
            "plates_edge": new["edge_cpu_ms_per_frame"],
            "plates_server": new["server_cpu_ms_per_frame"],
            "plates_before_edge": old["edge_cpu_ms_per_frame"],
            "plates_before_server": old["server_cpu_ms_per_frame"],
        },
        "accuracy_per_track": new["accuracy"],
        "accuracy_per_track_before": old["accuracy"],
        "accuracy_per_frame": frame["accuracy"],
        "clip": clip_result,
        "cameras": cams,
        "model_ceiling": ceiling,
        "model_ceiling_instances": ceiling_instances,
        "model_ceiling_fp32": ceiling_fp32,
        "plates": new,
        "plates_before": old,
        "per_frame": frame,
        "video": {"frames": truth_doc["frames"], "fps": truth_doc["fps"],
                  "size": [truth_doc["width"], truth_doc["height"]], "plates": truth},
        "smoke": bool(args.smoke),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds")},
        "definitions": {
            "fps": "frames the edge client handled per second of its loop (decode, detection, "
                   "tracking, reads); camera: the demo camera of config/edge.yaml (plates "
                   "mode) with zone idle skipping off (idle_every 1), so every frame is "
                   "detected",
            "model_ceiling_fps": "the locator's ONNX network (the file plate_locator serves) + "
                                 "YOLO decoding in process (onnxruntime default threads), "
                                 "frames letterboxed beforehand, one at a time; measured "
                                 "before every pair of runs, the median (every one in "
                                 "model_ceiling.runs_fps); model_ceiling_fp32: the same with "
                                 "the float network, once",
            "model_ceiling_instances_fps": "the same network as the server runs it: one "
                                           "session per served plate_locator instance, the "
                                           "cores split among them, each in its own thread "
                                           "on every n-th frame",
            "plates_fps": "median over --repeats runs, new and before alternating; each run's "
                          "fps in plates.runs_fps / plates_before.runs_fps",
            "accuracy": "distinct plates reported correctly / max(truth plates, distinct "
                        "plates reported); only plate events count (vehicle events are the "
                        "zone's end-of-track records)",
            "cpu_ms_per_frame": "CPU time (user + system, every thread) per processed frame: "
                                "model_ceiling of the in-process network; *_edge of the "
                                "edge-client process during its loop (start-up excluded); "
                                "*_server of tritonserver with its backend stubs (null when "
                                "the server is not the bench's own); medians over the runs",
            "aggregate_fps": "sum over the concurrent cameras of each one's fps",
            "average_batch": "plate_locator inferences / executions during the run "
                             "(Triton's nv_inference_count / nv_inference_exec_count)",
        },
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k in ("plates_fps", "plates_fps_before", "plates_speedup", "model_ceiling_fps",
              "fps_over_model_ceiling", "ocr_calls_per_frame_over_per_track",
              "accuracy_per_track", "accuracy_per_track_before"):  # fmt: skip
        print(f"{k}: {result[k]:.3f}")
    if clip_result:
        c = clip_result
        print(f"clip ({c['photos']} photos): accuracy {c['accuracy_per_track']:.3f}"
              f" vs before {c['accuracy_per_track_before']:.3f}")  # fmt: skip
    for n, cam in cams.items():
        agg, batch = cam["aggregate_fps"], cam["average_batch"]
        print(f"{n} camera(s): {agg:.1f} fps aggregate, batch {batch:.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
