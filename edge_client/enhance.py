"""Enhancement of a read crop before it goes to the plate reader (night, IR, dim light).

``enhance`` equalises the crop's lightness with CLAHE (contrast-limited adaptive histogram
equalisation) on the L channel of LAB, then smooths the noise that the stretch made visible
with the chosen denoiser, on L only (colour is left as it was: the reader needs the
characters' edges, and one channel costs a third of three). ``only_below_brightness``
limits all of it to dark crops, so daylight crops reach the reader untouched, and
``max_pixels`` bounds the time one crop can cost the camera loop.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from alpr_common.config import Strict

# The bilateral filter's neighbourhood (pixels) and the NL-means patch / search windows:
# small, because read crops are small and the camera loop waits for them.
_BILATERAL_D = 5
_NLM_TEMPLATE = 5
_NLM_SEARCH = 11


class Enhancement(Strict):
    """Contrast and noise enhancement of a read crop (off by default)."""

    enabled: bool = Field(
        False,
        description=(
            "enhance read crops before they are sent to the reader; helps night / IR / dim "
            "cameras, costs a few milliseconds per crop"
        ),
    )
    clahe_clip: float = Field(
        2.0, ge=0, le=40,
        description=(
            "CLAHE contrast limit (0 switches CLAHE off); raising it pulls faint characters "
            "out of a dark plate but amplifies noise and glare, lowering it stays closer to "
            "the original"
        ),
    )  # fmt: skip
    clahe_grid: int = Field(
        8, ge=1, le=64,
        description=(
            "CLAHE tiles per side; raising it equalises smaller regions (uneven light across "
            "the plate), lowering it treats the crop more as a whole (fewer tile artefacts)"
        ),
    )  # fmt: skip
    denoise: Literal["none", "bilateral", "nlmeans"] = Field(
        "bilateral",
        description=(
            "denoiser run after CLAHE on the lightness channel: bilateral is fast and keeps "
            "edges; nlmeans removes more noise but costs an order of magnitude more time; "
            "none skips it"
        ),
    )
    denoise_strength: float = Field(
        10.0, ge=0, le=100,
        description=(
            "noise level, in lightness steps of 0..255, that the denoiser smooths away "
            "(0 switches it off); raising it cleans grainier crops but blurs thin strokes, "
            "lowering it keeps detail and leaves more grain"
        ),
    )  # fmt: skip
    only_below_brightness: float | None = Field(
        None, ge=0, le=255,
        description=(
            "enhance only crops whose mean luma (0..255) is below this; unset enhances every "
            "crop. Raising it enhances dusk crops too, lowering it limits enhancement to the "
            "darkest night crops and leaves daylight ones untouched"
        ),
    )  # fmt: skip
    max_pixels: int = Field(
        1_048_576, ge=1, le=67_108_864,
        description=(
            "crops with more pixels than this are sent unenhanced; raising it enhances "
            "bigger crops at the cost of a slower camera loop, lowering it bounds the time "
            "one crop can take"
        ),
    )  # fmt: skip


def _validate(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"crop must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"crop must be uint8, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"crop must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"crop is empty: shape {image.shape}")


def mean_luma(image: np.ndarray) -> float:
    """Mean luma (0..255) of a uint8 grey, BGR or BGRA crop."""
    _validate(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return float(image.mean())
    bgr = np.ascontiguousarray(image[..., :3])
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).mean())


def should_enhance(image: np.ndarray, cfg: Enhancement) -> bool:
    """Whether ``enhance`` changes ``image`` under ``cfg`` (enabled, small enough, dark
    enough); raises ``ValueError`` for an array that is not a crop."""
    _validate(image)
    if not cfg.enabled or image.shape[0] * image.shape[1] > cfg.max_pixels:
        return False
    return cfg.only_below_brightness is None or mean_luma(image) < cfg.only_below_brightness


def _enhance_lightness(light: np.ndarray, cfg: Enhancement) -> np.ndarray:
    out = light
    if cfg.clahe_clip > 0:
        clahe = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(cfg.clahe_grid,) * 2)
        out = clahe.apply(out)
    if cfg.denoise_strength > 0:
        if cfg.denoise == "bilateral":
            s = 2.0 * cfg.denoise_strength
            out = cv2.bilateralFilter(out, _BILATERAL_D, s, _BILATERAL_D)
        elif cfg.denoise == "nlmeans":
            out = cv2.fastNlMeansDenoising(
                out, None, h=cfg.denoise_strength,
                templateWindowSize=_NLM_TEMPLATE, searchWindowSize=_NLM_SEARCH,
            )  # fmt: skip
    return out if out is not light else light.copy()


def enhance(image_bgr: np.ndarray, cfg: Enhancement) -> np.ndarray:
    """``image_bgr`` enhanced per ``cfg``, as a new uint8 array of the same shape.

    Grey (HxW, HxWx1) crops are enhanced as their own lightness; BGRA crops keep their
    alpha. A crop that ``should_enhance`` declines is returned as an unchanged copy.
    Raises ``ValueError`` for an empty, non-uint8 or non-image array.
    """
    if not should_enhance(image_bgr, cfg):
        return image_bgr.copy()
    if image_bgr.ndim == 2 or image_bgr.shape[2] == 1:
        grey = np.ascontiguousarray(image_bgr.reshape(image_bgr.shape[:2]))
        return _enhance_lightness(grey, cfg).reshape(image_bgr.shape)
    lab = cv2.cvtColor(np.ascontiguousarray(image_bgr[..., :3]), cv2.COLOR_BGR2LAB)
    lab[..., 0] = _enhance_lightness(np.ascontiguousarray(lab[..., 0]), cfg)
    bgr = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    if image_bgr.shape[2] == 4:
        return np.dstack([bgr, image_bgr[..., 3]])
    return bgr
