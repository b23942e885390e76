"""Synthetic licence plates for training the recogniser (Pillow + OpenCV, seeded).

Styles: US state-style plates (plain, coloured, gradient and pictorial backgrounds, state
names above and slogans below in other fonts, stickers, separators and emblems between
groups, embossed or flat characters, dealer frames), EU plates with the blue band, UK
white and yellow plates, Brazil's old grey plates with their city strip and Mercosur
plates with the BRASIL band, and two-row plates laid out as the server reads them (the
rows side by side, ``ensemble.preprocess.rec_crop_lines``).

Every plate comes with the box of its main text line, so a training view can be the
whole plate (what a YOLO box holds) or the tight line (what the text-line refinement
cuts): the network learns to read the plate's characters and to ignore everything else.

Fonts are TrueType files found on the machine: Matplotlib's bundled DejaVu, STIX and
Computer Modern faces (Matplotlib is in the training environment) and the system's
DejaVu, plus OpenCV's Hershey faces. No font is downloaded.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

BGR = tuple[int, int, int]
LETTERS = string.ascii_uppercase
DIGITS = string.digits

FONT_FILES = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSans.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansDisplay.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneral.ttf",
    "cmss10.ttf",
    "cmb10.ttf",
    "cmtt10.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSansCondensed.ttf",
)
HERSHEY = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)

US_STATES = (
    "ALABAMA",
    "ALASKA",
    "ARIZONA",
    "ARKANSAS",
    "California",
    "COLORADO",
    "Connecticut",
    "DELAWARE",
    "Florida",
    "GEORGIA",
    "HAWAII",
    "IDAHO",
    "ILLINOIS",
    "INDIANA",
    "IOWA",
    "KANSAS",
    "KENTUCKY",
    "LOUISIANA",
    "MAINE",
    "MARYLAND",
    "MASSACHUSETTS",
    "Michigan",
    "MINNESOTA",
    "MISSISSIPPI",
    "MISSOURI",
    "MONTANA",
    "NEBRASKA",
    "NEVADA",
    "NEW HAMPSHIRE",
    "NEW JERSEY",
    "NEW MEXICO",
    "NEW YORK",
    "NORTH CAROLINA",
    "NORTH DAKOTA",
    "OHIO",
    "OKLAHOMA",
    "OREGON",
    "Pennsylvania",
    "RHODE ISLAND",
    "SOUTH CAROLINA",
    "SOUTH DAKOTA",
    "TENNESSEE",
    "TEXAS",
    "UTAH",
    "VERMONT",
    "VIRGINIA",
    "WASHINGTON",
    "WEST VIRGINIA",
    "WISCONSIN",
    "WYOMING",
    "DISTRICT OF COLUMBIA",
)
SLOGANS = (
    "Land of Lincoln",
    "Empire State",
    "Sunshine State",
    "The Lone Star State",
    "visitPA.com",
    "First in Flight",
    "Great Lakes Splendor",
    "Live Free or Die",
    "Famous Potatoes",
    "Garden State",
    "America's Dairyland",
    "Peach State",
    "Wild, Wonderful",
    "Grand Canyon State",
    "10,000 Lakes",
    "Big Sky Country",
    "Show Me State",
    "Green Mountains",
    "Ocean State",
    "Aloha State",
    "The Natural State",
    "DEALER",
    "Treasure State",
    "Spirit of America",
    "dmv.ca.gov",
    "Discover",
    "Sportsman's Paradise",
    "Centennial",
    "Old Line State",
)
DEALERS = (
    "AUTO MALL",
    "TOYOTA OF",
    "HONDA",
    "FORD",
    "CHEVROLET",
    "MOTORS",
    "NISSAN",
    "CARMAX",
    "SUBARU",
    "JEEP",
    "KIA",
    "AUTO SALES",
)
BR_CITIES = (
    "SP - SAO PAULO",
    "RJ - RIO DE JANEIRO",
    "MG - BELO HORIZONTE",
    "PR - CURITIBA",
    "RS - PORTO ALEGRE",
    "SC - JOINVILLE",
    "BA - SALVADOR",
    "GO - GOIANIA",
)
EU_CODES = ("D", "F", "NL", "B", "I", "E", "PL", "CZ", "SK", "A", "H", "RO", "BG", "HR", "P")

# Plate masks by region (L letter, D digit, A either); random strings are mixed in too so
# that the network reads characters rather than learning formats.
MASKS: dict[str, tuple[str, ...]] = {
    "us": (
        "LLLDDDD",
        "DLLLDDD",
        "LLLDDD",
        "DDDLLL",
        "DLLDDD",
        "DDLLDD",
        "LLDDDDD",
        "DDDDLL",
        "LDDLLL",
        "DLLLDD",
        "DDDLLLL",
        "LLDDLL",
        "DDDDDD",
        "LLLLDD",
        "AAAAAAA",
        "AAAAAA",
        "AAAAA",
        "LDDDDDD",
        "DDDDDDD",
    ),
    "eu": (
        "LLDDDLL",
        "DDDDLLL",
        "LLDDDD",
        "LLLDDDD",
        "LDDDLL",
        "DLLLDD",
        "LLDDDDD",
        "DDLLLD",
        "LLLLDDD",
        "LLDLDDD",
        "LLLDD",
        "LLDDLLL",
    ),
    "uk": ("LLDDLLL", "LDDDLLL", "LLLDDDL"),
    "br_old": ("LLLDDDD",),
    "mercosur": ("LLLDLDD",),
}
REGION_WEIGHTS = {"us": 0.5, "eu": 0.2, "uk": 0.1, "br_old": 0.06, "mercosur": 0.14}


@dataclass(frozen=True)
class SynthPlate:
    image: np.ndarray  # BGR uint8
    text: str
    text_box: tuple[int, int, int, int]  # main text line, x1 y1 x2 y2 in image px
    region: str


@lru_cache(maxsize=1)
def font_paths() -> tuple[Path, ...]:
    """TrueType fonts available here (Matplotlib's bundled ones, the system's DejaVu)."""
    dirs = [Path("/usr/share/fonts/truetype/dejavu")]
    try:
        import matplotlib

        dirs.insert(0, Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:  # pragma: no cover - the training environment has it
        pass
    found: dict[str, Path] = {}
    for d in dirs:
        for name in FONT_FILES:
            if name not in found and (d / name).is_file():
                found[name] = d / name
    return tuple(found.values())


@lru_cache(maxsize=512)
def _ttf(path: Path, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size)


def text_mask(text: str, font: int | Path, px: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 alpha mask of ``text`` cropped to its ink, about ``px`` high."""
    spacing = float(rng.uniform(-0.02, 0.25))
    if isinstance(font, int):
        scale = px / 22.0
        thick = max(1, round(scale * rng.uniform(1.2, 2.8)))
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        canvas = np.zeros((th + base + 2 * thick + 8, tw + 2 * thick + 8), np.uint8)
        cv2.putText(
            canvas, text, (4 + thick, th + 4 + thick), font, scale, (255,), thick, cv2.LINE_AA
        )
    else:
        from PIL import Image, ImageDraw

        f = _ttf(font, max(6, int(px * 1.35)))
        widths = [f.getlength(c) for c in text]
        gap = spacing * px * 0.5
        total = int(sum(widths) + gap * max(0, len(text) - 1) + px)
        img = Image.new("L", (max(8, total), int(px * 2.2) + 8), 0)
        draw = ImageDraw.Draw(img)
        x = px * 0.3
        for c, w in zip(text, widths, strict=True):
            draw.text((x, 4), c, fill=255, font=f)
            x += w + gap
        canvas = np.asarray(img)
    ys, xs = np.nonzero(canvas > 40)
    if not len(ys):
        return np.zeros((max(2, px), max(2, px)), np.uint8)
    return np.ascontiguousarray(canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def paint(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], ink: BGR) -> None:
    """Blend ``ink`` into ``img`` through ``mask`` resized to ``box``."""
    x1, y1, x2, y2 = box
    h, w = img.shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    a = cv2.resize(mask, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = (a / 255.0)[..., None]
    roi = img[y1:y2, x1:x2].astype(np.float32)
    img[y1:y2, x1:x2] = (roi * (1 - a) + np.array(ink, np.float32) * a).astype(np.uint8)


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> BGR:
    c = rng.integers(lo, hi + 1, 3)
    return int(c[0]), int(c[1]), int(c[2])


def random_text(region: str, rng: np.random.Generator, us_no_oi: bool = True) -> str:
    """A plate string: a mask of the region (75 %) or a random 4-8 character string."""
    mask = str(rng.choice(MASKS[region])) if rng.random() < 0.75 else "A" * int(rng.integers(4, 9))
    letters = LETTERS
    if region == "us" and us_no_oi and rng.random() < 0.8:
        letters = LETTERS.replace("O", "").replace("I", "").replace("Q", "")
    if region in ("br_old", "mercosur") and rng.random() < 0.5:
        letters = LETTERS
    out = []
    for k in mask:
        pool = letters if k == "L" else DIGITS if k == "D" else letters + DIGITS
        out.append(str(rng.choice(list(pool))))
    return "".join(out)


def _background(h: int, w: int, base: BGR, rng: np.random.Generator, pictorial: bool) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = base
    if rng.random() < 0.5:  # gradient towards a second colour
        other = np.array(_colour(rng, 120, 255), np.float32)
        t = np.linspace(0, 1, h if rng.random() < 0.6 else w, dtype=np.float32)
        t = t[:, None, None] if len(t) == h else t[None, :, None]
        img = (img * (1 - 0.6 * t) + other * 0.6 * t).astype(np.uint8)
    if pictorial:
        layer = img.copy()
        for _ in range(int(rng.integers(2, 7))):
            c = _colour(rng, 30, 255)
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(w // 10, w // 2)), int(rng.integers(h // 10, h // 2)))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, c, -1)
        if rng.random() < 0.5:  # mountains / hills
            pts = (
                [(0, h)]
                + [
                    (int(x), int(rng.uniform(0.4, 0.9) * h))
                    for x in np.linspace(0, w, int(rng.integers(3, 7)))
                ]
                + [(w, h)]
            )
            cv2.fillPoly(layer, [np.array(pts, np.int32)], _colour(rng, 40, 200))
        alpha = float(rng.uniform(0.25, 0.7))
        mixed = cv2.addWeighted(layer, alpha, img, 1 - alpha, 0)
        return np.asarray(cv2.GaussianBlur(mixed, (0, 0), float(rng.uniform(1.0, 4.0))), np.uint8)
    return img


def _font(rng: np.random.Generator) -> int | Path:
    fonts = font_paths()
    if not fonts or rng.random() < 0.15:
        return int(rng.choice(HERSHEY))
    return fonts[int(rng.integers(len(fonts)))]


def _main_text(
    img: np.ndarray,
    text: str,
    box: tuple[int, int, int, int],
    ink: BGR,
    rng: np.random.Generator,
    region: str,
) -> tuple[int, int, int, int]:
    """Draw the plate's characters in ``box`` (optionally split in groups with a gap,
    separator or emblem); returns the ink's box."""
    x1, y1, x2, y2 = box
    bh = y2 - y1
    font = _font(rng)
    groups = [text]
    if len(text) >= 5 and rng.random() < 0.55:
        cut = int(rng.integers(2, len(text) - 1))
        groups = [text[:cut], text[cut:]]
    masks = [text_mask(g, font, bh, rng) for g in groups]
    weight = rng.random()
    if weight < 0.2:
        masks = [cv2.dilate(m, np.ones((3, 3), np.uint8)) for m in masks]
    elif weight < 0.3:
        masks = [cv2.erode(m, np.ones((2, 2), np.uint8)) for m in masks]
    gap = int(bh * rng.uniform(0.25, 0.9)) if len(groups) > 1 else 0
    natural = sum(m.shape[1] * bh / max(1, m.shape[0]) for m in masks) + gap
    squeeze = float(rng.uniform(0.55, 1.0)) if region == "us" else float(rng.uniform(0.75, 1.05))
    width = min(x2 - x1, int(natural * squeeze))
    scale = width / max(1.0, natural)
    gap = int(gap * scale)
    x = x1 + (x2 - x1 - width) // 2
    shadow = rng.random() < 0.3  # embossed characters cast a shadow
    out_x1 = x
    for i, m in enumerate(masks):
        mw = int(m.shape[1] * bh / max(1, m.shape[0]) * scale)
        if shadow:
            d = max(1, bh // 25)
            paint(img, m, (x + d, y1 + d, x + mw + d, y2 + d), tuple(int(c * 0.4) for c in ink))  # type: ignore[arg-type]
        paint(img, m, (x, y1, x + mw, y2), ink)
        x += mw
        if i == 0 and gap:
            kind = rng.random()
            cx, cy = x + gap // 2, (y1 + y2) // 2
            if kind < 0.3:
                cv2.line(img, (cx - gap // 4, cy), (cx + gap // 4, cy), ink, max(1, bh // 12))
            elif kind < 0.5 and region == "us":  # an emblem (heart, star, state shape)
                r = max(2, int(gap * 0.35))
                cv2.circle(img, (cx, cy), r, _colour(rng, 0, 200), -1)
            x += gap
    return out_x1, y1, x, y2


def _small_text(
    img: np.ndarray, text: str, box: tuple[int, int, int, int], ink: BGR, rng: np.random.Generator
) -> None:
    x1, y1, x2, y2 = box
    m = text_mask(text, _font(rng), max(4, y2 - y1), rng)
    w = min(x2 - x1, int(m.shape[1] * (y2 - y1) / max(1, m.shape[0]) * rng.uniform(0.7, 1.2)))
    x = x1 + (x2 - x1 - w) // 2
    paint(img, m, (x, y1, x + w, y2), ink)


def _sticker(img: np.ndarray, rng: np.random.Generator, h: int, w: int) -> None:
    sw, sh = int(w * rng.uniform(0.08, 0.16)), int(h * rng.uniform(0.12, 0.22))
    left = rng.random() < 0.5
    x = int(w * rng.uniform(0.02, 0.06)) if left else w - sw - int(w * rng.uniform(0.02, 0.06))
    y = int(h * rng.uniform(0.03, 0.1)) if rng.random() < 0.7 else h - sh - int(h * 0.05)
    colour = _colour(rng, 0, 255)
    cv2.rectangle(img, (x, y), (x + sw, y + sh), colour, -1)
    ink = (255, 255, 255) if sum(colour) < 380 else (0, 0, 0)
    _small_text(img, str(rng.integers(1, 32)), (x + 2, y + 2, x + sw - 2, y + sh - 2), ink, rng)


def _plate(region: str, text: str, rng: np.random.Generator, h: int) -> SynthPlate:
    if region == "us":
        w = int(h * rng.uniform(1.85, 2.1))
        dark = rng.random() < 0.12
        base = (
            _colour(rng, 0, 90)
            if dark
            else ((245, 245, 245) if rng.random() < 0.45 else _colour(rng, 150, 255))
        )
        img = _background(h, w, base, rng, pictorial=rng.random() < 0.35)
        ink = (
            _colour(rng, 200, 255)
            if dark
            else (
                [
                    (20, 20, 20),
                    (110, 40, 20),
                    (30, 30, 150),
                    (30, 90, 20),
                    (90, 20, 90),
                    (120, 60, 0),
                ][int(rng.integers(6))]
            )
        )
        ty1, ty2 = int(h * rng.uniform(0.22, 0.32)), int(h * rng.uniform(0.72, 0.82))
        box = _main_text(img, text, (int(w * 0.05), ty1, int(w * 0.95), ty2), ink, rng, region)
        if rng.random() < 0.85:  # state name above
            sy1 = int(h * rng.uniform(0.03, 0.08))
            _small_text(
                img,
                str(rng.choice(US_STATES)),
                (int(w * 0.15), sy1, int(w * 0.85), sy1 + int(h * rng.uniform(0.1, 0.17))),
                _colour(rng, 0, 160),
                rng,
            )
        if rng.random() < 0.65:  # slogan below
            sy2 = int(h * rng.uniform(0.93, 0.98))
            _small_text(
                img,
                str(rng.choice(SLOGANS)),
                (int(w * 0.12), sy2 - int(h * rng.uniform(0.07, 0.12)), int(w * 0.88), sy2),
                _colour(rng, 0, 160),
                rng,
            )
        for _ in range(int(rng.integers(0, 3))):
            _sticker(img, rng, h, w)
        if rng.random() < 0.2:  # bolt holes
            for bx in (int(w * 0.2), int(w * 0.8)):
                cv2.circle(img, (bx, int(h * 0.12)), max(2, h // 30), (90, 90, 90), -1)
    elif region in ("eu", "uk"):
        w = int(h * rng.uniform(4.2, 4.8))
        base = (
            (20, 200, 250)
            if (region == "uk" and rng.random() < 0.5) or rng.random() < 0.1
            else ((245, 245, 245))
        )
        img = _background(h, w, base, rng, pictorial=False)
        left = int(w * 0.04)
        if region == "eu" or rng.random() < 0.3:
            band = int(w * rng.uniform(0.07, 0.1))
            img[:, :band] = (153, 51, 0)
            code = str(rng.choice(EU_CODES)) if region == "eu" else "GB"
            _small_text(
                img, code, (2, int(h * 0.55), band - 2, int(h * 0.85)), (245, 245, 245), rng
            )
            left = band + int(w * 0.02)
        ink = (15, 15, 15)
        box = _main_text(
            img, text, (left, int(h * 0.12), int(w * 0.97), int(h * 0.88)), ink, rng, region
        )
    elif region == "br_old":
        w = int(h * rng.uniform(2.9, 3.2))
        img = _background(h, w, (185, 188, 190), rng, pictorial=False)
        _small_text(
            img,
            str(rng.choice(BR_CITIES)),
            (int(w * 0.15), int(h * 0.04), int(w * 0.85), int(h * 0.2)),
            (20, 20, 20),
            rng,
        )
        body = text[:3] + "-" + text[3:] if rng.random() < 0.6 else text
        box = _main_text(
            img,
            body.replace("-", ""),
            (int(w * 0.04), int(h * 0.3), int(w * 0.96), int(h * 0.92)),
            (20, 20, 20),
            rng,
            region,
        )
    else:  # mercosur
        w = int(h * rng.uniform(2.9, 3.2))
        img = _background(h, w, (245, 245, 245), rng, pictorial=False)
        img[: int(h * 0.22)] = (160, 70, 0)
        _small_text(
            img,
            "BRASIL",
            (int(w * 0.35), int(h * 0.03), int(w * 0.65), int(h * 0.19)),
            (250, 250, 250),
            rng,
        )
        box = _main_text(
            img,
            text,
            (int(w * 0.05), int(h * 0.32), int(w * 0.95), int(h * 0.9)),
            (15, 15, 15),
            rng,
            region,
        )
    return SynthPlate(img, text, box, region)


def _framed(plate: SynthPlate, rng: np.random.Generator) -> SynthPlate:
    """The plate in a licence-plate frame (dark or chrome; a dealer name on it)."""
    h, w = plate.image.shape[:2]
    t, b = int(h * rng.uniform(0.04, 0.12)), int(h * rng.uniform(0.06, 0.2))
    s = int(w * rng.uniform(0.02, 0.05))
    colour = (20, 20, 20) if rng.random() < 0.6 else _colour(rng, 100, 220)
    img = cv2.copyMakeBorder(plate.image, t, b, s, s, cv2.BORDER_CONSTANT, value=colour)
    if rng.random() < 0.6 and b > 6:
        ink = (240, 240, 240) if sum(colour) < 300 else (20, 20, 20)
        _small_text(
            img,
            str(rng.choice(DEALERS)),
            (s + w // 5, h + t + 2, s + 4 * w // 5, h + t + b - 2),
            ink,
            rng,
        )
    x1, y1, x2, y2 = plate.text_box
    return SynthPlate(img, plate.text, (x1 + s, y1 + t, x2 + s, y2 + t), plate.region)


def _two_rows(region: str, rng: np.random.Generator, h: int) -> SynthPlate:
    """A two-row plate as the server reads it: both rows side by side."""
    top = "".join(rng.choice(list(LETTERS), 3))
    bottom = "".join(rng.choice(list(DIGITS + LETTERS), int(rng.integers(3, 5))))
    parts = [_plate(region, t, rng, h) for t in (top, bottom)]
    rows = []
    for p in parts:
        x1, y1, x2, y2 = p.text_box
        pad_y, pad_x = int((y2 - y1) * 0.15), int((y2 - y1) * 0.15)
        crop = p.image[max(0, y1 - pad_y) : y2 + pad_y, max(0, x1 - pad_x) : x2 + pad_x]
        rows.append(cv2.resize(crop, (max(4, crop.shape[1] * h // crop.shape[0]), h)))
    gap = np.empty((h, 8, 3), np.uint8)
    gap[:] = rows[0][0, 0]
    img = np.concatenate([rows[0], gap, rows[1]], axis=1)
    return SynthPlate(img, top + bottom, (0, 0, img.shape[1], h), region)


def render(
    rng: np.random.Generator, height: int = 96, regions: Sequence[str] | None = None
) -> SynthPlate:
    """One random plate (region by ``REGION_WEIGHTS`` unless ``regions`` is given)."""
    names = list(regions or REGION_WEIGHTS)
    weights = np.array([REGION_WEIGHTS.get(n, 1.0) for n in names])
    region = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if rng.random() < 0.05:
        return _two_rows(region, rng, height // 2)
    plate = _plate(region, random_text(region, rng), rng, height)
    if rng.random() < (0.45 if region == "us" else 0.15):
        plate = _framed(plate, rng)
    return plate
