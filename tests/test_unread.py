"""edge_client.unread: unread crops land in a safe, dated path with a sidecar, stay bounded
in count and age (injected clock), and an I/O error never escapes ``save``."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_client.unread import UnreadCrops, UnreadCropStore

DAY = 86_400.0
T0 = datetime(2024, 3, 5, 12, tzinfo=UTC).timestamp()
CROP = np.full((60, 200, 3), 120, np.uint8)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(tmp_path: Path, clock: Clock | None = None, **cfg: Any) -> UnreadCropStore:
    return UnreadCropStore(
        tmp_path, "cam1", UnreadCrops(enabled=True, **cfg), clock=clock or Clock()
    )


def kept(tmp_path: Path, folder: str = "unread") -> list[str]:
    """Every file under the store's folder, relative, sorted."""
    root = tmp_path / folder
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_save_writes_dated_image_and_sidecar(tmp_path: Path) -> None:
    s = store(tmp_path)
    path = s.save("ab12cd-7", CROP, reason="no_plate", timestamp=T0, box=(10, 20, 210, 80))
    assert path == tmp_path / "unread/cam1/2024-03-05/ab12cd-7_no_plate.jpg"
    image = cv2.imread(str(path))
    assert image is not None and image.shape == CROP.shape
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == {
        "camera": "cam1", "track_key": "ab12cd-7", "reason": "no_plate", "timestamp": T0,
        "box": [10.0, 20.0, 210.0, 80.0], "image": path.name,
    }  # fmt: skip
    assert path.stat().st_mtime == pytest.approx(T0)
    assert kept(tmp_path) == ["cam1/2024-03-05/ab12cd-7_no_plate.jpg",
                              "cam1/2024-03-05/ab12cd-7_no_plate.json"]  # fmt: skip
    assert (s.saved, s.failed, s.removed, s.count()) == (1, 0, 0, 1)


def test_disabled_store_writes_nothing(tmp_path: Path) -> None:
    s = UnreadCropStore(tmp_path, "cam1", UnreadCrops())
    assert s.save("t1", CROP, reason="unread", timestamp=T0) is None
    assert not (tmp_path / "unread").exists()


def test_same_track_saved_twice_replaces_its_files(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save("t1", CROP, reason="unread", timestamp=T0)
    s.save("t1", CROP, reason="unread", timestamp=T0 + 1)
    assert s.count() == 1 and len(kept(tmp_path)) == 2


@pytest.mark.parametrize(
    ("max_count", "saves", "kept_tracks"),
    [
        (3, 5, ["t2", "t3", "t4"]),  # the two oldest go
        (5, 5, ["t0", "t1", "t2", "t3", "t4"]),
        (1, 4, ["t3"]),
    ],
)
def test_count_bound_keeps_the_newest(
    tmp_path: Path, max_count: int, saves: int, kept_tracks: list[str]
) -> None:
    s = store(tmp_path, max_count=max_count)
    for i in range(saves):  # one per 6 h: the oldest days' folders empty out
        assert s.save(f"t{i}", CROP, reason="unread", timestamp=T0 + i * DAY / 4) is not None
    names = kept(tmp_path)
    assert sorted({Path(n).name.split("_")[0] for n in names}) == kept_tracks
    assert len(names) == 2 * len(kept_tracks)  # image + sidecar each, no orphan
    assert s.removed == saves - len(kept_tracks) and s.count() == len(kept_tracks)
    days = {p.name for p in (tmp_path / "unread/cam1").iterdir()}
    assert days == {Path(n).parent.name for n in names}  # no empty date folder left


def test_count_bound_counts_files_of_an_earlier_run(tmp_path: Path) -> None:
    first = store(tmp_path, max_count=10)
    for i in range(4):
        first.save(f"old{i}", CROP, reason="unread", timestamp=T0 + i)
    second = store(tmp_path, max_count=3)  # a restart with a smaller bound
    assert second.prune() == 1
    second.save("new", CROP, reason="no_plate", timestamp=T0 + 10)
    assert sorted(Path(n).stem for n in kept(tmp_path) if n.endswith(".jpg")) == [
        "new_no_plate", "old2_unread", "old3_unread",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("ages_days", "now_days", "max_age_days", "survivors"),
    [
        ([0, 1, 2, 3], 3, 7, 4),
        ([0, 1, 2, 3], 9.5, 7, 1),  # days 0-2 are older than 7 days at day 9.5
        ([0, 1, 2, 3], 20, 7, 0),
        ([0, 1, 2, 3], 3.5, 1, 1),
    ],
)
def test_age_bound_with_injected_clock(
    tmp_path: Path, ages_days: list[float], now_days: float, max_age_days: float,
    survivors: int,
) -> None:  # fmt: skip
    clock = Clock(T0)
    s = store(tmp_path, clock, max_age_s=max_age_days * DAY)
    for i, d in enumerate(ages_days):
        clock.now = T0 + d * DAY
        s.save(f"t{i}", CROP, reason="unread", timestamp=T0 + d * DAY)
    by_saves = s.removed  # each save applies the bound at its own time
    clock.now = T0 + now_days * DAY
    assert by_saves + s.prune() == len(ages_days) - survivors
    assert len(kept(tmp_path)) == 2 * survivors
    assert len(list((tmp_path / "unread/cam1").iterdir())) == survivors  # one day each


def test_save_applies_the_age_bound_too(tmp_path: Path) -> None:
    clock = Clock(T0)
    s = store(tmp_path, clock, max_age_s=60)
    s.save("old", CROP, reason="unread", timestamp=T0)
    clock.now = T0 + 61
    s.save("new", CROP, reason="unread", timestamp=T0 + 61)
    assert [Path(n).name for n in kept(tmp_path)] == ["new_unread.jpg", "new_unread.json"]


def test_prune_removes_stale_temporary_files_only(tmp_path: Path) -> None:
    clock = Clock(T0)
    s = store(tmp_path, clock)
    day = s.save("t1", CROP, reason="unread", timestamp=T0).parent  # type: ignore[union-attr]
    stale, fresh, foreign = day / ".a.jpg.1.x.tmp", day / ".b.jpg.1.y.tmp", day / "notes.txt"
    for p in (stale, fresh, foreign):
        p.write_bytes(b"x")
    os.utime(stale, (T0 - 3600, T0 - 3600))
    os.utime(fresh, (T0, T0))
    assert s.prune() == 0
    assert not stale.exists() and fresh.exists() and foreign.exists()
    assert s.count() == 1


@pytest.mark.parametrize(
    "track_key",
    ["../../../etc/passwd", "/abs/path", "a/b\\c", "..", "", ".hidden", "x" * 500,
     "ünï cödé", "t\x00nul", "C:\\win"],
)  # fmt: skip
@pytest.mark.parametrize("camera", ["cam1", "../../outside", "/etc", ".."])
def test_path_stays_inside_the_camera_folder(tmp_path: Path, track_key: str, camera: str) -> None:
    s = UnreadCropStore(tmp_path, camera, UnreadCrops(enabled=True), clock=Clock())
    path = s.save(track_key, CROP, reason="unread", timestamp=T0)
    assert path is not None and path.is_file()
    root = (tmp_path / "unread").resolve()
    assert path.resolve().parent.parent.parent == root
    assert path.name.endswith("_unread.jpg") and not path.name.startswith(".")
    assert json.loads(path.with_suffix(".json").read_text())["track_key"] == track_key
    assert [p for p in tmp_path.iterdir()] == [tmp_path / "unread"]


def _file_where_the_folder_goes(tmp_path: Path) -> None:
    (tmp_path / "unread").write_text("in the way")


def _directory_where_the_image_goes(tmp_path: Path) -> None:
    (tmp_path / "unread/cam1/2024-03-05/t1_unread.jpg").mkdir(parents=True)


def _directory_where_the_sidecar_goes(tmp_path: Path) -> None:
    (tmp_path / "unread/cam1/2024-03-05/t1_unread.json").mkdir(parents=True)


def _read_only_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    (tmp_path / "unread").mkdir()
    (tmp_path / "unread").chmod(0o500)


@pytest.mark.parametrize(
    "break_it",
    [_file_where_the_folder_goes, _directory_where_the_image_goes,
     _directory_where_the_sidecar_goes, _read_only_folder],
)  # fmt: skip
def test_io_error_returns_none_without_raising(
    tmp_path: Path, break_it: Any, caplog: pytest.LogCaptureFixture
) -> None:
    break_it(tmp_path)
    before = kept(tmp_path) if (tmp_path / "unread").is_dir() else None
    s = store(tmp_path)
    try:
        assert s.save("t1", CROP, reason="unread", timestamp=T0) is None
        assert (s.saved, s.failed) == (0, 1)
        assert "not saved" in caplog.text
        if before is not None:  # nothing half-written: no image without sidecar, no tmp
            assert kept(tmp_path) == before
        assert s.prune() == 0  # bounding a broken folder does not raise either
    finally:
        if (tmp_path / "unread").is_dir():
            (tmp_path / "unread").chmod(0o700)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": "blurry"}, "reason"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"timestamp": -1.0}, "timestamp"),
        ({"box": (1, 2, 3)}, "box"),
        ({"box": (1, 2, 3, float("inf"))}, "box"),
        ({"crop": np.zeros((0, 5, 3), np.uint8)}, "empty"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"crop": CROP, "reason": "unread", "timestamp": T0, **kwargs}
    with pytest.raises(ValueError, match=message):
        store(tmp_path).save("t1", **args)
    assert not (tmp_path / "unread").exists() or kept(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"folder": "../up"},
        {"folder": "a/b"},
        {"folder": ".hidden"},
        {"folder": ".."},
        {"folder": ""},
        {"folder": "crops"},
        {"folder": "Crops"},
        {"max_count": 0},
        {"max_count": 100_001},
        {"max_age_s": 0},
        {"max_age_s": -5},
        {"max_cont": 10},  # typo: unknown keys are refused
    ],
)
def test_invalid_config_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as err:
        UnreadCrops(**bad)
    assert next(iter(bad)) in str(err.value)


@pytest.mark.parametrize("folder", ["unread", "debug_plates", "misses.v2"])
def test_folder_names_accepted(tmp_path: Path, folder: str) -> None:
    s = store(tmp_path, folder=folder)
    assert s.save("t1", CROP, reason="unread", timestamp=T0) is not None
    assert kept(tmp_path, folder) == ["cam1/2024-03-05/t1_unread.jpg",
                                      "cam1/2024-03-05/t1_unread.json"]  # fmt: skip
