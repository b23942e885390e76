"""Every config.pbtxt parses as a Triton ModelConfig and agrees with ensemble.contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble import contracts as c

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "model_repository").glob("*/config.pbtxt"))
VARIANTS = sorted((REPO / "config" / "triton").glob("*/*/config.pbtxt"))


def load(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def dims(cfg: mc.ModelConfig, name: str) -> list[int]:
    for t in list(cfg.input) + list(cfg.output):
        if t.name == name:
            return list(t.dims)
    raise KeyError(name)


@pytest.mark.parametrize("path", CONFIGS + VARIANTS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_parses_and_names_its_folder(path: Path) -> None:
    cfg = load(path)
    assert cfg.name == path.parent.name
    assert cfg.max_batch_size > 0
    if cfg.platform != "ensemble":
        assert cfg.HasField("dynamic_batching"), "every composing model batches dynamically"


def test_expected_models_present() -> None:
    assert {p.parent.name for p in CONFIGS} == {
        "vehicle_detector",
        "plate_detector",
        "plate_ocr",
        "alpr",
    }


def test_shapes_match_contracts() -> None:
    cfg = {p.parent.name: load(p) for p in CONFIGS}
    assert dims(cfg["vehicle_detector"], "IMAGE") == [c.DET_SIZE, c.DET_SIZE, 3]
    assert dims(cfg["vehicle_detector"], "BOXES") == [c.MAX_DETECTIONS, 4]
    assert dims(cfg["plate_detector"], "PLATE_CROPS") == [
        c.MAX_PLATES,
        c.REC_HEIGHT,
        c.REC_WIDTH,
        3,
    ]
    assert dims(cfg["plate_ocr"], "PLATE_CHAR_CONFIDENCES") == [c.MAX_PLATES, c.MAX_TEXT]
    for model in ("plate_ocr", "alpr"):  # the optional runner-up outputs
        alt_text, alt_confs = c.ALT_OUTPUTS
        assert dims(cfg[model], alt_text) == [c.MAX_PLATES]
        assert dims(cfg[model], alt_confs) == [c.MAX_PLATES, c.MAX_TEXT]


def test_ensemble_wiring_is_consistent() -> None:
    cfgs = {p.parent.name: load(p) for p in CONFIGS}
    ens = cfgs["alpr"]
    produced = {i.name for i in ens.input}
    for step in ens.ensemble_scheduling.step:
        model = cfgs[step.model_name]
        inputs = {i.name: i for i in model.input}
        outputs = {o.name: o for o in model.output}
        for key, value in step.input_map.items():
            assert key in inputs, f"{step.model_name} has no input {key}"
            assert value in produced, f"{value} used before it is produced"
        for key, value in step.output_map.items():
            assert key in outputs, f"{step.model_name} has no output {key}"
            produced.add(value)
        assert model.max_batch_size >= ens.max_batch_size
    for out in ens.output:
        assert out.name in produced


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: str(p.relative_to(REPO)))
def test_tensorrt_variant_nets(path: Path) -> None:
    cfg = load(path)
    if cfg.platform == "tensorrt_plan":
        assert cfg.default_model_filename.endswith(".plan")
        assert dims(cfg, "images") == [3, c.DET_SIZE, c.DET_SIZE]
