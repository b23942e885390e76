"""Repository variants: the BLS detector against a separately served network."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from conftest import MODEL_REPOSITORY, start_triton, stop_triton
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from edge_client.triton_client import AlprClient
from ensemble.ops.variants import VariantError, assemble, available, with_net_model


def test_variants_listed() -> None:
    assert {"tensorrt", "onnxruntime", "python-net"} <= set(available())


def test_with_net_model_adds_parameter_and_keeps_rest() -> None:
    text = (MODEL_REPOSITORY / "vehicle_detector" / "config.pbtxt").read_text()
    cfg = text_format.Parse(with_net_model(text), mc.ModelConfig())
    assert cfg.parameters["net_model"].string_value == "vehicle_detector_net"
    assert cfg.parameters["classes"].string_value == "2,3,5,7"
    assert cfg.HasField("dynamic_batching")


def test_tensorrt_variant_needs_a_plan(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(VariantError, match="engine"):
        assemble("tensorrt", tmp_path / "trt", plan=tmp_path / "missing.plan")


def test_tensorrt_variant_assembles(weights: Path, tmp_path: Path) -> None:
    plan = tmp_path / "fake.plan"
    plan.write_bytes(b"engine bytes")
    out = assemble("tensorrt", tmp_path / "trt", plan=plan)
    net = text_format.Parse(
        (out / "vehicle_detector_net/config.pbtxt").read_text(), mc.ModelConfig()
    )
    assert net.platform == "tensorrt_plan" and (out / "vehicle_detector_net/1/model.plan").is_file()
    assert (out / "alpr/config.pbtxt").is_file()


def test_unknown_variant(tmp_path: Path) -> None:
    with pytest.raises(VariantError, match="unknown variant"):
        assemble("nope", tmp_path / "x")


@pytest.mark.server
def test_bls_variant_matches_default(weights: Path, tmp_path: Path, openalpr_eu: Path) -> None:
    """vehicle_detector calling vehicle_detector_net over BLS gives the in-process result.
    The server loads just those two models (the others take no part in it)."""
    repo = assemble("python-net", tmp_path / "repo")
    only = ["--model-control-mode=explicit", "--load-model=vehicle_detector",
            "--load-model=vehicle_detector_net"]  # fmt: skip
    server = start_triton(repo, tmp_path / "triton.log", extra_args=only)
    try:
        frames = [cv2.imread(str(p)) for p in sorted(openalpr_eu.glob("*.jpg"))[:4]]
        got = AlprClient(server.grpc_url).detect_vehicles(frames)
    finally:
        stop_triton(server)
    import numpy as np

    from ensemble.engines import VehicleDetector
    from ensemble.preprocess import letterbox

    det = VehicleDetector(weights / "vehicle_detector/1/model.onnx")
    boxed = np.stack([letterbox(f[..., ::-1])[0] for f in frames])
    want = det.detect(boxed, [f.shape[:2] for f in frames])
    assert any(got)
    for g, (boxes, scores, _) in zip(got, want, strict=True):
        assert len(g) == len(boxes)
        for d, b, s in zip(g, boxes, scores, strict=True):
            assert [d.box.x1, d.box.y1, d.box.x2, d.box.y2] == pytest.approx(b.tolist(), abs=0.5)
            assert d.score == pytest.approx(float(s), abs=1e-3)
