"""Typed model parameters (ensemble.params) and the engine registries (ensemble.registry).

No server: the load-time validation is what ``initialize`` runs, called here on the
parsed config of a temp copy of a model's config.pbtxt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from ensemble import registry
from ensemble.contracts import PLATE_ALPHABET
from ensemble.params import (
    PARAMS,
    ModelParams,
    ModelParamsError,
    PlateDetectorParams,
    PlateEngine,
    PlateLocatorParams,
    PlateOcrParams,
    RawNetParams,
    ReaderName,
    Refiner,
    VehicleDetectorParams,
    load_params,
    parse_params,
    threads_per_instance,
)
from ensemble.serving import BUILDERS, build_plate_detector, build_plate_ocr, check_tensors

OCR, DET, VEH, NET = PlateOcrParams, PlateDetectorParams, VehicleDetectorParams, RawNetParams
REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "model_repository"


def triton_config(path: Path) -> dict[str, Any]:
    """A config.pbtxt as Triton passes it to ``initialize`` (parsed ``model_config``)."""
    cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
    return json_format.MessageToDict(cfg, preserving_proto_field_name=True)


def typo_copy(tmp_path: Path, model: str, old: str, new: str) -> tuple[dict[str, str], dict]:
    """A temp copy of ``model``'s folder with ``old`` replaced by ``new`` in its config:
    (Triton's ``args``, the parsed config)."""
    text = (MODELS / model / "config.pbtxt").read_text()
    assert old in text
    folder = tmp_path / model
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text.replace(old, new))
    args = {"model_repository": str(folder), "model_version": "1", "model_name": model}
    return args, triton_config(folder / "config.pbtxt")


# --- the registries and the literals agree ---------------------------------------------------
@pytest.mark.parametrize(
    ("literal", "table"),
    [(ReaderName, registry.READERS), (PlateEngine, registry.PLATE_ENGINES),
     (Refiner, registry.REFINERS)],
    ids=["readers", "plate_engines", "refiners"],
)  # fmt: skip
def test_each_literal_is_its_registry(literal: Any, table: dict[str, Any]) -> None:
    assert set(get_args(literal)) == set(table)


def test_every_builder_has_typed_parameters() -> None:
    assert set(PARAMS) == set(BUILDERS)
    assert all(kind == cls.KIND for kind, cls in PARAMS.items())


@pytest.mark.parametrize("cls", list(PARAMS.values()), ids=lambda c: c.__name__)
def test_every_field_is_described_and_keys_are_strict(cls: type[ModelParams]) -> None:
    assert cls.model_config.get("extra") == "forbid"
    for name, field in cls.model_fields.items():
        assert field.description, f"{cls.__name__}.{name} has no description"
    assert set(cls.ENV) <= set(cls.model_fields)


# --- string values in, typed values out ------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "raw", "env", "want"),
    [
        (VEH, {}, {}, {"classes": (2, 3, 5, 7), "agnostic_nms": True,
                                         "score_threshold": 0.25, "net_model": None}),
        (VEH, {"classes": "2, 7", "agnostic_nms": "false"}, {},
         {"classes": (2, 7), "agnostic_nms": False}),
        (VEH, {"net_model": "", "intra_op_threads": ""}, {},
         {"net_model": None, "threads": None}),  # empty: not set
        (VEH, {"net_model": "vehicle_detector_net"}, {},
         {"net_model": "vehicle_detector_net", "net_input": "images", "net_output": "output0"}),
        (DET, {}, {}, {"engine": "auto", "refine": "ppocr", "yolo_max_size": 640,
                                       "fallback_max_side": 0, "keep_box": False}),
        (DET, {"engine": "yolo"}, {"OVR_ALPR_PLATE_ENGINE": "ppocr"},
         {"engine": "ppocr"}),  # the environment wins
        (DET, {"engine": "yolo"}, {"OVR_ALPR_PLATE_ENGINE": ""},
         {"engine": "yolo"}),  # an empty variable is unset
        (OCR, {}, {}, {"reader": "fused", "alphabet": PLATE_ALPHABET,
                                  "fuse_ppocr_weight": 1.0}),
        (OCR, {"reader": "plate", "intra_op_threads": "2"},
         {"OVR_ALPR_PLATE_READER": "ppocr"}, {"reader": "ppocr", "threads": 2}),
        (OCR, {"alphabet": ""}, {}, {"alphabet": PLATE_ALPHABET}),
        (NET, {"onnx_file": "model.onnx"}, {}, {"net_input": "images"}),
    ],
)  # fmt: skip
def test_values_are_typed(
    cls: type[ModelParams], raw: dict[str, str], env: dict[str, str], want: dict[str, Any]
) -> None:
    params = parse_params(cls, "m", raw, env)
    assert {k: getattr(params, k) for k in want} == want


@pytest.mark.parametrize(
    ("cls", "raw", "env", "message"),
    [
        (OCR, {"redaer": "fused"}, {},
         "m: unknown parameter 'redaer' (expected one of intra_op_threads, engine, reader,"),
        (OCR, {"reader": "tesseract"}, {},
         "m: parameter 'reader'='tesseract': use fused, plate or ppocr"),
        (OCR, {}, {"OVR_ALPR_PLATE_READER": "paddle"},
         "parameter 'reader'='paddle' (from OVR_ALPR_PLATE_READER): use fused, plate or ppocr"),
        (OCR, {"engine": "tensorrt"}, {}, "parameter 'engine'='tensorrt': use onnxruntime"),
        (OCR, {"alphabet": "ABCA"}, {}, "'alphabet'='ABCA': alphabet 'ABCA' repeats"),
        (OCR, {"fuse_ppocr_weight": "0"}, {}, "'fuse_ppocr_weight'='0': Input should be"),
        (OCR, {"plate_file": "../plate_rec.onnx"}, {}, "'plate_file'='../plate_rec.onnx'"),
        (DET, {"engine": "tesseract"}, {}, "use auto, yolo or ppocr"),
        (DET, {}, {"OVR_ALPR_PLATE_ENGINE": "tesseract"},
         "(from OVR_ALPR_PLATE_ENGINE): use auto, yolo or ppocr"),
        (DET, {"refine": "yes"}, {}, "'refine'='yes': use ppocr or none"),
        (DET, {"yolo_min_size": "800"}, {},
         "m: yolo_min_size 800 > yolo_max_size 640"),
        (DET, {"fallback_max_side": "-1"}, {}, "'fallback_max_side'='-1'"),
        (DET, {"keep_box": "sometimes"}, {}, "'keep_box'='sometimes'"),
        (VEH, {"score_threshold": "1.5"}, {},
         "'score_threshold'='1.5': Input should be less than or equal to 1"),
        (VEH, {"classes": "car,bus"}, {}, "'classes'='car,bus'"),
        (VEH, {"intra_op_threads": "-2"}, {}, "'intra_op_threads'='-2'"),
        (VEH, {"score_treshold": "0.3"}, {}, "unknown parameter 'score_treshold'"),
        (NET, {"classes": "2"}, {}, "unknown parameter 'classes'"),
    ],
)  # fmt: skip
def test_bad_parameters_name_the_model_and_key(
    cls: type[ModelParams], raw: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ModelParamsError) as err:
        parse_params(cls, "m", raw, env)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)  # what the model loaders already catch


# --- load time: a typo'd copy of a committed config fails its model's load ------------------
@pytest.mark.parametrize(
    ("model", "old", "new", "message"),
    [
        ("plate_ocr", '"reader"', '"redaer"', "plate_ocr: unknown parameter 'redaer'"),
        ("plate_ocr", '"fused"', '"fussed"', "plate_ocr: parameter 'reader'='fussed'"),
        ("plate_detector", '"refine"', '"refnie"', "plate_detector: unknown parameter 'refnie'"),
        ("plate_detector", '"yolo_max_size", value: { string_value: "640"',
         '"yolo_max_size", value: { string_value: "6x40"', "'yolo_max_size'='6x40'"),
        ("vehicle_detector", '"iou_threshold"', '"iou_treshold"',
         "vehicle_detector: unknown parameter 'iou_treshold'"),
    ],
)  # fmt: skip
def test_typo_in_a_config_fails_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, old: str, new: str, message: str
) -> None:
    monkeypatch.delenv("OVR_ALPR_PLATE_READER", raising=False)
    monkeypatch.delenv("OVR_ALPR_PLATE_ENGINE", raising=False)
    args, config = typo_copy(tmp_path, model, old, new)
    with pytest.raises(ModelParamsError, match=message.replace("(", r"\(")):
        BUILDERS[model](args, config, None)


def test_committed_configs_load_as_typed_parameters() -> None:
    got = {m: load_params(PARAMS[m], triton_config(MODELS / m / "config.pbtxt"), env={})
           for m in ("vehicle_detector", "plate_detector", "plate_ocr")}  # fmt: skip
    assert got["plate_ocr"] == PlateOcrParams()  # the config spells out the defaults
    assert got["plate_detector"] == PlateDetectorParams()
    assert got["vehicle_detector"] == VehicleDetectorParams()


@pytest.mark.parametrize(
    ("instances", "cores", "threads"),
    [(1, 2, None), (1, 16, None), (2, 2, 1), (2, 16, 8), (3, 16, 5), (4, 2, 1), (2, 1, 1)],
)
def test_cores_are_split_among_instances(instances: int, cores: int, threads: int | None) -> None:
    assert threads_per_instance(instances, cores) == threads


def group(*counts: int, kind: str = "KIND_CPU") -> dict[str, Any]:
    return {"instance_group": [{"count": c, "kind": kind} for c in counts]}


@pytest.mark.parametrize(
    ("config", "env", "threads"),
    [
        ({}, {}, 0),  # no instance_group: one instance, onnxruntime's default
        (group(1), {}, 0),
        (group(2), {}, 4),  # 8 cores / 2 instances
        (group(1, 3), {}, 2),  # every CPU group counts
        (group(2, kind="KIND_GPU"), {}, 0),  # GPU instances do not share the host's cores
        (group(2), {"OVR_ALPR_ORT_THREADS": "3"}, 0),  # the operator's choice wins (engines)
        ({**group(2), "parameters": {"intra_op_threads": {"string_value": "6"}}}, {}, 6),
    ],
)
def test_unset_threads_share_the_cores_among_instances(
    config: dict[str, Any], env: dict[str, str], threads: int
) -> None:
    assert load_params(PlateLocatorParams, config, env=env, cores=8).intra_op_threads == threads


def test_the_locator_runs_two_single_threaded_instances_on_two_cores() -> None:
    config = triton_config(MODELS / "plate_locator" / "config.pbtxt")
    assert load_params(PlateLocatorParams, config, env={}, cores=2).threads == 1


@pytest.mark.parametrize("model", ["vehicle_detector", "plate_detector", "plate_ocr"])
def test_a_renamed_tensor_fails_the_load(tmp_path: Path, model: str) -> None:
    check_tensors(model, triton_config(MODELS / model / "config.pbtxt"))  # committed: agree
    old = '{ name: "PLATE_COUNT"' if model != "vehicle_detector" else '{ name: "COUNT"'
    _, config = typo_copy(tmp_path, model, old, '{ name: "N_PLATES"')
    with pytest.raises(ValueError, match=f"{model}: tensors .* differ from ensemble.contracts"):
        check_tensors(model, config)
    check_tensors("raw_net", config)  # its names are parameters


# --- engines chosen by their registry --------------------------------------------------------
class Built:
    def __init__(self, name: str, vdir: Path, params: ModelParams) -> None:
        self.name, self.vdir, self.params = name, vdir, params


def fake_builders(monkeypatch: pytest.MonkeyPatch, table: dict[str, Any]) -> None:
    for name in list(table):
        monkeypatch.setitem(table, name, lambda v, p, name=name: Built(name, v, p))


@pytest.mark.parametrize(
    ("config", "env", "built"),
    [({}, None, "fused"), ({"reader": "plate"}, None, "plate"),
     ({"reader": "plate"}, "ppocr", "ppocr"), ({"reader": "ppocr"}, "", "ppocr")],
)  # fmt: skip
def test_plate_ocr_reader_comes_from_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict, env: str | None, built: str
) -> None:
    fake_builders(monkeypatch, registry.READERS)
    monkeypatch.setenv("OVR_ALPR_PLATE_READER", env or "")
    params = {"parameters": {k: {"string_value": v} for k, v in config.items()}}
    args = {"model_repository": str(tmp_path), "model_version": "1"}
    reader: Any = build_plate_ocr(args, params).reader
    assert reader.name == built and reader.vdir == tmp_path / "1"
    assert registry.build_reader(tmp_path, config, threads=3).params.threads == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("engine", "yolo_file", "built"),
    [("auto", True, "yolo"), ("auto", False, "ppocr"), ("yolo", False, "yolo"),
     ("ppocr", True, "ppocr")],
)  # fmt: skip
def test_plate_detector_engine_comes_from_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, yolo_file: bool, built: str
) -> None:
    fake_builders(monkeypatch, registry.PLATE_ENGINES)
    monkeypatch.delenv("OVR_ALPR_PLATE_ENGINE", raising=False)
    (tmp_path / "1").mkdir()
    if yolo_file:
        (tmp_path / "1" / "yolo_plate.onnx").write_bytes(b"")
    config = {"parameters": {"engine": {"string_value": engine}}}
    args = {"model_repository": str(tmp_path), "model_version": "1"}
    proposer: Any = build_plate_detector(args, config).proposer
    assert proposer.name == built


def test_fused_reader_serves_ppocr_while_the_plate_model_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "ppocr_reader", lambda v, p: Built("ppocr", v, p))
    got: Any = registry.fused_reader(tmp_path, PlateOcrParams())
    assert got.name == "ppocr"


@pytest.mark.parametrize(
    ("arena", "env", "enabled"),
    [
        (True, None, True),
        (False, None, False),
        (True, "0", False),
        (False, "1", True),
        (False, "yes", False),
    ],
)
def test_memory_arena_follows_the_parameter_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arena: bool, env: str | None, enabled: bool
) -> None:
    import onnx
    from onnx import TensorProto, helper

    from ensemble.engines import session

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    if env is None:
        monkeypatch.delenv("OVR_ALPR_ORT_ARENA", raising=False)
    else:
        monkeypatch.setenv("OVR_ALPR_ORT_ARENA", env)
    assert session(path, arena=arena).get_session_options().enable_cpu_mem_arena is enabled


def test_the_locator_keeps_the_arena_with_batches_of_at_most_8() -> None:
    config = triton_config(MODELS / "plate_locator" / "config.pbtxt")
    assert load_params(PlateLocatorParams, config, env={}).memory_arena is True
    assert config["max_batch_size"] == 8  # the arena holds what the largest batch needed
