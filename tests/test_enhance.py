"""edge_client.enhance: a dim, noisy plate comes out with more contrast and less noise;
shapes, dtypes and alpha survive; daylight, disabled and oversized crops are untouched;
bad configs and bad arrays are refused."""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_client.enhance import Enhancement, enhance, mean_luma, should_enhance

ON = Enhancement(enabled=True)
FLAT = (slice(12, 48), slice(150, 188))  # plate background right of the characters


def plate(brightness: float = 0.25, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """A 200x60 BGR plate (black text on white, dark surround), scaled to ``brightness``
    with seeded Gaussian luma noise of std ``noise`` added."""
    img = np.full((60, 200, 3), 30, np.uint8)
    cv2.rectangle(img, (4, 4), (196, 56), (255, 255, 255), -1)
    cv2.putText(img, "AB123", (10, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    f = img.astype(np.float32) * brightness
    f += np.random.default_rng(seed).normal(0, noise, f.shape[:2]).astype(np.float32)[..., None]
    return np.clip(f, 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)


def flat_noise(image: np.ndarray) -> float:
    """Laplacian variance inside the plate's blank area: zero for a clean image."""
    return float(cv2.Laplacian(luma(image)[FLAT], cv2.CV_64F).var())


def test_flat_region_is_blank_before_noise() -> None:
    clean = plate(noise=0.0)
    assert flat_noise(clean) == 0.0 and luma(clean)[FLAT].std() == 0.0


@pytest.mark.parametrize(
    ("denoise", "noise_goes"),
    [("bilateral", "down"), ("nlmeans", "down"), ("none", "up")],
)
def test_dim_noisy_plate_gains_contrast_and_loses_noise(denoise: str, noise_goes: str) -> None:
    dim = plate()
    out = enhance(dim, Enhancement(enabled=True, denoise=denoise))
    assert luma(out).std() > 1.2 * luma(dim).std()  # contrast stretched
    before, after = flat_noise(dim), flat_noise(out)
    if noise_goes == "down":
        assert after < 0.75 * before, (before, after)
    else:  # CLAHE alone amplifies the grain: the denoiser is what removes it
        assert after > before, (before, after)


def _views() -> dict[str, np.ndarray]:
    bgr = plate()
    grey = luma(bgr).astype(np.uint8)
    bgra = np.dstack([bgr, np.arange(bgr.shape[0] * bgr.shape[1]).reshape(60, 200) % 256])
    return {
        "bgr": bgr,
        "grey": grey,
        "grey_hw1": grey[..., None],
        "bgra": bgra.astype(np.uint8),
        "strided_view": np.tile(bgr, (2, 2, 1))[::2, 1::2],
        "one_pixel": bgr[:1, :1],
    }


CONFIGS = {
    "default": ON,
    "nlmeans": Enhancement(enabled=True, denoise="nlmeans"),
    "clahe_only": Enhancement(enabled=True, denoise="none"),
    "denoise_only": Enhancement(enabled=True, clahe_clip=0),
    "nothing": Enhancement(enabled=True, clahe_clip=0, denoise_strength=0),
    "coarse_grid": Enhancement(enabled=True, clahe_grid=1, clahe_clip=40),
    "disabled": Enhancement(),
}


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("view", _views())
def test_shape_dtype_alpha_preserved_and_output_is_new(view: str, cfg_name: str) -> None:
    image = _views()[view]
    original = image.copy()
    out = enhance(image, CONFIGS[cfg_name])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    assert np.array_equal(image, original)  # input untouched
    if image.ndim == 3 and image.shape[2] == 4:
        assert np.array_equal(out[..., 3], image[..., 3])


@pytest.mark.parametrize(
    ("brightness", "threshold", "changed"),
    [
        (1.0, 100.0, False),  # daylight crop: left alone
        (0.25, 100.0, True),  # night crop: enhanced
        (0.25, None, True),  # no threshold: every crop
        (1.0, None, True),
    ],
)
def test_only_below_brightness(brightness: float, threshold: float | None, changed: bool) -> None:
    image = plate(brightness=brightness)
    cfg = Enhancement(enabled=True, only_below_brightness=threshold)
    assert (threshold is None) or ((mean_luma(image) < threshold) == changed)
    assert should_enhance(image, cfg) is changed
    assert (not np.array_equal(enhance(image, cfg), image)) is changed


@pytest.mark.parametrize(
    ("cfg", "changed"),
    [
        (Enhancement(), False),
        (Enhancement(enabled=True, max_pixels=200 * 60 - 1), False),
        (Enhancement(enabled=True, max_pixels=200 * 60), True),
    ],
)
def test_disabled_and_oversized_crops_pass_unchanged(cfg: Enhancement, changed: bool) -> None:
    image = plate()
    assert should_enhance(image, cfg) is changed
    assert (not np.array_equal(enhance(image, cfg), image)) is changed


def test_mean_luma_of_grey_and_colour_agree() -> None:
    bgr = plate(brightness=0.5)
    assert mean_luma(bgr) == pytest.approx(mean_luma(luma(bgr).astype(np.uint8)), abs=0.5)


@pytest.mark.parametrize(
    "bad",
    [
        {"clahe_clip": -0.1},
        {"clahe_clip": 41},
        {"clahe_grid": 0},
        {"clahe_grid": 65},
        {"clahe_grid": 2.5},
        {"denoise": "median"},
        {"denoise_strength": -1},
        {"denoise_strength": 101},
        {"only_below_brightness": -1},
        {"only_below_brightness": 256},
        {"max_pixels": 0},
        {"enable": True},  # typo: unknown keys are refused
    ],
)
def test_invalid_config_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as err:
        Enhancement(**bad)
    assert next(iter(bad)) in str(err.value)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 0), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "float32"),
        (np.zeros((10, 10, 2), np.uint8), "(10, 10, 2)"),
        (np.zeros((2, 10, 10, 3), np.uint8), "(2, 10, 10, 3)"),
        (np.zeros(10, np.uint8), "(10,)"),
        ([[0, 0], [0, 0]], "list"),
    ],
)
@pytest.mark.parametrize("cfg", [ON, Enhancement()])
def test_bad_arrays_raise_value_error(image: Any, message: str, cfg: Enhancement) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        enhance(image, cfg)
