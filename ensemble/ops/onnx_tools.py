"""ONNX graph surgery for exported YOLO detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


class OnnxModelError(ValueError):
    """The ONNX file is not a model we can serve; the message says why."""


def _set_dim0(value_info: onnx.ValueInfoProto, name: str) -> None:
    dims = value_info.type.tensor_type.shape.dim
    if dims:
        dims[0].ClearField("dim_value")
        dims[0].dim_param = name


def make_batch_dynamic(src: Path, dst: Path) -> None:
    """Rewrite a YOLO export with batch fixed at 1 so it accepts any batch size.

    Ultralytics exports with ``dynamic=False`` bake the batch into Reshape target
    shapes (``[1, 64, -1]``, ``[1, 4, 16, 8400]``...). Those leading 1s become 0, which
    ONNX Reshape (allowzero=0) reads as "copy this dimension from the input", i.e. the
    batch; graph inputs/outputs get a symbolic ``batch`` dimension.
    """
    model = onnx.load(str(src))
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue
        shape_name = node.input[1]
        if shape_name in inits:
            arr = numpy_helper.to_array(inits[shape_name])
            if arr.ndim == 1 and arr.size > 1 and arr[0] == 1:
                new = arr.copy()
                new[0] = 0
                inits[shape_name].CopyFrom(
                    numpy_helper.from_array(new.astype(arr.dtype), shape_name)
                )
                changed += 1
        elif shape_name in producers and producers[shape_name].op_type == "Constant":
            attr = producers[shape_name].attribute[0]
            arr = numpy_helper.to_array(attr.t)
            if arr.ndim == 1 and arr.size > 1 and arr[0] == 1:
                new = arr.copy()
                new[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(new.astype(arr.dtype), attr.t.name))
                changed += 1
    for vi in list(graph.input) + list(graph.output):
        _set_dim0(vi, "batch")
    del graph.value_info[:]  # stale fixed-batch shapes; onnxruntime re-infers them
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def validate_yolo_onnx(path: Path) -> tuple[int, int]:
    """Check an ONNX file looks like a YOLOv8-style detector; return (input size, classes).
    The size is 0 for a network with a dynamic input side (any multiple of 32)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for corrupt files
        raise OnnxModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    ins = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    if len(ins) != 1:
        raise OnnxModelError(f"{path}: expected one image input, found {len(ins)}")
    dims = [d.dim_value for d in ins[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] != dims[3] or dims[2] % 32:  # 0: dynamic
        raise OnnxModelError(f"{path}: expected input [N, 3, S, S] with S % 32 == 0, got {dims}")
    out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(out) != 3 or out[1] < 5:
        raise OnnxModelError(f"{path}: expected YOLOv8 output [N, 4 + classes, anchors], got {out}")
    return dims[2], int(out[1] - 4)


def batch_consistency(path: Path, batch: int = 3, seed: int = 0) -> float:
    """Max abs difference between one batched run and per-image runs (sanity check)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 640
    x = np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)
    batched = sess.run(None, {inp.name: x})[0]
    single = np.concatenate([sess.run(None, {inp.name: x[i : i + 1]})[0] for i in range(batch)])
    return float(np.abs(batched - single).max())
