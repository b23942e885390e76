"""Typed ``parameters`` of every Python-backend model, validated when the model loads.

Triton hands a model its ``config.pbtxt`` ``parameters { key: ... value { string_value:
... } }`` as strings. Each model's parameters are one pydantic model here (unknown keys
rejected, every field described and bounded); :func:`load_params` turns the parsed config
into it, so a typo'd key or a bad value fails the model's load with the model and the key
in the message instead of being silently ignored.

Precedence: an environment variable listed in a model's ``ENV`` (e.g.
``OVR_ALPR_PLATE_READER``) > the config's value > the field's default. An empty string
(in the config or the environment) means "not set".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .contracts import (
    COCO_VEHICLE_CLASSES,
    DET_SIZE,
    MAX_IMAGE_SIDE,
    NET_INPUT,
    NET_OUTPUT,
    PLATE_ALPHABET,
    PLATE_DETECTOR,
    PLATE_LOCATOR,
    PLATE_OCR,
    VEHICLE_DETECTOR,
)

# The engine literals; each is the key set of a registry in :mod:`ensemble.registry`
# (``tests/test_model_params.py`` checks that they agree).
ReaderName = Literal["fused", "plate", "ppocr"]
PlateEngine = Literal["yolo", "ppocr"]
Refiner = Literal["ppocr", "none"]
OcrRuntime = Literal["onnxruntime"]

FileName = Annotated[
    str,
    Field(min_length=1, pattern=r"^[^/\\]+$", description="a file in the model's version folder"),
]
TensorName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$")]
Threads = Annotated[
    int,
    Field(
        ge=0,
        le=256,
        description="onnxruntime intra-op threads; 0: OVR_ALPR_ORT_THREADS, else the usable "
        "cores split among the model's CPU instances (onnxruntime's default for one instance)",
    ),
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class ModelParamsError(ValueError):
    """A model's parameters are unusable; the message names the model and the key."""


class ModelParams(BaseModel):
    """Base of every model's parameters: strict keys, values coerced from strings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[str]  # the model kind (``make_model(kind)``) these parameters are for
    ENV: ClassVar[Mapping[str, str]] = {}  # parameter -> environment variable overriding it

    intra_op_threads: Threads = 0

    @property
    def threads(self) -> int | None:
        """``intra_op_threads`` as onnxruntime's sessions take it (None: the default)."""
        return self.intra_op_threads or None


class VehicleDetectorParams(ModelParams):
    """``vehicle_detector``: YOLO (COCO) on letterboxed frames, NMS in the model."""

    KIND: ClassVar[str] = VEHICLE_DETECTOR

    onnx_file: FileName = Field("model.onnx", description="the YOLO network (in-process ONNX)")
    classes: tuple[Annotated[int, Field(ge=0, le=999)], ...] = Field(
        tuple(COCO_VEHICLE_CLASSES),
        min_length=1,
        description="class ids kept, comma-separated (COCO: 2 car, 3 motorcycle, 5 bus, 7 truck)",
    )
    score_threshold: Probability = Field(0.25, description="detections below are dropped")
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0, description="NMS overlap threshold")
    agnostic_nms: bool = Field(True, description="NMS across classes (a car is not also a truck)")
    net_model: Annotated[str, Field(min_length=1)] | None = Field(
        None,
        description="a Triton model serving the bare network, called over BLS instead of "
        "onnx_file (set by the tensorrt / onnxruntime / python-net variants)",
    )
    net_input: TensorName = Field(NET_INPUT, description="net_model's input tensor")
    net_output: TensorName = Field(NET_OUTPUT, description="net_model's output tensor")

    @field_validator("classes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


class PlateDetectorParams(ModelParams):
    """``plate_detector``: plate boxes and rectified recogniser crops per image."""

    KIND: ClassVar[str] = PLATE_DETECTOR

    ENV: ClassVar[Mapping[str, str]] = {"engine": "OVR_ALPR_PLATE_ENGINE"}

    engine: Literal["auto", PlateEngine] = Field(
        "auto",
        description="yolo: the YOLO plate model (+ refine); ppocr: the PP-OCR text detector "
        "alone; auto: yolo when yolo_file is provisioned, else ppocr",
    )
    det_file: FileName = Field("ppocr_det.onnx", description="the PP-OCR text detector")
    yolo_file: FileName = Field("yolo_plate.onnx", description="the YOLO plate detector")
    refine: Refiner = Field(
        "ppocr",
        description="ppocr: tight, level text lines found inside each YOLO box; none: the "
        "YOLO boxes read as they are",
    )
    score_threshold: Probability = Field(0.25, description="YOLO plate boxes below are dropped")
    yolo_min_size: int = Field(
        320, ge=32, le=MAX_IMAGE_SIDE, description="smallest letterbox side (dynamic networks)"
    )
    yolo_max_size: int = Field(
        DET_SIZE, ge=32, le=MAX_IMAGE_SIDE, description="largest letterbox side"
    )
    fallback_max_side: int = Field(
        0,
        ge=0,
        le=MAX_IMAGE_SIDE,
        description="an image up to this many px with no YOLO plate is read by the PP-OCR "
        "proposer instead; 0: off",
    )
    keep_box: bool = Field(False, description="also propose each YOLO box itself after its lines")

    @model_validator(mode="after")
    def _sizes_ordered(self) -> PlateDetectorParams:
        if self.yolo_min_size > self.yolo_max_size:
            raise ValueError(
                f"yolo_min_size {self.yolo_min_size} > yolo_max_size {self.yolo_max_size}"
            )
        return self


class PlateOcrParams(ModelParams):
    """``plate_ocr``: the plate recogniser."""

    KIND: ClassVar[str] = PLATE_OCR

    ENV: ClassVar[Mapping[str, str]] = {"reader": "OVR_ALPR_PLATE_READER"}

    engine: OcrRuntime = Field("onnxruntime", description="the runtime (the only one built)")
    reader: ReaderName = Field(
        "fused",
        description="plate: OVR-ALPR's plate-trained CTC model (plate_file); ppocr: PP-OCR "
        "rec (rec_file); fused: both on every crop, fused per crop",
    )
    plate_file: FileName = Field("plate_rec.onnx", description="the plate-trained recogniser")
    rec_file: FileName = Field("ppocr_rec.onnx", description="the PP-OCR recogniser")
    alphabet: str = Field(PLATE_ALPHABET, min_length=1, description="characters a plate is read in")
    fuse_ppocr_weight: float = Field(
        1.0, gt=0.0, le=10.0, description="fused: PP-OCR's confidence scaled by this"
    )

    @field_validator("alphabet")
    @classmethod
    def _distinct(cls, value: str) -> str:
        if len(set(value)) != len(value):
            raise ValueError(f"alphabet {value!r} repeats a character")
        return value


class PlateLocatorParams(ModelParams):
    """``plate_locator``: the YOLO plate model alone on letterboxed frames (per-frame plate
    finding for plate cameras; reading happens once per track, elsewhere)."""

    KIND: ClassVar[str] = PLATE_LOCATOR

    onnx_file: FileName = Field(
        "yolo_plate.onnx", description="the YOLO plate network (dynamic input side)"
    )
    score_threshold: Probability = Field(0.25, description="plate boxes below are dropped")
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0, description="NMS overlap threshold")
    memory_arena: bool = Field(
        True,
        description="onnxruntime's CPU memory arena (OVR_ALPR_ORT_ARENA=0/1 overrides): on, "
        "an instance keeps what its largest batch needed (~450 MB at 16 frames); off, its "
        "memory follows each batch, at 10-15 % of the throughput of 8 cameras",
    )


class RawNetParams(ModelParams):
    """``vehicle_detector_net`` (python-net variant): the bare YOLO network."""

    KIND: ClassVar[str] = "raw_net"

    onnx_file: FileName = Field("model.onnx", description="the YOLO network")
    net_input: TensorName = Field(NET_INPUT, description="the served input tensor")
    net_output: TensorName = Field(NET_OUTPUT, description="the served output tensor")


# Model kind (``make_model(kind)`` in each model.py) -> its parameters.
PARAMS: dict[str, type[ModelParams]] = {
    cls.KIND: cls
    for cls in (
        VehicleDetectorParams,
        PlateDetectorParams,
        PlateOcrParams,
        PlateLocatorParams,
        RawNetParams,
    )
}

P = TypeVar("P", bound=ModelParams)


def string_params(config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a parsed Triton model config (``{key: {"string_value": v}}``)."""
    params = config.get("parameters", {}) or {}
    return {str(k): str((v or {}).get("string_value", "")) for k, v in params.items()}


def _choices(annotation: Any) -> tuple[str, ...]:
    """The allowed strings of a Literal field, else ()."""
    if get_origin(annotation) is not Literal:
        return ()
    return tuple(a for a in get_args(annotation) if isinstance(a, str))


def _spoken(choices: tuple[str, ...]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def parse_params(
    cls: type[P], model: str, raw: Mapping[str, str], env: Mapping[str, str] | None = None
) -> P:
    """Validate string parameters ``raw`` of ``model`` as ``cls``, after the environment
    overrides in ``cls.ENV`` (``env``: ``os.environ`` by default). Raises
    :class:`ModelParamsError` naming the model and the key."""
    env = os.environ if env is None else env
    fields = cls.model_fields
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ModelParamsError(
            f"{model}: unknown parameter {unknown[0]!r} (expected one of {', '.join(fields)})"
        )
    values = {k: v for k, v in raw.items() if v != ""}
    source: dict[str, str] = {}
    for key, var in cls.ENV.items():
        if env.get(var):
            values[key], source[key] = env[var], f" (from {var})"
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        key = str(err["loc"][0]) if err["loc"] else ""
        if not key:  # a cross-field rule
            raise ModelParamsError(f"{model}: {msg}") from None
        choices = _choices(fields[key].annotation) if key in fields else ()
        why = f"use {_spoken(choices)}" if choices else msg
        got = values.get(key)
        raise ModelParamsError(
            f"{model}: parameter {key!r}={got!r}{source.get(key, '')}: {why}"
        ) from None


def cpu_instances(config: Mapping[str, Any]) -> int:
    """How many CPU instances of the model Triton runs (``instance_group``; 1 without)."""
    groups = config.get("instance_group") or []
    n = sum(int(g.get("count", 1)) for g in groups if g.get("kind", "KIND_CPU") == "KIND_CPU")
    return max(1, n)


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_instance(instances: int, cores: int) -> int | None:
    """Intra-op threads for each of ``instances`` CPU instances sharing ``cores``: the
    cores split among them (at least 1 each), so instances running at once do not fight
    over the same cores; None (onnxruntime's default, every core) for a single one."""
    return None if instances <= 1 else max(1, cores // instances)


def load_params(
    cls: type[P],
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> P:
    """The typed parameters of a model from its parsed config (what Triton passes to
    ``initialize``); the error names the config's model (``name``, else ``cls.KIND``).

    ``intra_op_threads`` 0 (not set) with ``OVR_ALPR_ORT_THREADS`` unset and several CPU
    instances becomes the usable ``cores`` split among them (``threads_per_instance``)."""
    model = str(config.get("name") or cls.KIND)
    params = parse_params(cls, model, string_params(config), env)
    env = os.environ if env is None else env
    if params.intra_op_threads or env.get("OVR_ALPR_ORT_THREADS"):
        return params
    split = threads_per_instance(cpu_instances(config), cores or usable_cores())
    return params if split is None else params.model_copy(update={"intra_op_threads": split})


def model_kind(model_py: str) -> str | None:
    """The kind a ``model.py`` serves (``make_model("<kind>")``), None when it has none."""
    found = re.search(r"make_model\(\s*[\"'](\w+)[\"']\s*\)", model_py)
    return found.group(1) if found else None
