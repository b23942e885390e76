"""TensorRT engine building without TensorRT: commands, profiles, calibration data, configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble.ops.engine_build import (
    EngineBuildError,
    EngineSpec,
    Profile,
    calibration_batches,
    find_builder,
    plan_config,
    trtexec_command,
)

REPO = Path(__file__).resolve().parent.parent
SPEC = EngineSpec(Path("m.onnx"), Path("m.plan"))


@pytest.mark.parametrize(
    ("precision", "cache", "present", "absent"),
    [
        ("fp32", None, ["--onnx=m.onnx", "--saveEngine=m.plan"], ["--fp16", "--int8"]),
        ("fp16", None, ["--fp16", "--minShapes=images:1x3x640x640",
                        "--optShapes=images:8x3x640x640", "--maxShapes=images:32x3x640x640"],
         ["--int8"]),
        ("int8", Path("c.cache"), ["--int8", "--fp16", "--calib=c.cache"], []),
    ],
)  # fmt: skip
def test_trtexec_command(
    precision: str, cache: Path | None, present: list[str], absent: list[str]
) -> None:
    spec = EngineSpec(Path("m.onnx"), Path("m.plan"), precision=precision, calibration_cache=cache)  # type: ignore[arg-type]
    cmd = trtexec_command(spec)
    assert cmd[0] == "trtexec"
    for flag in present:
        assert flag in cmd
    for flag in absent:
        assert flag not in cmd


def test_int8_without_cache_is_refused() -> None:
    with pytest.raises(EngineBuildError, match="calibration cache"):
        trtexec_command(EngineSpec(Path("m.onnx"), Path("m.plan"), precision="int8"))


@pytest.mark.parametrize(("lo", "opt", "hi"), [(0, 1, 2), (4, 2, 8), (1, 64, 32), (1, 8, 512)])
def test_bad_profiles(lo: int, opt: int, hi: int) -> None:
    with pytest.raises(EngineBuildError, match="min <= opt <= max"):
        Profile(lo, opt, hi)


def test_plan_config_is_a_valid_triton_config() -> None:
    spec = EngineSpec(Path("m.onnx"), Path("m.plan"), profile=Profile(1, 4, 16))
    cfg = text_format.Parse(plan_config(spec), mc.ModelConfig())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 16
    assert list(cfg.input[0].dims) == [3, 640, 640] and list(cfg.output[0].dims) == [84, 8400]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_calibration_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), rng.integers(0, 255, (360, 480, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    data = calibration_batches(tmp_path, size=320, batch=4)
    assert data.shape == (8, 3, 320, 320) and data.dtype == np.float32
    assert data.min() >= 0.0 and data.max() <= 1.0
    with pytest.raises(EngineBuildError, match="at least 16"):
        calibration_batches(tmp_path, batch=16)
    with pytest.raises(EngineBuildError, match="no calibration images"):
        calibration_batches(_empty(tmp_path), batch=4)


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_no_tensorrt_here_gives_a_clear_error(weights: Path, tmp_path: Path) -> None:
    if find_builder() is not None:
        pytest.skip("TensorRT present on this machine")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/build_engines.py"), "--out", str(tmp_path / "trt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "TensorRT not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_dry_run_writes_a_servable_variant_layout(weights: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/build_engines.py"), "--dry-run", "--precision",
         "int8", "--max-batch", "16", "--out", str(tmp_path / "trt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--int8" in done.stdout and "--maxShapes=images:16x3x640x640" in done.stdout
    out = tmp_path / "trt"
    net = text_format.Parse(
        (out / "vehicle_detector_net/config.pbtxt").read_text(), mc.ModelConfig()
    )
    det = text_format.Parse((out / "vehicle_detector/config.pbtxt").read_text(), mc.ModelConfig())
    assert net.platform == "tensorrt_plan" and net.max_batch_size == 16
    assert det.parameters["net_model"].string_value == "vehicle_detector_net"
    assert (out / "vehicle_detector_net/1/model.plan").exists()
