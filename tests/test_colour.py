"""Vehicle colour naming on synthetic car renders: a body-coloured rounded rectangle on a
grey road, dark windscreen, black wheels, white plate and headlights, a top-to-bottom
brightness gradient and sensor noise."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge_client.zones.colour import COLOURS, dominant_colour, name_hsv

ROAD = (105, 108, 110)
WINDOW = (38, 36, 34)

# A typical body paint (BGR) for every palette entry.
PAINT: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "silver": (170, 170, 166),
    "grey": (95, 95, 92),
    "black": (22, 22, 25),
    "red": (30, 30, 200),
    "orange": (10, 120, 245),
    "yellow": (20, 200, 235),
    "green": (50, 140, 30),
    "blue": (170, 70, 25),
    "brown": (30, 60, 105),
}


def render_car(
    body: tuple[int, int, int],
    size: tuple[int, int] = (300, 300),
    brightness: float = 1.0,
    seed: int = 0,
    windscreen: tuple[float, float] = (0.24, 0.50),
    road: tuple[int, int, int] = ROAD,
) -> np.ndarray:
    """A front view of a car filling a detector box of ``size`` (h, w), BGR uint8.
    ``windscreen`` is its top and bottom as fractions of the height."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = road
    mask = np.zeros((h, w), np.uint8)
    x1, y1, x2, y2 = int(0.04 * w), int(0.18 * h), int(0.96 * w), int(0.88 * h)
    r = int(0.12 * min(w, h))
    cv2.rectangle(mask, (x1 + r, y1), (x2 - r, y2), 255, -1)
    cv2.rectangle(mask, (x1, y1 + r), (x2, y2 - r), 255, -1)
    for cx, cy in ((x1 + r, y1 + r), (x2 - r, y1 + r), (x1 + r, y2 - r), (x2 - r, y2 - r)):
        cv2.circle(mask, (cx, cy), r, 255, -1)
    img[mask > 0] = body
    top, bottom = windscreen
    glass = np.array(
        [[0.22 * w, bottom * h], [0.78 * w, bottom * h], [0.70 * w, top * h], [0.30 * w, top * h]],
        np.int32,
    )
    cv2.fillPoly(img, [glass], WINDOW)
    cv2.rectangle(img, (int(0.40 * w), int(0.66 * h)), (int(0.60 * w), int(0.72 * h)),
                  (235, 235, 235), -1)  # fmt: skip
    for cx in (0.2, 0.8):
        centre = (int(cx * w), int(0.58 * h))
        cv2.ellipse(img, centre, (int(0.07 * w), int(0.03 * h)), 0, 0, 360, (230, 240, 245), -1)
        wheel = (int(cx * w), int(0.93 * h))
        cv2.ellipse(img, wheel, (int(0.09 * w), int(0.07 * h)), 0, 0, 360, (15, 15, 15), -1)
    gradient = np.linspace(1.12, 0.85, h, dtype=np.float32)[:, None, None]
    img = img * gradient * brightness + rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_palette_is_documented_and_covered() -> None:
    assert set(PAINT) == set(COLOURS) and len(COLOURS) == 10


@pytest.mark.parametrize(
    "size", [(300, 300), (120, 200), (480, 640)], ids=lambda s: f"{s[0]}x{s[1]}"
)
@pytest.mark.parametrize("colour", list(PAINT))
def test_names_each_palette_colour(colour: str, size: tuple[int, int]) -> None:
    assert dominant_colour(render_car(PAINT[colour], size=size, seed=1)) == colour


@pytest.mark.parametrize("brightness", [0.85, 1.15], ids=lambda b: f"x{b}")
@pytest.mark.parametrize("colour", list(PAINT))
def test_robust_to_moderate_brightness_change(colour: str, brightness: float) -> None:
    assert dominant_colour(render_car(PAINT[colour], brightness=brightness, seed=2)) == colour


@pytest.mark.parametrize("brightness", [0.75, 1.3], ids=lambda b: f"x{b}")
@pytest.mark.parametrize("colour", ["red", "orange", "yellow", "green", "blue", "brown"])
def test_hues_survive_larger_brightness_change(colour: str, brightness: float) -> None:
    """Chromatic names depend on hue, so they tolerate more than silver/grey (which are,
    by definition, brightness levels)."""
    assert dominant_colour(render_car(PAINT[colour], brightness=brightness, seed=3)) == colour


@pytest.mark.parametrize(
    ("colour", "windscreen", "road"),
    [
        pytest.param("white", (0.12, 0.62), ROAD, id="white-car-windscreen-over-half"),
        pytest.param("yellow", (0.12, 0.62), ROAD, id="yellow-car-windscreen-over-half"),
        pytest.param("black", (0.24, 0.50), (200, 200, 200), id="black-car-on-light-road"),
        pytest.param("red", (0.24, 0.50), (40, 40, 40), id="red-car-on-dark-asphalt"),
    ],
)
def test_body_not_windows_or_road(
    colour: str, windscreen: tuple[float, float], road: tuple[int, int, int]
) -> None:
    """Dark glass larger than the visible body, or a contrasting road, must not win."""
    crop = render_car(PAINT[colour], windscreen=windscreen, road=road, seed=4)
    assert dominant_colour(crop) == colour


@pytest.mark.parametrize(
    "crop",
    [
        pytest.param(None, id="none"),
        pytest.param(np.zeros((0, 0, 3), np.uint8), id="empty"),
        pytest.param(np.full((15, 300, 3), 200, np.uint8), id="15px-high"),
        pytest.param(np.full((300, 15, 3), 200, np.uint8), id="15px-wide"),
        pytest.param(np.full((100, 100), 200, np.uint8), id="greyscale-2d"),
        pytest.param(np.full((100, 100, 4), 200, np.uint8), id="four-channels"),
    ],
)
def test_unusable_crops_give_none(crop: np.ndarray | None) -> None:
    assert dominant_colour(crop) is None


def test_smallest_accepted_crop() -> None:
    crop = cv2.resize(render_car(PAINT["blue"]), (16, 16), interpolation=cv2.INTER_AREA)
    assert dominant_colour(crop) == "blue"


def test_deterministic_across_calls_and_global_rng() -> None:
    crops = [render_car(PAINT[c], seed=7) for c in COLOURS]
    first = [dominant_colour(c) for c in crops]
    for seed in (1, 12345):
        cv2.setRNGSeed(seed)  # kmeans must not depend on OpenCV's global generator
        assert [dominant_colour(c) for c in crops] == first
    assert first == list(COLOURS)


def test_does_not_modify_the_crop() -> None:
    crop = render_car(PAINT["green"])
    before = crop.copy()
    dominant_colour(crop)
    assert np.array_equal(crop, before)


def test_fast_on_a_300px_crop() -> None:
    crop = render_car(PAINT["red"])
    dominant_colour(crop)  # warm-up
    times = []
    for _ in range(25):
        t0 = time.perf_counter()
        dominant_colour(crop)
        times.append(time.perf_counter() - t0)
    assert float(np.median(times)) < 0.005


@pytest.mark.parametrize(
    ("hsv", "name"),
    [
        pytest.param((0, 0, 250), "white", id="white"),
        pytest.param((100, 30, 200), "white", id="bluish-white"),
        pytest.param((0, 10, 160), "silver", id="silver"),
        pytest.param((0, 10, 100), "grey", id="grey"),
        pytest.param((0, 10, 30), "black", id="black"),
        pytest.param((120, 255, 40), "black", id="very-dark-blue-is-black"),
        pytest.param((0, 220, 200), "red", id="red"),
        pytest.param((175, 220, 200), "red", id="red-wraps-around"),
        pytest.param((160, 150, 220), "red", id="pink-magenta-is-red"),
        pytest.param((15, 240, 240), "orange", id="orange"),
        pytest.param((28, 220, 230), "yellow", id="yellow"),
        pytest.param((60, 200, 150), "green", id="green"),
        pytest.param((110, 200, 170), "blue", id="blue"),
        pytest.param((137, 180, 150), "blue", id="violet-is-blue"),
        pytest.param((110, 200, 80), "blue", id="dark-blue-stays-blue"),
        pytest.param((14, 180, 110), "brown", id="brown-dark-orange"),
        pytest.param((25, 150, 120), "brown", id="brown-dark-yellow"),
        pytest.param((2, 120, 110), "brown", id="brown-dull-dark-red"),
        pytest.param((2, 230, 110), "red", id="saturated-dark-red-stays-red"),
    ],
)
def test_hsv_naming_rules(hsv: tuple[int, int, int], name: str) -> None:
    assert name_hsv(*hsv) == name
    assert name in COLOURS
