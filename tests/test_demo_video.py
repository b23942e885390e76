"""The synthetic plate-camera video generator (alpr_common/demo_video.py)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from alpr_common import demo_video
from edge_client.tools.demo_video import DEFAULT_PLATES, generate, parse_plates

REPO = Path(__file__).resolve().parent.parent
SMALL: dict[str, Any] = dict(width=480, height=270, fps=8.0)
THREE = [("KV65BZR", "uk"), ("AB-123-CD", "eu"), ("RTX4E26", "br")]


def frames_of(video: Path) -> list[np.ndarray]:
    assert cv2.VideoCapture(str(video)).isOpened()
    return demo_video.read_frames(video)


def overlap(a: list[int], b: list[int]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def check_truth(doc: dict[str, Any]) -> None:
    """Boxes inside the frame, contiguous spans, <= 2 plates at once, no overlaps."""
    w, h = doc["width"], doc["height"]
    per_frame: dict[int, list[list[int]]] = {}
    for p in doc["plates"]:
        frames = sorted(int(f) for f in p["boxes"])
        assert frames == list(range(p["first_frame"], p["last_frame"] + 1))
        assert p["first_frame"] >= 0 and p["last_frame"] < doc["frames"]
        a, b = p["inside"]
        assert p["first_frame"] <= a < b <= p["last_frame"]
        for f, (x1, y1, x2, y2) in ((int(k), v) for k, v in p["boxes"].items()):
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            per_frame.setdefault(f, []).append([x1, y1, x2, y2])
    for boxes in per_frame.values():
        assert len(boxes) <= 2
        assert not any(overlap(a, b) for a, b in itertools.combinations(boxes, 2))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    video, truth = generate(tmp_path_factory.mktemp("small"), seed=3, plates=THREE, **SMALL)
    return video, json.loads(truth.read_text())


def test_small_video_reads_back_with_truth(small: tuple[Path, dict[str, Any]]) -> None:
    video, doc = small
    assert doc["video"] == video.name and video.suffix == ".mp4"
    assert video.with_name(f"{video.stem}.truth.json").is_file()
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == doc["frames"]
    cap.release()
    frames = frames_of(video)
    assert len(frames) == doc["frames"]
    assert all(f.shape == (doc["height"], doc["width"], 3) for f in frames)
    assert [p["plate"] for p in doc["plates"]] == ["KV65BZR", "AB123CD", "RTX4E26"]
    assert [p["region"] for p in doc["plates"]] == ["uk", "eu", "br"]
    assert doc["plates"][1]["display"] == "AB-123-CD"
    assert doc["plates"][2]["style"] == "mercosur"
    check_truth(doc)


def test_truth_boxes_hold_the_rendered_plates(small: tuple[Path, dict[str, Any]]) -> None:
    """Inside a box the frame differs from the empty road (frame 0) and shows dark text on a
    light plate."""
    video, doc = small
    frames = frames_of(video)
    empty = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY).astype(np.float32)
    for p in doc["plates"]:
        assert str(0) not in p["boxes"]
        a, b = p["inside"]
        for f in np.linspace(a + (b - a) / 5, b - (b - a) / 5, 4).round().astype(int):
            x1, y1, x2, y2 = p["boxes"][str(f)]
            grey = cv2.cvtColor(frames[f], cv2.COLOR_BGR2GRAY).astype(np.float32)
            box = (slice(y1, y2), slice(x1, x2))
            assert np.abs(grey[box] - empty[box]).mean() > 25, (p["plate"], f)
            lo, hi = np.percentile(grey[box], [10, 90])
            assert hi - lo > 60, (p["plate"], f)  # text contrast


def test_render_matches_truth_box_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn alone on black without motion blur, the plate fills exactly its truth box."""
    monkeypatch.setattr(demo_video, "EXPOSURE", 0.0)
    monkeypatch.setattr(demo_video.R, "draw_body", lambda *args: None)
    road = demo_video._Road(640, 360)
    cars, _ = demo_video._schedule(
        road,
        [("FG482HK", "fr"), ("8KRW245", "us"), ("RTX4E26", "br")],
        10,
        np.random.default_rng(1),
        "hershey",
    )
    for car in cars:
        truth = demo_video._truth(road, car)
        a, b = truth["inside"]
        for f in (a, (a + b) // 2, b):
            frame = np.zeros((360, 640, 3), np.uint8)
            demo_video._render_car(frame, road, car, f)
            x1, y1, x2, y2 = truth["boxes"][str(f)]
            ys, xs = np.nonzero(frame.max(axis=2) > 60)  # the plate, but its dark rim
            assert abs(xs.min() - x1) <= 2 and abs(xs.max() + 1 - x2) <= 2, (car.plate, f)
            assert abs(ys.min() - y1) <= 2 and abs(ys.max() + 1 - y2) <= 2, (car.plate, f)


def test_deterministic_per_seed(tmp_path: Path) -> None:
    kw: dict[str, Any] = dict(plates=THREE[:2], font="hershey", **SMALL)
    v1, t1 = generate(tmp_path / "a", seed=5, **kw)
    v2, t2 = generate(tmp_path / "b", seed=5, **kw)
    _, t3 = generate(tmp_path / "c", seed=6, **kw)
    assert t1.read_text() == t2.read_text()
    assert json.loads(t1.read_text())["plates"] != json.loads(t3.read_text())["plates"]
    f1, f2 = frames_of(v1), frames_of(v2)
    assert len(f1) == len(f2)
    for i in range(0, len(f1), 7):
        assert np.array_equal(f1[i], f2[i]), i


def test_parse_plates_and_errors() -> None:
    assert parse_plates(" AB12CDE:uk, 7ABC123:us,AB-123-CD:eu ") == [
        ("AB12CDE", "uk"),
        ("7ABC123", "us"),
        ("AB-123-CD", "eu"),
    ]
    for bad in ("AB12CDE", "AB12CDE:mars", ":uk"):
        with pytest.raises(ValueError):
            parse_plates(bad)
    with pytest.raises(ValueError):
        generate(Path("/nonexistent"), width=100, height=80)


def test_defaults_avoid_ambiguous_characters() -> None:
    assert not any(set(text) & set("O0I1") for text, _ in DEFAULT_PLATES)


def test_cli_writes_video_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_demo_video", REPO / "scripts/make_demo_video.py"
    )
    assert spec and spec.loader
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    argv = ["--out", str(tmp_path), "--size", "320x240", "--fps", "6", "--plates", "7ABC123:us"]
    assert cli.main([*argv, "--name", "x"]) == 0
    doc = json.loads((tmp_path / "x.truth.json").read_text())
    assert (tmp_path / "x.mp4").is_file() and doc["width"] == 320 and doc["fps"] == 6
    assert [(p["plate"], p["region"]) for p in doc["plates"]] == [("7ABC123", "us")]
    assert "x.mp4" in capsys.readouterr().out


@pytest.mark.timeout(20)
def test_default_video(tmp_path: Path) -> None:
    """The default configuration: 1280x720 at 15 fps, ~20-30 s, six regional formats."""
    t0 = time.perf_counter()
    video, truth = generate(tmp_path)
    took = time.perf_counter() - t0
    doc = json.loads(truth.read_text())
    assert (doc["width"], doc["height"], doc["fps"]) == (1280, 720, 15)
    assert 20 <= doc["frames"] / doc["fps"] <= 30
    assert video.stat().st_size < 12e6
    assert [p["plate"] for p in doc["plates"]] == [t for t, _ in DEFAULT_PLATES]
    assert {p["region"] for p in doc["plates"]} == {"uk", "eu", "us", "br"}
    check_truth(doc)
    for p in doc["plates"]:
        a, b = p["inside"]
        assert 1.5 <= (b - a + 1) / doc["fps"] <= 3.0
        heights = [p["boxes"][str(f)][3] - p["boxes"][str(f)][1] for f in range(a, b + 1)]
        assert min(heights) >= 40 and max(heights) <= 120
    visible = [sum(str(f) in p["boxes"] for p in doc["plates"]) for f in range(doc["frames"])]
    assert max(visible) == 2 and visible.count(1) > visible.count(2)
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == doc["frames"]
    ok, frame = cap.read()
    assert ok and frame.shape == (720, 1280, 3)
    print(f"default demo video: {doc['frames']} frames in {took:.1f}s")
