#!/usr/bin/env python
"""Build TensorRT plans from the provisioned ONNX detectors and a Triton repository variant.

    python scripts/build_engines.py --precision fp16 --out /models            # on a GPU
    python scripts/build_engines.py --precision int8 --calib-frames frames/ --out /models
    python scripts/build_engines.py --dry-run --precision fp16 --out /tmp/m   # anywhere

Builds ``vehicle_detector``'s network (dynamic batch, default profile 1/8/32; input side
``--size``, by default the one vehicle_detector's config declares) with the
TensorRT Python API when present, else ``trtexec``; writes the plan and a repository
variant in which ``vehicle_detector`` calls the engine (``vehicle_detector_net``,
``platform: "tensorrt_plan"``) over BLS. ``--dry-run`` prints the build command and writes
the configs without building (for machines without TensorRT).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ensemble.ops.engine_build import (
    EngineBuildError,
    EngineSpec,
    Profile,
    build_with_tensorrt,
    calibration_batches,
    find_builder,
    plan_config,
    trtexec_command,
)
from ensemble.ops.onnx_tools import validate_yolo_onnx
from ensemble.ops.variants import assemble, image_side, with_image_side

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--onnx", type=Path, default=REPO / "model_repository/vehicle_detector/1/model.onnx"
    )
    p.add_argument("--out", type=Path, required=True, help="repository variant to create")
    p.add_argument(
        "--size", type=int,
        help="input side of the engine and of the variant's vehicle_detector (default: "
        "model_repository/vehicle_detector/config.pbtxt's; the ONNX's own when it is static)",
    )  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--workspace-mib", type=int, default=4096)
    p.add_argument("--calib-frames", type=Path, help="folder of frames for INT8 calibration")
    p.add_argument("--calibration-cache", type=Path, help="INT8 calibration cache (read/write)")
    p.add_argument("--dry-run", action="store_true", help="print the build, write configs only")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    fixed, classes = validate_yolo_onnx(args.onnx)  # fixed: 0 for a dynamic input side
    config = REPO / "model_repository" / "vehicle_detector" / "config.pbtxt"
    size = args.size or fixed or image_side(config.read_text())
    if fixed and size != fixed:
        raise EngineBuildError(f"{args.onnx} takes {fixed}x{fixed} only, not --size {size}")
    if size % 32 or not 32 <= size <= 4096:
        raise EngineBuildError(f"--size must be a multiple of 32 in 32..4096, got {size}")
    plan = args.out.parent / f"{args.out.name}-vehicle_detector.{args.precision}.plan"
    cache = args.calibration_cache or (
        plan.with_suffix(".calib") if args.precision == "int8" else None
    )
    spec = EngineSpec(
        onnx=args.onnx, plan=plan, size=size, outputs=(4 + classes, _anchors(size)),
        precision=args.precision, workspace_mib=args.workspace_mib, calibration_cache=cache,
        profile=Profile(args.min_batch, args.opt_batch, args.max_batch),
    )  # fmt: skip
    builder = find_builder()
    calibration = None
    if args.precision == "int8" and args.calib_frames:
        calibration = calibration_batches(args.calib_frames, size, batch=args.opt_batch)
        print(f"calibration: {len(calibration)} frames from {args.calib_frames}", file=sys.stderr)
    if args.dry_run:
        print(" ".join(trtexec_command(spec)))
        plan.write_bytes(b"")  # placeholder so the variant can be assembled and inspected
    elif builder == "python":
        build_with_tensorrt(spec, calibration)
    elif builder == "trtexec":
        subprocess.run(trtexec_command(spec), check=True)
    else:
        raise EngineBuildError(
            "TensorRT not found (no `tensorrt` Python package, no trtexec): run this in NVIDIA's "
            "Triton/TensorRT container on a GPU, or use --dry-run to see the command"
        )
    out = assemble("tensorrt", args.out, plan=plan)
    (out / "vehicle_detector_net" / "config.pbtxt").write_text(plan_config(spec))
    det = out / "vehicle_detector" / "config.pbtxt"
    det.write_text(with_image_side(det.read_text(), size))
    print(f"variant repository: {out} (tritonserver --model-repository {out})", file=sys.stderr)
    return 0


def _anchors(size: int) -> int:
    """YOLOv8 anchor count for a square input: strides 8, 16, 32."""
    return sum((size // s) ** 2 for s in (8, 16, 32))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (EngineBuildError, ValueError) as exc:
        print(f"build_engines: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
