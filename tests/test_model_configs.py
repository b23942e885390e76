"""Every config.pbtxt parses as a Triton ModelConfig and agrees with ensemble.contracts
(tensor names exactly the contract's constants) and ensemble.params (every Python-backend
model's ``parameters`` validate against its typed model: a typo'd key fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble import contracts as c
from ensemble.params import PARAMS, load_params, model_kind
from ensemble.serving import BUILDERS

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "model_repository").glob("*/config.pbtxt"))
VARIANTS = sorted((REPO / "config" / "triton").glob("*/*/config.pbtxt"))


def load(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def as_triton_json(cfg: mc.ModelConfig) -> dict:
    """The config as Triton hands it to a Python model's ``initialize`` (``model_config``)."""
    return json_format.MessageToDict(cfg, preserving_proto_field_name=True)


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
        "plate_locator",
        "plate_ocr",
        "alpr",
    }


def test_shapes_match_contracts() -> None:
    cfg = {p.parent.name: load(p) for p in CONFIGS}
    assert dims(cfg["vehicle_detector"], "IMAGE") == [c.DET_SIZE, c.DET_SIZE, 3]
    assert dims(cfg["vehicle_detector"], "BOXES") == [c.MAX_DETECTIONS, 4]
    assert dims(cfg["plate_locator"], "IMAGE") == [c.LOCATOR_SIZE, c.LOCATOR_SIZE, 3]
    assert dims(cfg["plate_locator"], "BOXES") == [c.MAX_DETECTIONS, 4]
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


# --- tensor names: exactly the contract's constants ------------------------------------------
@pytest.mark.parametrize("path", CONFIGS + VARIANTS, ids=lambda p: str(p.relative_to(REPO)))
def test_tensor_names_are_the_contracts(path: Path) -> None:
    cfg = load(path)
    want = c.MODEL_TENSORS[cfg.name]
    assert tuple(i.name for i in cfg.input) == want.inputs
    assert tuple(o.name for o in cfg.output) == want.outputs


def test_ensemble_maps_only_contract_names() -> None:
    ens = load(REPO / "model_repository" / c.ALPR / "config.pbtxt")
    for step in ens.ensemble_scheduling.step:
        tensors = c.MODEL_TENSORS[step.model_name]
        assert set(step.input_map) <= set(tensors.inputs)
        assert set(step.output_map) <= set(tensors.outputs)
        named = set(c.MODEL_TENSORS[c.ALPR].inputs + c.MODEL_TENSORS[c.ALPR].outputs)
        for tensor in [*step.input_map.values(), *step.output_map.values()]:
            assert tensor in named | {c.ALPR_PLATE_CROPS}, f"{tensor} is no contract name"


# --- parameters: every Python-backend model's validate against its typed model --------------
PYTHON_MODELS = [p for p in CONFIGS + VARIANTS if load(p).backend == "python"]


@pytest.mark.parametrize("path", PYTHON_MODELS, ids=lambda p: str(p.relative_to(REPO)))
def test_parameters_validate_against_the_typed_model(path: Path) -> None:
    model_py = path.parent / "1" / "model.py"
    kind = model_kind(model_py.read_text())
    assert kind in PARAMS and kind in BUILDERS, f"{model_py}: serves unknown kind {kind!r}"
    config = as_triton_json(load(path))
    params = load_params(PARAMS[kind], config, env={})  # raises naming the bad key
    for key, value in config.get("parameters", {}).items():  # each key is a field, read
        assert key in type(params).model_fields and value["string_value"] != ""


def test_native_backends_take_no_python_parameters() -> None:
    for path in CONFIGS + VARIANTS:
        cfg = load(path)
        if cfg.backend != "python":
            assert not cfg.parameters, f"{path}: parameters only Python models read"
