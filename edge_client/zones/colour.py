"""A vehicle's dominant body colour, named from a small fixed palette.

Operators and search need "the red hatchback", not RGB triples, so the crop of a vehicle
(its detector box, BGR) is reduced to one of ``COLOURS``:

1. Take the central region: drop ~15% at the left, right and top (background around the
   body) and the bottom ~25% (wheels, shadow, road).
2. Downsample to at most 64x64 (area averaging also suppresses sensor noise).
3. k-means with k=3 in CIE Lab (perceptual distances, so shading splits less than hue).
   The initial labels are the lightness terciles, which makes the result deterministic
   without touching OpenCV's global random generator.
4. Pick the body cluster: the largest one, unless it is window-dark (V < ``DARK_V``) while
   a not-dark cluster holds at least ``BODY_MIN_SHARE`` of the pixels (then that one: the
   windscreen and grille are the dark part of a light car). A dark largest cluster with no
   sizeable light one is a black car.
5. Name the cluster's mean colour with the HSV rules in ``name_hsv`` (OpenCV 8-bit HSV:
   H 0..179 = degrees / 2, S and V 0..255).

A few milliseconds per crop (about 1 ms for 300x300 here). Pure function, no state.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

COLOURS: Final[tuple[str, ...]] = (
    "white",
    "silver",
    "grey",
    "black",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "brown",
)
"""The palette: every name ``dominant_colour`` can return."""

MIN_SIDE: Final = 16  # crops smaller than this (px) on either side give None
MAX_SAMPLE: Final = 64  # the central region is downsampled to at most this many px a side
BORDER: Final = 0.15  # fraction dropped at the left, right and top
BOTTOM: Final = 0.25  # fraction dropped at the bottom (wheels, road)
K: Final = 3
BODY_MIN_SHARE: Final = 0.25  # a light cluster this big beats a larger dark (window) one
MIN_SHARE: Final = 0.10  # smaller clusters are never the body (plates, lights, reflections)

# HSV naming rules (OpenCV 8-bit scale).
DARK_V: Final = 60  # below: black (and, for cluster choice, "window-dark")
GREY_S: Final = 50  # below: achromatic, named by value
WHITE_V: Final = 190  # achromatic and at least this bright: white
SILVER_V: Final = 125  # achromatic, this bright up to WHITE_V: silver; below: grey
BROWN_V: Final = 150  # orange/yellow hues darker than this are brown
BROWN_RED_S: Final = 150  # ...and so are dull (less saturated) dark reds
# Hue bins, upper bounds (exclusive) in OpenCV hue units (degrees / 2).
HUE_BINS: Final[tuple[tuple[int, str], ...]] = (
    (8, "red"),  # 0-16 deg
    (20, "orange"),  # 16-40 deg
    (34, "yellow"),  # 40-68 deg
    (85, "green"),  # 68-170 deg
    (130, "blue"),  # 170-260 deg
    (145, "blue"),  # 260-290 deg: violet, nearest palette entry
    (180, "red"),  # 290-360 deg: magenta, pink, crimson
)

_CRITERIA: Final = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)


def name_hsv(h: float, s: float, v: float) -> str:
    """Name an HSV colour (OpenCV 8-bit scale) with the palette's rules:

    - V < 60: black (hue and saturation are noise this dark);
    - S < 50: achromatic: white (V >= 190), silver (V >= 125), else grey;
    - otherwise by hue: red, orange, yellow, green, blue (violet counts as blue, magenta
      and pink as red);
    - brown: orange or yellow hues darker than V 150, and dark dull reds (V < 150,
      S < 150).
    """
    if v < DARK_V:
        return "black"
    if s < GREY_S:
        if v >= WHITE_V:
            return "white"
        return "silver" if v >= SILVER_V else "grey"
    name = next(n for upper, n in HUE_BINS if h < upper)
    if v < BROWN_V and (name in ("orange", "yellow") or (name == "red" and s < BROWN_RED_S)):
        return "brown"
    return name


def _bgr_to_hsv(bgr: np.ndarray) -> tuple[float, float, float]:
    px = np.clip(np.round(bgr), 0, 255).astype(np.uint8).reshape(1, 1, 3)
    h, s, v = cv2.cvtColor(px, cv2.COLOR_BGR2HSV)[0, 0]
    return float(h), float(s), float(v)


def dominant_colour(crop_bgr: np.ndarray | None) -> str | None:
    """The dominant body colour of a vehicle crop (BGR uint8, HxWx3), one of ``COLOURS``;
    None for a missing, empty, too small (< 16 px a side) or non-colour image."""
    if crop_bgr is None or crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3:
        return None
    h, w = crop_bgr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return None
    top, bottom = int(h * BORDER), round(h * (1.0 - BOTTOM))
    left, right = int(w * BORDER), round(w * (1.0 - BORDER))
    region = crop_bgr[top:bottom, left:right]
    rh, rw = region.shape[:2]
    scale = min(1.0, MAX_SAMPLE / max(rh, rw))
    if scale < 1.0:
        size = (max(1, round(rw * scale)), max(1, round(rh * scale)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    region = np.ascontiguousarray(region, dtype=np.uint8)
    bgr = region.reshape(-1, 3).astype(np.float32)
    lab = cv2.cvtColor(region, cv2.COLOR_BGR2Lab).reshape(-1, 3).astype(np.float32)
    n = len(lab)

    # Deterministic start: lightness terciles.
    order = np.argsort(lab[:, 0], kind="stable")
    initial = np.empty((n, 1), np.int32)
    initial[order, 0] = (np.arange(n) * K) // n
    _, labels, _ = cv2.kmeans(lab, K, initial, _CRITERIA, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    flat = np.asarray(labels).ravel()
    counts = np.bincount(flat, minlength=K)

    clusters: list[tuple[float, str, float]] = []  # (share, name, value), largest first
    for k in np.argsort(-counts, kind="stable"):
        share = counts[k] / n
        if share < MIN_SHARE:
            continue
        hh, ss, vv = _bgr_to_hsv(bgr[flat == k].mean(axis=0))
        clusters.append((share, name_hsv(hh, ss, vv), vv))
    # The largest cluster always holds >= 1/K of the pixels, so `clusters` is not empty.
    _, name, value = clusters[0]
    if value < DARK_V:
        light = [c for c in clusters[1:] if c[2] >= DARK_V and c[0] >= BODY_MIN_SHARE]
        if light:
            return light[0][1]
    return name
