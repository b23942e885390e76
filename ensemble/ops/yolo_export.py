"""Ultralytics checkpoint (``.pt``) -> ONNX, in a throw-away environment of its own.

The YOLO licence-plate checkpoint ships as a PyTorch pickle of Ultralytics classes; only
``ultralytics`` + ``torch`` can load it. They are needed for this one provisioning step,
so they live in a separate virtual environment (``OVR_ALPR_EXPORT_VENV``, default
``~/.cache/ovr-alpr/export-venv``) and never enter the runtime one (which stays free of
torch; serving is onnxruntime).

Two facts of this platform shape the environment (see the README):

* ``pip install torch==2.13.0`` takes a local CPU build on these machines (elsewhere set
  ``OVR_ALPR_TORCH_INDEX`` to e.g. ``https://download.pytorch.org/whl/cpu`` to avoid the
  multi-GB CUDA build);
* there is no CPU build of ``torchvision``, which Ultralytics imports. The CUDA wheel is
  installed without dependencies: its Python code imports, its compiled ops do not load
  (they are not needed to export). torchvision registers fake kernels for two of those
  ops at import; the export script defines their schemas first so that import succeeds.

The export is ``dynamic=True`` (any batch, any input side that is a multiple of 32), so
the plate detector can read a small vehicle crop at 320 px and a whole frame at 640.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

TORCH = "torch==2.13.0"
TORCHVISION = "torchvision==0.28.0"  # the release built against torch 2.13
ULTRALYTICS = ("ultralytics==8.4.190", "ultralytics-thop==2.2.3")
# What Ultralytics imports on the export path (it declares more: plotting, polars...).
EXPORT_DEPS = (
    "numpy<2", "pyyaml", "pillow", "requests", "psutil", "scipy", "matplotlib",
    "opencv-python-headless<4.12", "onnx>=1.16", "onnxslim",
)  # fmt: skip

EXPORT_SCRIPT = r"""
import shutil, sys
import torch
lib = torch.library.Library("torchvision", "DEF")  # schemas of ops torchvision fakes
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
from ultralytics import YOLO
model = YOLO(sys.argv[1])
names = getattr(model.model, "names", {})
if len(names) != 1:
    sys.exit(f"expected a single-class plate detector, got classes {names}")
out = model.export(format="onnx", imgsz=640, dynamic=True, simplify=True, opset=17)
shutil.copyfile(out, sys.argv[2])
"""


class ExportError(RuntimeError):
    """The export environment could not be built or the export failed."""


def export_venv() -> Path:
    default = Path.home() / ".cache" / "ovr-alpr" / "export-venv"
    return Path(os.environ.get("OVR_ALPR_EXPORT_VENV", default))


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
        raise ExportError(f"{what} failed:\n{tail}")


def ensure_env(path: Path | None = None) -> Path:
    """The export environment's interpreter, built on first use (idempotent)."""
    path = path or export_venv()
    python = path / "bin" / "python"
    ready = path / ".ovr-alpr-ready"
    if ready.is_file() and python.is_file():
        return python
    if not python.is_file():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    index = os.environ.get("OVR_ALPR_TORCH_INDEX")
    _run([*pip, *(["--extra-index-url", index] if index else []), TORCH], f"pip install {TORCH}")
    _run([*pip, "--no-deps", TORCHVISION, *ULTRALYTICS], "pip install torchvision/ultralytics")
    _run([*pip, *EXPORT_DEPS], "pip install the export dependencies")
    ready.write_text("ok\n")
    return python


def export_onnx(checkpoint: Path, dest: Path) -> None:
    """Export an Ultralytics single-class detector checkpoint to a dynamic ONNX file."""
    python = ensure_env()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / checkpoint.name  # Ultralytics writes its export next to the .pt
        shutil.copyfile(checkpoint, work)
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
        env["YOLO_CONFIG_DIR"] = str(Path(tmp) / "cfg")
        proc = subprocess.run(
            [str(python), "-c", EXPORT_SCRIPT, str(work), str(dest)],
            stdout=sys.stderr, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp,
        )  # fmt: skip
        if proc.returncode != 0 or not dest.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
            raise ExportError(f"exporting {checkpoint.name} to ONNX failed:\n{tail}")
