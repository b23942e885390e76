"""Static int8 quantization of a YOLOv8 detector for CPU serving (``plate_locator``).

The recipe (``RECIPE``, stamped into the provenance so a change re-quantizes):

- onnxruntime static quantization, QDQ format, weights int8 per output channel, activations
  uint8, MinMax calibration (Percentile and Entropy were no better on the evaluation photos);
- calibration frames are rendered by the project itself (``alpr_common.demo_video``,
  a fixed seed and plate list unrelated to the demo's; all ~140 frames of that video: 48
  of them lost more borderline plates), so the result needs no data set and is the same on
  every machine with the same onnxruntime for the same float file (whose torch export
  at fetch time is not byte-identical from machine to machine);
- left in float: the first convolution (the raw image's range) and the Detect head's
  decoding (the DFL box regression, the anchor grid, the final ``Concat`` of pixel
  coordinates with class probabilities: one uint8 scale for both would zero the scores).
  The head's inner convolutions are quantized, its last 1x1 convolutions are not.

On a 2-core AVX-512 VNNI machine the network runs ~1.6x faster than in float at 416 px
(``scripts/bench_locator.py``, ``bench/results/locator.json``), with the per-photo plate
recall written there beside the float model's.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from .onnx_tools import OnnxModelError, validate_yolo_onnx

# Bumped whenever the recipe or the calibration set changes (provisioning re-quantizes).
RECIPE = "qdq-u8s8-perchannel-minmax-v2"
CALIBRATION_SIDE = 416
CALIBRATION_SEED = 7
CALIBRATION_PLATES = (
    "XY34ZZT:uk,GH-482-KL:eu,4MNP921:us,QWE2R45:br,BR4472:us,AA90BCD:uk,TT-009-AB:fr,55RDX7:nl"
)
_HEAD = re.compile(r"^/model\.(\d+)/")


def _head_prefix(graph: onnx.GraphProto) -> str:
    """The Detect module's node-name prefix (``/model.22/`` for YOLOv8n): the module of
    the node producing the graph's output."""
    producer = {o: n for n in graph.node for o in n.output}
    out = producer.get(graph.output[0].name)
    m = _HEAD.match(out.name) if out is not None else None
    if m is None:
        raise OnnxModelError(
            "cannot find the YOLO Detect head by node names (/model.N/...); only Ultralytics "
            "exports can be quantized: serve the float file (onnx_file: yolo_plate.onnx)"
        )
    return m.group(0)


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes left in float: the first convolution and the Detect head except its inner
    convolutions (``cv2.*``/``cv3.*``, not the last 1x1 of each branch)."""
    head = _head_prefix(model.graph)
    keep_float = []
    first_conv = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    for n in model.graph.node:
        if n.name.startswith("/model.0/") or n is first_conv:
            keep_float.append(n.name)
        elif n.name.startswith(head):
            inner = n.op_type == "Conv" and re.search(r"/cv[23]\.\d+/cv[23]\.\d+\.[01]/", n.name)
            if not inner:
                keep_float.append(n.name)
    return keep_float


def calibration_frames(count: int = 0, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """BGR frames of a rendered plate-camera scene (the demo renderer with its own seed and
    plates; ~140 frames): cars approaching and receding, day and dim light. ``count``:
    that many, evenly spaced (0: all)."""

    from alpr_common.demo_video import generate, parse_plates, read_frames

    with tempfile.TemporaryDirectory() as tmp:
        video, _ = generate(
            Path(tmp), seed=seed, fps=5, plates=parse_plates(CALIBRATION_PLATES), font="hershey"
        )
        frames = read_frames(video)
    if not frames:
        raise OnnxModelError("the calibration video decoded to no frames")
    if not count or count >= len(frames):
        return frames
    return frames[:: len(frames) // count][:count]


def _network_input(frame_bgr: np.ndarray, side: int) -> np.ndarray:
    import cv2

    from ensemble.preprocess import letterbox
    from ensemble.yolo import yolo_input

    boxed = cv2.cvtColor(letterbox(frame_bgr, side, fast=True)[0], cv2.COLOR_BGR2RGB)
    return yolo_input(boxed[None])


def quantize_yolo_int8(
    src: Path,
    dst: Path,
    frames: Sequence[np.ndarray] | None = None,
    side: int = CALIBRATION_SIDE,
) -> dict[str, object]:
    """Write the int8 (QDQ) version of the YOLOv8 ONNX ``src`` to ``dst``, calibrated on
    ``frames`` (BGR, any size; default :func:`calibration_frames`). Returns the recipe
    facts for the provenance stamp. Raises :class:`OnnxModelError` for a model it cannot
    quantize (the float model keeps serving)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    validate_yolo_onnx(src)
    model = onnx.load(str(src))
    excluded = float_nodes(model)
    inputs = [i.name for i in model.graph.input]
    frames = list(frames) if frames is not None else calibration_frames()
    if not frames:
        raise OnnxModelError("no calibration frames")
    tensors = [_network_input(f, side) for f in frames]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {inputs[0]: x}

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        partial = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(partial),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
        validate_yolo_onnx(partial)
        staged = dst.with_name(dst.name + ".partial")  # a crash never leaves half a model
        shutil.copyfile(partial, staged)
        staged.replace(dst)
    return {"recipe": RECIPE, "calibration_frames": len(tensors), "calibration_side": side,
            "float_nodes": len(excluded)}  # fmt: skip
