"""Assemble a model repository variant: the default repository plus a detector network
served by another backend (TensorRT plan, native onnxruntime, or the Python stand-in).

The default ``vehicle_detector`` runs ONNX in-process. In a variant it keeps its inputs
and outputs (so clients do not change) but calls ``vehicle_detector_net`` over BLS.

:func:`sized` writes the other kind of variant: the repository with the letterbox side
of ``vehicle_detector`` / ``plate_locator`` changed (their ``IMAGE`` dims; both networks
take any side that is a multiple of 32, and clients read the side from the config).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .checkout import checkout_root

NET = "vehicle_detector_net"


class VariantError(ValueError):
    pass


def variants_dir(root: Path | None = None) -> Path:
    """``config/triton/`` of the checkout (``root``, else found: ``ensemble.ops.checkout``)."""
    return (root or checkout_root()) / "config" / "triton"


def available(root: Path | None = None) -> list[str]:
    folder = variants_dir(root)
    return sorted(p.name for p in folder.iterdir() if (p / NET / "config.pbtxt").is_file())


def _link_tree(src: Path, dst: Path) -> None:
    """Copy configs and code, symlink weights (large) into ``dst``."""
    for path in src.rglob("*"):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in {".onnx", ".plan", ".engine"}:
            target.symlink_to(path.resolve())
        else:
            shutil.copy2(path, target)


def image_side(config_text: str) -> int:
    """The letterbox side a model config declares (its ``IMAGE`` input, dims [S, S, 3])."""
    cfg = text_format.Parse(config_text, mc.ModelConfig())
    for inp in cfg.input:
        if inp.name == "IMAGE":
            dims = list(inp.dims)
            if len(dims) != 3 or dims[0] != dims[1] or dims[2] != 3:
                raise VariantError(f"{cfg.name}: IMAGE dims {dims} are not [S, S, 3]")
            return int(dims[0])
    raise VariantError(f"{cfg.name}: no IMAGE input")


def with_image_side(config_text: str, side: int) -> str:
    """``config_text`` with its ``IMAGE`` input letterboxed to ``side`` (a multiple of 32)."""
    if side < 32 or side % 32 or side > 4096:
        raise VariantError(f"the input side must be a multiple of 32 in 32..4096, got {side}")
    cfg = text_format.Parse(config_text, mc.ModelConfig())
    image_side(config_text)  # refuses a config without a square IMAGE input
    for inp in cfg.input:
        if inp.name == "IMAGE":
            inp.dims[:] = [side, side, 3]
    return str(text_format.MessageToString(cfg))


def sized(
    out: Path,
    sides: Mapping[str, int],
    source: Path | None = None,
    models: Sequence[str] | None = None,
) -> Path:
    """``source`` (default: the checkout's ``model_repository/``) written to ``out``
    (configs and code copied, weights linked) with the ``IMAGE`` side of each model in
    ``sides`` (e.g. ``{"vehicle_detector": 416}``) changed; only ``models`` when given."""
    source = source or checkout_root() / "model_repository"
    if out.exists():
        raise VariantError(f"{out} exists; remove it or choose another folder")
    names = list(models) if models is not None else sorted(
        p.name for p in source.iterdir() if (p / "config.pbtxt").is_file()
    )  # fmt: skip
    unknown = [m for m in [*names, *sides] if not (source / m / "config.pbtxt").is_file()]
    if unknown or not set(sides) <= set(names):
        raise VariantError(f"not models of {source} (or not copied): {unknown or list(sides)}")
    for name in names:
        _link_tree(source / name, out / name)
    for name, side in sides.items():
        path = out / name / "config.pbtxt"
        path.write_text(with_image_side(path.read_text(), side))
    return out


def with_net_model(config_text: str, net: str = NET) -> str:
    cfg = text_format.Parse(config_text, mc.ModelConfig())
    cfg.parameters["net_model"].string_value = net
    return str(text_format.MessageToString(cfg))


def assemble(
    variant: str,
    out: Path,
    source: Path | None = None,
    plan: Path | None = None,
    root: Path | None = None,
) -> Path:
    """``source`` (default: the checkout's ``model_repository/``) plus the variant's
    configs from the checkout's ``config/triton/<variant>/``, written to ``out``."""
    root = root or checkout_root()
    source = source or root / "model_repository"
    choices = available(root)
    if variant not in choices:
        raise VariantError(f"unknown variant {variant!r}; choose one of {', '.join(choices)}")
    if out.exists():
        raise VariantError(f"{out} exists; remove it or choose another folder")
    _link_tree(source, out)
    _link_tree(variants_dir(root) / variant, out)
    net_cfg = text_format.Parse((out / NET / "config.pbtxt").read_text(), mc.ModelConfig())
    weights = out / NET / "1"
    weights.mkdir(parents=True, exist_ok=True)
    if net_cfg.platform == "tensorrt_plan":
        plan = plan or source / "vehicle_detector" / "1" / "model.plan"
        if not plan.is_file():
            raise VariantError(f"TensorRT variant needs an engine: {plan} not found (--plan)")
        (weights / "model.plan").symlink_to(plan.resolve())
    else:
        onnx = source / "vehicle_detector" / "1" / "model.onnx"
        if not onnx.is_file():
            raise VariantError(f"{onnx} not found: run `alpr-models fetch` first")
        if not (weights / "model.onnx").exists():
            (weights / "model.onnx").symlink_to(onnx.resolve())
    det_cfg = out / "vehicle_detector" / "config.pbtxt"
    det_cfg.write_text(with_net_model(det_cfg.read_text()))
    return out
