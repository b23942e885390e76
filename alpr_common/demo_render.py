"""Rendering helpers for :mod:`alpr_common.demo_video`: plate styles and textures, the road
background, car bodies, motion blur, lighting and sensor noise.

Text is drawn with OpenCV's Hershey DUPLEX font (always available).  With ``font="ttf"``
(or ``"auto"`` when Pillow and DejaVuSans-Bold are installed) it is drawn with that TrueType
font instead; Hershey draws O/0 and I/1 nearly alike, so the default plates avoid them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpr_common.plate_text import normalize

BGR = tuple[int, int, int]
TTF_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
TEX_HEIGHT = 192  # plate texture height before the mip pyramid
EU_BLUE: BGR = (153, 51, 0)
YELLOW: BGR = (20, 200, 250)


@dataclass(frozen=True)
class PlateStyle:
    name: str
    region: str  # reported in the ground truth: uk, eu, us, br
    size_mm: tuple[int, int]  # width, height
    background: BGR
    ink: BGR
    text_box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of the plate
    height_px: tuple[float, float]  # on-screen plate height far -> near, at 720 px frames
    band: str = ""  # "eu:<code>", "top:<text>" (blue band), "script:<text>", "strip:<text>"
    separators: str = ""  # "uk" (AB12 CDE), "dash" (at letter/digit changes), "" (none)


STYLES: dict[str, PlateStyle] = {
    s.name: s
    for s in (
        PlateStyle("uk_front", "uk", (520, 111), (250, 250, 250), (15, 15, 15),
                   (0.05, 0.14, 0.95, 0.86), (40, 88), separators="uk"),
        PlateStyle("uk_rear", "uk", (520, 111), YELLOW, (15, 15, 15),
                   (0.05, 0.14, 0.95, 0.86), (40, 88), separators="uk"),
        PlateStyle("fr", "eu", (520, 110), (245, 245, 245), (15, 15, 15),
                   (0.12, 0.14, 0.88, 0.86), (40, 88), band="eu:F", separators="dash"),
        PlateStyle("nl", "eu", (520, 110), YELLOW, (15, 15, 15),
                   (0.13, 0.14, 0.95, 0.86), (40, 88), band="eu:NL", separators="dash"),
        PlateStyle("us", "us", (305, 152), (240, 240, 240), (110, 45, 25),
                   (0.07, 0.27, 0.93, 0.80), (48, 90), band="script:California"),
        PlateStyle("br_old", "br", (400, 130), (185, 188, 190), (20, 20, 20),
                   (0.05, 0.30, 0.95, 0.90), (42, 90), band="strip:SP - SAO PAULO",
                   separators="br"),
        PlateStyle("mercosur", "br", (400, 130), (245, 245, 245), (15, 15, 15),
                   (0.06, 0.32, 0.94, 0.90), (42, 90), band="top:BRASIL"),
    )
}  # fmt: skip
REGION_ALIASES = {"eu": "fr", "br": "mercosur", "uk": "uk"}  # "uk": front/rear by direction


def resolve_style(plate: str, region: str, approaching: bool) -> PlateStyle:
    """A style name, or a region (uk, eu, us, br) mapped to its default style."""
    key = region.lower()
    if key == "uk":
        return STYLES["uk_front" if approaching else "uk_rear"]
    if key == "br" and not re.fullmatch(r"[A-Z]{3}\d[A-Z]\d{2}", normalise(plate)):
        return STYLES["br_old"]
    key = REGION_ALIASES.get(key, key)
    if key not in STYLES:
        known = sorted({*STYLES, "eu", "br"})
        raise ValueError(f"unknown plate region/style {region!r}; use one of {known}")
    return STYLES[key]


def normalise(text: str) -> str:
    return normalize(text)


def display_text(text: str, style: PlateStyle) -> str:
    """How the plate is printed: given separators are kept, else the style's pattern."""
    if re.search(r"[ \-]", text.strip()):
        return text.strip().upper()
    t = normalise(text)
    if style.separators == "uk" and len(t) == 7:
        return f"{t[:4]} {t[4:]}"
    if style.separators == "br" and len(t) == 7:
        return f"{t[:3]}-{t[3:]}"
    if style.separators == "dash":
        return "-".join(m.group(0) for m in re.finditer(r"[A-Z]+|\d+", t))
    return t


def _ttf_font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(TTF_PATH), size)


def ttf_available() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return TTF_PATH.is_file()


def text_mask(text: str, cap_px: int, font: str, thin: bool = False) -> np.ndarray:
    """uint8 ink mask of ``text`` cropped to its ink, letters about ``cap_px`` tall."""
    if font == "ttf":
        from PIL import Image, ImageDraw

        f = _ttf_font(int(cap_px * 1.37))
        right, bottom = f.getbbox(text)[2:]
        img = Image.new("L", (right + 8, bottom + 8), 0)
        ImageDraw.Draw(img).text((4, 4), text, fill=255, font=f)
        mask = np.asarray(img, np.uint8)
    else:
        face = cv2.FONT_HERSHEY_SIMPLEX if thin else cv2.FONT_HERSHEY_DUPLEX
        if font == "script":
            face = cv2.FONT_HERSHEY_SCRIPT_SIMPLEX
        scale = cap_px / 22.0
        thick = max(1, round(cap_px * (0.05 if thin else 0.11)))
        (tw, th), base = cv2.getTextSize(text, face, scale, thick)
        pad = thick + 4
        mask = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
        cv2.putText(mask, text, (pad, pad + th), face, scale, (255,), thick, cv2.LINE_AA)
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _paint(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], ink: BGR) -> None:
    """Fit ``mask`` into box (x1, y1, x2, y2; condensed if too wide, centred) with ``ink``."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    w = min(bw, round(mask.shape[1] * bh / mask.shape[0]))
    m = cv2.resize(mask, (w, bh), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None]
    x = x1 + (bw - w) // 2
    roi = img[y1 : y1 + bh, x : x + w].astype(np.float32)
    img[y1 : y1 + bh, x : x + w] = (roi + (np.array(ink, np.float32) - roi) * (m / 255)).astype(
        np.uint8
    )


def render_plate(
    display: str, style: PlateStyle, rng: np.random.Generator, font: str
) -> np.ndarray:
    """The plate as a BGR texture TEX_HEIGHT px tall (aspect from ``style.size_mm``).

    ``display`` with line breaks (``"AB12\nCDE"``) prints a multi-row plate (motorcycle,
    square rear plates): the text box is split into equal rows with a small gap."""
    h = TEX_HEIGHT
    w = round(h * style.size_mm[0] / style.size_mm[1])
    img = np.empty((h, w, 3), np.uint8)
    img[:] = style.background
    kind, _, label = style.band.partition(":")
    if kind == "eu":
        bw = round(w * 0.09)
        cv2.rectangle(img, (0, 0), (bw, h), EU_BLUE, -1)
        for k in range(12):  # the ring of stars
            a = 2 * np.pi * k / 12
            c = (round(bw / 2 + 0.28 * bw * np.cos(a)), round(0.3 * h + 0.28 * bw * np.sin(a)))
            cv2.circle(img, c, max(1, h // 60), YELLOW, -1, cv2.LINE_AA)
        code = text_mask(label, 40, "hershey", thin=True)
        _paint(img, code, (bw // 5, round(h * 0.62), bw - bw // 5, round(h * 0.85)), (255,) * 3)
        if style.name == "fr":  # the regional identifier band on the right
            cv2.rectangle(img, (w - bw, 0), (w, h), EU_BLUE, -1)
    elif kind == "top":
        cv2.rectangle(img, (0, 0), (w, round(h * 0.22)), EU_BLUE, -1)
        _paint(img, text_mask(label, 40, "hershey", thin=True),
               (w // 3, round(h * 0.05), 2 * w // 3, round(h * 0.17)), (255, 255, 255))  # fmt: skip
    elif kind == "script":
        m = text_mask(label, 40, "script")
        _paint(img, m, (w // 4, round(h * 0.05), 3 * w // 4, round(h * 0.2)), (40, 40, 200))
    elif kind == "strip":
        _paint(img, text_mask(label, 40, "hershey", thin=True),
               (w // 4, round(h * 0.08), 3 * w // 4, round(h * 0.2)), (20, 20, 20))  # fmt: skip
    for _ in range(int(rng.integers(2, 6))):  # grime
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(h // 10, h // 3)), int(rng.integers(h // 12, h // 5)))
        grime = img.copy()
        cv2.ellipse(grime, c, ax, float(rng.uniform(0, 180)), 0, 360, (90, 100, 110), -1)
        cv2.addWeighted(grime, float(rng.uniform(0.05, 0.15)), img, 1.0, 0, img)
    x1, y1, x2, y2 = style.text_box
    rows = display.split("\n")
    row_h = (y2 - y1) / (len(rows) + 0.15 * (len(rows) - 1))  # rows and gaps fill the box
    for k, row in enumerate(rows):
        top = y1 + k * 1.15 * row_h
        bottom = y2 if k == len(rows) - 1 else top + row_h
        box = (round(x1 * w), round(top * h), round(x2 * w), round(bottom * h))
        _paint(img, text_mask(row, 120, font), box, style.ink)
    cv2.rectangle(img, (1, 1), (w - 2, h - 2), (30, 30, 30), max(2, h // 45), cv2.LINE_AA)
    return img


def pyramid(texture: np.ndarray) -> list[np.ndarray]:
    """BGRA mip levels (alpha 255), largest first, down to about 12 px tall."""
    levels = [cv2.cvtColor(texture, cv2.COLOR_BGR2BGRA)]
    while levels[-1].shape[0] >= 24:
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


def background(
    width: int, height: int, rng: np.random.Generator, vanish_y: float, edge: float
) -> np.ndarray:
    """Asphalt seen from above: mottled grey, lane lines converging to (w/2, vanish_y), kerbs
    ``edge`` px either side of the centre line at the bottom row."""
    w, h = width, height
    ramp = np.linspace(112, 88, h, dtype=np.float32)[:, None]
    low = cv2.resize(
        rng.normal(0, 9, (9, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0, 5, (h, w)).astype(np.float32)
    road = ramp + low + cv2.GaussianBlur(grain, (3, 3), 0)
    img = cv2.merge([road + 4, road + 2, road]).clip(0, 255).astype(np.uint8)
    vx = w / 2

    def x_at(offset: float, y: float) -> int:  # a line through the vanishing point
        return round(vx + offset * (y - vanish_y) / (h - vanish_y))

    for side in (-1, 1):  # kerb and pavement beyond the outer lane edges
        line = [(x_at(side * edge, 0), 0), (x_at(side * edge, h), h)]
        far = [(side * 2 * w + w // 2, h), (side * 2 * w + w // 2, 0)]
        cv2.fillPoly(img, [np.array(line + far, np.int32)], (150, 152, 155), cv2.LINE_AA)
        cv2.polylines(img, [np.array(line, np.int32)], False, (235, 235, 235), 4, cv2.LINE_AA)
    y = 0.0
    while y < h:  # centre dashes, longer towards the camera
        dash = 0.1 * (y - vanish_y)
        p1, p2 = (round(vx), round(y)), (round(vx), round(y + dash))
        cv2.line(img, p1, p2, (215, 215, 215), max(2, round(0.004 * (y - vanish_y))), cv2.LINE_AA)
        y += 2.2 * dash
    for _ in range(6):  # cracks
        pts = np.cumsum(rng.normal(0, 12, (8, 2)), axis=0) + rng.uniform((0, 0), (w, h))
        cv2.polylines(img, [pts.astype(np.int32)], False, (70, 70, 72), 1, cv2.LINE_AA)
    return img


def transform(points: np.ndarray, centre: tuple[float, float], angle: float) -> np.ndarray:
    """Rotate local points [N, 2] by ``angle`` (rad) and move them to ``centre``."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]], np.float32)
    return np.asarray(points, np.float32) @ rot.T + np.array(centre, np.float32)


def _poly(img: np.ndarray, pts: np.ndarray, colour: Sequence[float]) -> None:
    cv2.fillConvexPoly(img, np.round(pts * 16).astype(np.int32), colour, cv2.LINE_AA, 4)


def draw_body(
    layer: np.ndarray, alpha: np.ndarray, centre: tuple[float, float], angle: float,
    unit: float, colour: BGR, front: bool,
) -> None:  # fmt: skip
    """A car's front (or rear) around a plate centred at ``centre``; ``unit`` px per plate
    height (EU-equivalent)."""

    def rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
        local = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32) * unit
        return transform(local, centre, angle)

    _poly(alpha, rect(-3.6, 0.4, 3.6, 1.6), (110,))  # shadow on the road
    _poly(layer, rect(-3.6, 0.4, 3.6, 1.6), (20, 20, 20))
    _poly(alpha, rect(-3.3, -3.3, 3.3, 1.0), (255,))
    _poly(layer, rect(-3.3, -3.3, 3.3, 1.0), colour)
    dark = tuple(int(c * 0.55) for c in colour)
    glass = (70, 60, 55)
    _poly(layer, rect(-2.8, -3.2, 2.8, -2.2), glass)  # windscreen / rear window
    _poly(layer, rect(-3.3, 0.55, 3.3, 1.0), (35, 35, 35))  # bumper
    if front:
        _poly(layer, rect(-1.8, -1.4, 1.8, -0.7), (25, 25, 25))  # grille
        lamp: BGR = (225, 230, 235)
    else:
        _poly(layer, rect(-1.9, -1.3, 1.9, -0.8), dark)  # boot lid line
        lamp = (40, 40, 190)
    for side in (-1, 1):
        _poly(layer, rect(side * 2.3, -1.4, side * 3.1, -0.8), lamp)


def motion_kernel(dx: float, dy: float) -> np.ndarray:
    """Linear blur along (dx, dy) px (the exposure's travel), softened by lens blur."""
    length = float(np.hypot(dx, dy))
    size = 2 * int(np.ceil(length / 2)) + 3
    k = np.zeros((size, size), np.float32)
    c = size // 2
    p1 = (round((c - dx / 2) * 16), round((c - dy / 2) * 16))
    p2 = (round((c + dx / 2) * 16), round((c + dy / 2) * 16))
    cv2.line(k, p1, p2, (1.0,), 1, cv2.LINE_AA, 4)
    soft = np.asarray(cv2.GaussianBlur(k, (3, 3), 0.6), np.float32)
    return soft / soft.sum()


class Lighting:
    """Slow global brightness drift, one dim spell, and a swaying diagonal shadow band."""

    def __init__(
        self, width: int, height: int, fps: float, dim_at: int, rng: np.random.Generator
    ) -> None:
        self.fps, self.dim_at, self.w = fps, dim_at, width
        self.phase = float(rng.uniform(0, 2 * np.pi))
        band = max(8, width // 9)
        slope = float(rng.uniform(0.3, 0.6))
        self.span = band + round(slope * height)
        prof = np.zeros((height, self.span), np.float32)
        for y in range(height):
            x0 = round(slope * (height - y))
            prof[y, x0 : x0 + band] = 1.0
        self.mask = cv2.GaussianBlur(prof, (0, 0), band / 6)
        noise = np.round(rng.normal(0, 3.5, (height + 16, width + 16, 3)))
        self.noise_up = noise.clip(0, 255).astype(np.uint8)
        self.noise_down = (-noise).clip(0, 255).astype(np.uint8)

    def gain(self, frame: int) -> float:
        t = frame / self.fps
        g = 1.0 + 0.08 * np.sin(2 * np.pi * t / 9.0 + self.phase)
        d = abs(frame - self.dim_at) / (1.6 * self.fps)
        return float(g * (1 - 0.38 * 0.5 * (1 + np.cos(np.pi * d)))) if d < 1 else float(g)

    def apply(self, img: np.ndarray, frame: int, rng: np.random.Generator) -> None:
        cv2.convertScaleAbs(img, img, alpha=self.gain(frame))
        t = frame / self.fps
        x0 = round(self.w / 2 + 0.55 * self.w * np.sin(2 * np.pi * t / 14.0) - self.span / 2)
        a, b = max(0, x0), min(self.w, x0 + self.span)
        if a < b:
            shade = 1 - 0.42 * self.mask[:, a - x0 : b - x0]
            img[:, a:b] = cv2.blendLinear(img[:, a:b], np.zeros_like(img[:, a:b]), shade, 1 - shade)
        dy, dx = (int(v) for v in rng.integers(0, 16, 2))
        h, w = img.shape[:2]
        cv2.add(img, self.noise_up[dy : dy + h, dx : dx + w], img)
        cv2.subtract(img, self.noise_down[dy : dy + h, dx : dx + w], img)
