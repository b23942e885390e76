"""ONNX graph surgery for exported YOLO detectors."""

from __future__ import annotations

from collections.abc import Sequence
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


def _zero_leading_batch(graph: onnx.GraphProto) -> int:
    """Reshape target shapes with a leading 1 (the batch baked in) get 0 there: ONNX
    Reshape (allowzero=0) reads 0 as "copy this dimension from the input". Returns the
    number of shapes changed."""
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
    return changed


def make_batch_dynamic(src: Path, dst: Path) -> None:
    """Rewrite a YOLO export with batch fixed at 1 so it accepts any batch size.

    Ultralytics exports with ``dynamic=False`` bake the batch into Reshape target
    shapes (``[1, 64, -1]``, ``[1, 4, 16, 8400]``...). Those leading 1s become 0, which
    ONNX Reshape (allowzero=0) reads as "copy this dimension from the input", i.e. the
    batch; graph inputs/outputs get a symbolic ``batch`` dimension.
    """
    model = onnx.load(str(src))
    graph = model.graph
    _zero_leading_batch(graph)
    for vi in list(graph.input) + list(graph.output):
        _set_dim0(vi, "batch")
    del graph.value_info[:]  # stale fixed-batch shapes; onnxruntime re-infers them
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


# --- input side -------------------------------------------------------------------------
def yolo_anchors(height: int, width: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv8's grid (Ultralytics ``make_anchors``, offset 0.5) for an input of ``height`` x
    ``width``: anchor centres float32 [2, N] (x row, y row, in feature cells) and their
    strides float32 [1, N], level after level, row-major within a level."""
    points, steps = [], []
    for s in strides:
        h, w = -(-height // s), -(-width // s)
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        steps.append(np.full((1, h * w), s))
    return (
        np.concatenate(points, axis=1).astype(np.float32),
        np.concatenate(steps, axis=1).astype(np.float32),
    )


class _Builder:
    """Appends nodes and constants with a unique prefix (new names never clash)."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.n = prefix, 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, value: np.ndarray) -> str:
        self.n += 1
        name = f"{self.prefix}/c{self.n}"
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: int) -> str:
        self.n += 1
        out = f"{self.prefix}/{op_type}_{self.n}"
        node = onnx.helper.make_node(op_type, list(inputs), [out])
        node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return out


def _anchor_graph(b: _Builder, image: str, strides: Sequence[int]) -> tuple[str, str]:
    """Nodes computing ``yolo_anchors`` from the image tensor's runtime shape; returns the
    names of the anchors [1, 2, N] and strides [1, N] tensors."""
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    shape = b.op("Shape", image)
    hw = b.op("Slice", shape, b.const(i64(2)), b.const(i64(4)))  # [H, W]
    points, steps = [], []
    for s in strides:
        cells = b.op("Div", b.op("Add", hw, b.const(i64(s - 1))), b.const(i64(s)))  # ceil
        h = b.op("Squeeze", b.op("Slice", cells, b.const(i64(0)), b.const(i64(1))))
        w = b.op("Squeeze", b.op("Slice", cells, b.const(i64(1)), b.const(i64(2))))
        half = b.const(np.array(0.5, np.float32))
        zero, one = b.const(np.array(0, np.int64)), b.const(np.array(1, np.int64))
        ys = b.op("Add", b.op("Cast", b.op("Range", zero, h, one), to=1), half)  # [h]
        xs = b.op("Add", b.op("Cast", b.op("Range", zero, w, one), to=1), half)  # [w]
        grid_x = b.op("Expand", b.op("Unsqueeze", xs, b.const(i64(0))), cells)  # [h, w]
        grid_y = b.op("Expand", b.op("Unsqueeze", ys, b.const(i64(1))), cells)
        # [hw] then [1, hw]: no leading-1 Reshape target, which make_batch_dynamic would
        # take for a baked-in batch (the file may go through it again: `alpr-models use`)
        flat, first = b.const(i64(-1)), b.const(i64(0))
        fx = b.op("Unsqueeze", b.op("Reshape", grid_x, flat), first)  # [1, hw]
        fy = b.op("Unsqueeze", b.op("Reshape", grid_y, flat), first)
        points.append(b.op("Concat", fx, fy, axis=0))  # [2, hw]
        zeros = b.op("Mul", fx, b.const(np.array(0.0, np.float32)))
        steps.append(b.op("Add", zeros, b.const(np.array(float(s), np.float32))))
    anchors = b.op("Unsqueeze", b.op("Concat", *points, axis=1), b.const(i64(0)))
    return anchors, b.op("Concat", *steps, axis=1)


def make_yolo_dynamic(src: Path, dst: Path) -> None:
    """Rewrite a static YOLOv8 detection export (fixed batch and input side, e.g. 640)
    into one that takes any batch and any input side that is a multiple of 32, with the
    same weights: at the export's own side it computes the same outputs.

    A static export bakes the input side into three places of its head: the anchor grid
    and its strides (constants of N = sum over strides of (side / stride)^2 columns) and
    Reshape target shapes holding N. The constants are replaced by nodes computing the
    grid from the input's runtime shape (:func:`yolo_anchors`, checked first against the
    constants so that an unknown layout is refused, not miscomputed); N in a Reshape
    becomes -1. Raises :class:`OnnxModelError` naming what does not fit.
    """
    model = onnx.load(str(src))
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    (image,) = [i for i in graph.input if i.name not in init_names] or [None]
    if image is None or len(graph.output) != 1:
        raise OnnxModelError(f"{src}: expected one image input and one output")
    in_dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if len(in_dims) != 4 or not in_dims[2] or not in_dims[3] or len(out_dims) != 3:
        raise OnnxModelError(
            f"{src}: expected a static input [N, 3, H, W] and output [N, C, anchors], got "
            f"{in_dims} and {out_dims} (is it dynamic already?)"
        )
    height, width, count = in_dims[2], in_dims[3], out_dims[2]
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    step_names = [n for n, a in arrays.items() if a.shape == (1, count)]
    if len(step_names) != 1:
        raise OnnxModelError(f"{src}: no single stride constant of shape [1, {count}]")
    strides = [int(s) for s in dict.fromkeys(arrays[step_names[0]].ravel().tolist())]
    anchors, steps = yolo_anchors(height, width, strides)
    if anchors.shape[1] != count or not np.array_equal(arrays[step_names[0]], steps):
        raise OnnxModelError(f"{src}: strides {strides} do not give {count} anchors")
    point_names = [n for n, a in arrays.items() if a.shape == (1, 2, count)]
    if not point_names or any(not np.array_equal(arrays[n][0], anchors) for n in point_names):
        raise OnnxModelError(f"{src}: the anchor constants are not YOLOv8's grid")
    _zero_leading_batch(graph)
    for init in graph.initializer:  # Reshape targets holding the anchor count
        arr = arrays.get(init.name)
        if arr is not None and arr.ndim == 1 and arr.dtype == np.int64 and count in arr:
            if -1 in arr.tolist() or arr.tolist().count(count) != 1:
                raise OnnxModelError(f"{src}: cannot free the shape {arr.tolist()} ({init.name})")
            fixed = numpy_helper.to_array(init).copy()
            fixed[fixed == count] = -1
            init.CopyFrom(numpy_helper.from_array(fixed, init.name))
    b = _Builder("/ovr_alpr/anchors")
    anchors_out, steps_out = _anchor_graph(b, image.name, strides)
    rename = {**dict.fromkeys(point_names, anchors_out), step_names[0]: steps_out}
    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = rename.get(name, name)
    still = [
        i.name for i in graph.initializer
        if i.name not in rename and count in numpy_helper.to_array(i).shape
    ]  # fmt: skip
    if still or any(n.op_type == "Constant" for n in graph.node):
        raise OnnxModelError(f"{src}: constants still sized for {count} anchors: {still}")
    kept = [i for i in graph.initializer if i.name not in rename]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *b.inits])
    nodes = [*b.nodes, *graph.node]  # the new nodes read only the image input
    del graph.node[:]
    graph.node.extend(nodes)
    for vi, names in ((image, ("batch", None, "height", "width")),
                      (graph.output[0], ("batch", None, "anchors"))):  # fmt: skip
        for dim, name in zip(vi.type.tensor_type.shape.dim, names, strict=True):
            if name:
                dim.ClearField("dim_value")
                dim.dim_param = name
    del graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
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
