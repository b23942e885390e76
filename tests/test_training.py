"""The plate recogniser's training recipe: data checks, the fixed split, a smoke run in the
real torch environment, the shipped model and its card, and validation floors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from synth import render_plate

from ensemble import plate_rec
from ensemble.contracts import PLATE_ALPHABET, REC_HEIGHT, REC_WIDTH
from ensemble.ctc import CtcResult
from ensemble.engines import FusedReader, PlateCtcReader, fuse
from ensemble.ops.provision import SHIPPED, install_shipped, sha256_of, use
from training import cli
from training.config import ConfigError, load
from training.data import DataError, is_validation, load_dataset, split

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
WEIGHTS = REPO / "weights" / "plate_ocr"
EXPORT_PYTHON = (
    Path(os.environ.get("OVR_ALPR_EXPORT_VENV", Path.home() / ".cache/ovr-alpr/export-venv"))
    / "bin"
    / "python"
)


def make_set(folder: Path, plates: list[str], header: str = "file,plate") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [header]
    for i, text in enumerate(plates):
        name = f"p{i:03d}.jpg"
        cv2.imwrite(str(folder / name), render_plate(text, height=60, scale=1.6))
        rows.append(f"{name},{text}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


# --- data checks: bad input names the file ------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "p001.jpg").unlink(), "p001.jpg): image file not found"),
        (lambda d: (d / "p001.jpg").write_bytes(b""), "p001.jpg): image file is empty"),
        (lambda d: (d / "p001.jpg").write_bytes(b"\xff\xd8garbage"), "not a decodable image"),
        (
            lambda d: (d / "labels.csv").write_text("file,plate\np000.jpg,AB123\np001.jpg,\n"),
            "labels.csv:3 (p001.jpg): empty plate label",
        ),
        (
            lambda d: (d / "labels.csv").write_text("file,plate\np000.jpg,AB12Ä\n"),
            "labels.csv:2 (p000.jpg): label 'AB12Ä' has characters outside the alphabet",
        ),
        (lambda d: (d / "labels.csv").write_text("name,text\n"), "needs a header with 'file'"),
        (lambda d: (d / "labels.csv").unlink(), "label file not found"),
    ],
)
def test_bad_training_data_is_named(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = make_set(tmp_path / "set", ["AB123", "CD456"])
    mutate(folder)
    with pytest.raises(DataError) as err:
        load_dataset(folder, PLATE_ALPHABET)
    assert message in str(err.value)


def test_labels_are_normalised_and_metadata_kept(tmp_path: Path) -> None:
    folder = make_set(tmp_path / "s", ["AB123"], header="file,plate")
    (folder / "labels.csv").write_text("file,state,plate\np000.jpg,ca,ab-12 3\n")
    (sample,) = load_dataset(folder, PLATE_ALPHABET)
    assert (sample.text, sample.meta) == ("AB123", {"state": "ca"})


def test_split_is_fixed_by_plate_text() -> None:
    plates = [f"P{i:05d}" for i in range(2000)]
    share = np.mean([is_validation(p, 15) for p in plates])
    assert 0.12 < share < 0.18
    assert is_validation("7ABC123", 15) == is_validation("7ABC123", 15)
    assert all(not is_validation(p, 0) for p in plates[:50])


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("seed: 1\ntrain: {steps: 0, batchsize: 8}\n")
    with pytest.raises(ConfigError) as err:
        load(bad)
    assert "train.steps" in str(err.value) and "train.batchsize" in str(err.value)
    assert cli.main(["ocr", "--config", str(bad)]) == 2


def test_cli_refuses_bad_data_before_training(tmp_path: Path) -> None:
    folder = make_set(tmp_path / "set", ["AB123", "CD456"])
    (folder / "p000.jpg").write_bytes(b"not an image")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data: {{sets: [{{name: s, folder: {folder}, weight: 1}}], synthetic: {{count: 0}}}}\n"
        f"output: {tmp_path / 'out'}\n"
    )
    assert cli.main(["ocr", "--config", str(cfg)]) == 2
    assert not (tmp_path / "out" / "job.json").exists()


# --- the served input contract ----------------------------------------------------------
def test_content_cuts_only_the_padding() -> None:
    crop = np.full((REC_HEIGHT, REC_WIDTH, 3), plate_rec.PAD_VALUE, np.uint8)
    crop[:, :97] = 200
    crop[5, 96] = plate_rec.PAD_VALUE  # one grey pixel inside the plate is not padding
    assert plate_rec.content(crop).shape[1] == 97
    assert plate_rec.content(np.full((48, 320, 3), 128, np.uint8)).shape[1] == 1
    x = plate_rec.to_input([crop[:, :97], np.zeros((10, 10), np.uint8)])
    assert x.shape == (2, 3, plate_rec.PLATE_REC_HEIGHT, plate_rec.PLATE_REC_WIDTH)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0


def _ctc(text: str, confs: list[float]) -> CtcResult:
    return CtcResult(text, float(np.mean(confs)), tuple(confs), text, tuple(0.0 for _ in confs))


@pytest.mark.parametrize(
    ("a", "b", "text", "alts"),
    [
        (_ctc("ABC123", [0.9] * 6), _ctc("ABC123", [0.99] * 6), "ABC123", "ABC123"),
        (_ctc("ABC123", [0.9] * 6), _ctc("A8C123", [0.5] * 6), "ABC123", "A8C123"),
        (_ctc("ABC12", [0.4] * 5), _ctc("ABC123", [0.95] * 6), "ABC123", "ABC123"),
        (_ctc("ABC124", [0.6] * 6), _ctc("ABC123", [0.95] * 6), "ABC123", "ABC124"),
    ],
)
def test_fuse(a: CtcResult, b: CtcResult, text: str, alts: str) -> None:
    out = fuse(a, b)
    assert (out.text, out.alternatives) == (text, alts)
    assert len(out.char_confidences) == len(out.text)


# --- the shipped model --------------------------------------------------------------------
def test_shipped_model_matches_its_card() -> None:
    (item,) = [s for s in SHIPPED if s.model == "plate_ocr"]
    onnx_path, card_path = REPO / item.src, REPO / item.card
    card = json.loads(card_path.read_text())
    assert onnx_path.stat().st_size <= 10 * 1024 * 1024
    assert sha256_of(onnx_path) == card["sha256"]
    for key in ("seed", "recipe", "data", "validation_exact", "license", "command", "manifest"):
        assert key in card, key
    assert all("AGPL" in d["licence"] for d in card["data"])
    manifest = WEIGHTS / card["manifest"]["file"]
    assert sha256_of(manifest) == card["manifest"]["sha256"]
    assert (WEIGHTS / "plate_rec.card.md").read_text().count(card["sha256"]) == 1


def test_fetch_refuses_a_tampered_shipped_model(tmp_path: Path) -> None:
    (item,) = SHIPPED
    root = tmp_path / "root"
    (root / item.src).parent.mkdir(parents=True)
    (root / item.src).write_bytes((REPO / item.src).read_bytes() + b"x")
    (root / item.card).write_text((REPO / item.card).read_text())
    from ensemble.ops.provision import ProvisionError

    with pytest.raises(ProvisionError, match="does not match its model card"):
        install_shipped(item, tmp_path / "repo", root)
    dest = install_shipped(item, tmp_path / "repo2", REPO)
    assert sha256_of(dest) == sha256_of(REPO / item.src)


def test_shipped_model_serves_the_contract() -> None:
    (item,) = SHIPPED
    reader = PlateCtcReader(REPO / item.src, threads=1)
    assert reader.alphabet == PLATE_ALPHABET
    crops = np.full((3, REC_HEIGHT, REC_WIDTH, 3), 128, np.uint8)
    crops[0, :, :150] = cv2.resize(render_plate("KX52874"), (150, REC_HEIGHT))
    reads = reader.read(crops)
    assert len(reads) == 3 and all(len(r.char_confidences) == len(r.text) for r in reads)
    assert all(len(r.alternatives) == len(r.text) for r in reads)


def test_use_accepts_only_a_plate_recogniser(tmp_path: Path) -> None:
    from ensemble.ops.provision import ProvisionError

    (item,) = SHIPPED
    dest = use("plate_ocr", REPO / item.src, tmp_path)
    assert json.loads(dest.with_name(dest.name + ".provenance.json").read_text())["user"]
    other = tmp_path / "other.onnx"
    model = onnx.load(str(REPO / item.src))
    del model.metadata_props[:]
    onnx.save(model, str(other))
    with pytest.raises(ProvisionError, match="not a plate recogniser"):
        use("plate_ocr", other, tmp_path)


# --- a real (tiny) training run in the torch environment --------------------------------------
@pytest.mark.skipif(not EXPORT_PYTHON.is_file(), reason="torch environment not built")
def test_training_smoke_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    plates = ["".join(rng.choice(list(letters + "0123456789"), 6)) for _ in range(36)]
    folder = make_set(tmp_path / "site", plates)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data:\n  val_percent: 20\n  sets: [{{name: site, folder: {folder}, weight: 1}}]\n"
        "  synthetic: {count: 24, val_count: 8, weight: 1}\n"
        "train: {steps: 3, batch: 8, eval_every: 2}\n"
        f"output: {tmp_path / 'out'}\n"
    )
    assert cli.main(["ocr", "--config", str(cfg)]) == 0
    out = tmp_path / "out"
    model = onnx.load(str(out / "plate_rec.onnx"))
    shape = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", 3, plate_rec.PLATE_REC_HEIGHT, plate_rec.PLATE_REC_WIDTH]
    reader = PlateCtcReader(out / "plate_rec.onnx", threads=1)
    probs = reader.probabilities([np.zeros((48, 100, 3), np.uint8)])
    assert probs.shape == (1, plate_rec.PLATE_REC_WIDTH // 4, len(PLATE_ALPHABET) + 1)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)
    card = json.loads((out / "plate_rec.card.json").read_text())
    assert card["sha256"] == sha256_of(out / "plate_rec.onnx")
    assert set(card["validation_exact"]) == {"site"}
    assert card["training"]["steps_done"] == 3
    # fine-tuning from the result starts from its weights
    cfg2 = tmp_path / "c2.yaml"
    cfg2.write_text(cfg.read_text() + f"init_from: {out / 'plate_rec.onnx'}\n")
    assert cli.main(["ocr", "--config", str(cfg2), "--out", str(tmp_path / "out2")]) == 0
    fused = FusedReader(reader, PlateCtcReader(tmp_path / "out2" / "plate_rec.onnx"))
    assert len(fused.read(np.full((2, REC_HEIGHT, REC_WIDTH, 3), 128, np.uint8))) == 2


# --- validation floors on the real crop splits ------------------------------------------------
FLOORS = {"us-plate-crops": 0.80, "br-plate-crops": 0.85}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_validation_floor(name: str) -> None:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    card = json.loads((WEIGHTS / "plate_rec.card.json").read_text())
    _, val = split(load_dataset(folder, PLATE_ALPHABET), card["recipe"]["data"]["val_percent"])
    reader = PlateCtcReader(REPO / SHIPPED[0].src, threads=2)
    crops = np.stack([cli.served_crop(cv2.imread(str(s.path))) for s in val])
    exact = np.mean([r.text == s.text for r, s in zip(reader.read(crops), val, strict=True)])
    assert exact >= FLOORS[name]
    # the card says what it does (within one plate: onnxruntime builds may round differently)
    assert abs(exact - card["validation_exact"][name]) <= 1.01 / len(val)
