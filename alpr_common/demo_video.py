"""Synthetic test video for a dedicated plate camera, with a ground-truth file.

A camera looks down a two-lane road: cars in the left lane approach (front plate; the plate
enters at the top edge small, grows and leaves through the bottom edge), cars in the right
lane drive away (rear plate; enters at the bottom, shrinks, leaves at the top).  Each plate
is visible for about 2-3 s, at most two at once (one per lane), never overlapping.  The plate
is 40-90 px tall on a 720-px frame (scaled with the frame), slightly rolled (<= 6 deg) and in
perspective (yaw <= 10 deg), motion-blurred in proportion to its speed, under a drifting
global brightness, one dim spell, a swaying shadow band and Gaussian sensor noise.  The video
is written with the ``mp4v`` codec.  Output is a pure function of the arguments (seed
included) and of the font: Hershey unless ``font="ttf"`` (or ``"auto"`` with Pillow and
DejaVuSans-Bold installed).

Default plates avoid O/0 and I/1, which Hershey draws nearly alike: UK ``KV65BZR`` (white
front / yellow rear plate by direction), French ``FG482HK``, Dutch ``47TGK8``, Californian
``8KRW245``, old Brazilian ``GKT3857`` and Mercosur ``RTX4E26``.

Ground truth, ``<video stem>.truth.json``::

    {"video": "demo.mp4", "fps": 15, "frames": 315, "width": 1280, "height": 720,
     "seed": 0, "font": "hershey",
     "plates": [{
        "plate": "KV65BZR",        # normalised text, A-Z0-9 (what a reader should output)
        "display": "KV65 BZR",     # as printed on the plate
        "region": "uk",            # uk | eu | us | br
        "style": "uk_rear",        # uk_front uk_rear fr nl us br_old mercosur
        "direction": "receding",   # or "approaching"
        "first_frame": 16, "last_frame": 54,  # first/last frame showing any of the plate
        "inside": [20, 50],        # first/last frame with the whole plate in the frame, or null
        "boxes": {"16": [778, 714, 1181, 720], ...}}]}  # every frame first..last

Boxes are the axis-aligned bounds (integer pixels, x2/y2 exclusive) of the plate's
perspective quadrilateral before blur, clipped to the frame; frame numbers are 0-based.
Near first/last_frame a box can be a sliver at the frame edge: score reads against the
``inside`` span.  Plates are listed in order of appearance.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import demo_render as R

DEFAULT_PLATES: list[tuple[str, str]] = [
    ("KV65BZR", "uk"),
    ("FG482HK", "fr"),
    ("47TGK8", "nl"),
    ("8KRW245", "us"),
    ("GKT3857", "br_old"),
    ("RTX4E26", "mercosur"),
]
EXPOSURE = 0.3  # fraction of the frame interval the shutter is open (motion blur)
BODY_COLOURS: list[R.BGR] = [(40, 40, 45), (90, 45, 25), (30, 30, 110), (150, 150, 150),
                             (60, 80, 60), (200, 200, 205)]  # fmt: skip


@dataclass
class _Car:
    plate: str
    display: str
    style: R.PlateStyle
    approaching: bool
    frames: int  # frames from entering to leaving (tau 0 -> 1)
    roll: float  # rad
    yaw: float
    wobble: float
    colour: R.BGR
    levels: list[np.ndarray]
    start: int = 0  # frame at tau = 0
    draw: tuple[int, int] = (0, 0)  # drawn in frames start + draw[0] .. start + draw[1]


class _Road:
    """Perspective: plate size, lane offset and height in the image are linear in 1/depth."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.fs = min(height / 720, width / 1280)
        self.y0, self.y1 = -34 * self.fs, height + 70 * self.fs  # centre y at u = 0 and 1
        self.k = 0.27 * width / (88 * self.fs)  # lane-centre offset per unit
        self.vanish_y = self.y0 - (self.y1 - self.y0) * 40 / 48  # where unit(u) = 0

    def edge(self) -> float:  # outer lane edge's offset from the centre line, bottom row
        return 2 * self.k * self.unit((self.h - self.y0) / (self.y1 - self.y0))

    def unit(self, u: float) -> float:  # EU-plate height in px at inverse depth u
        return self.fs * (40 + 48 * u)

    def pose(self, car: _Car, f: float) -> tuple[float, float, float, float, float]:
        """(cx, cy, plate height, unit, roll) at frame ``f``."""
        tau = (f - car.start) / car.frames
        r = 88 / 40
        u = (r ** (tau if car.approaching else 1 - tau) - 1) / (r - 1)
        unit = self.unit(u)
        side = -1 if car.approaching else 1
        cx = self.w / 2 + side * self.k * unit
        cy = self.y0 + (self.y1 - self.y0) * u
        hf, hn = car.style.height_px
        roll = car.roll + 0.015 * math.sin(car.wobble + 0.9 * f)
        return cx, cy, self.fs * (hf + (hn - hf) * u), unit, roll

    def quad(self, car: _Car, f: float) -> np.ndarray:
        cx, cy, h, _, roll = self.pose(car, f)
        w = h * car.style.size_mm[0] / car.style.size_mm[1] * math.cos(car.yaw)
        k = 0.25 * math.sin(car.yaw)
        local = np.array([[-0.485 * w, -(1 - k)], [0.485 * w, -(1 + k)],
                          [0.5 * w, 1 + k], [-0.5 * w, 1 - k]], np.float32)  # fmt: skip
        local[:, 1] *= h / 2
        return R.transform(local, (cx, cy), roll)

    def body_visible(self, car: _Car, f: float) -> bool:
        _, cy, _, unit, _ = self.pose(car, f)
        return cy - 3.6 * unit < self.h and cy + 1.8 * unit > 0


def parse_plates(spec: str) -> list[tuple[str, str]]:
    """``"AB12CDE:uk,7ABC123:us"`` -> [("AB12CDE", "uk"), ("7ABC123", "us")]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        text, sep, region = item.rpartition(":")
        if not sep or not R.normalise(text):
            raise ValueError(f"plate {item!r} is not TEXT:REGION")
        R.resolve_style(text, region, True)  # validates the region
        out.append((text, region))
    return out


def _schedule(
    road: _Road, plates: list[tuple[str, str]], fps: float, rng: np.random.Generator, font: str
) -> tuple[list[_Car], int]:
    first = int(rng.integers(2))
    cars: list[_Car] = []
    lane_free = {True: 0, False: 0}
    prev = round(1.0 * fps)
    for i, (text, region) in enumerate(plates):
        approaching = (i + first) % 2 == 0
        style = R.resolve_style(text, region, approaching)
        display = R.display_text(text, style)
        tex = R.render_plate(display, style, rng, font)
        car = _Car(
            plate=R.normalise(text), display=display, style=style, approaching=approaching,
            frames=round(fps * rng.uniform(2.3, 3.0)),
            roll=math.radians(rng.uniform(-5, 5)),
            yaw=math.radians(rng.uniform(3, 10)) * (1 if approaching else -1),
            wobble=float(rng.uniform(0, 2 * math.pi)),
            colour=BODY_COLOURS[int(rng.integers(len(BODY_COLOURS)))], levels=R.pyramid(tex),
        )  # fmt: skip
        a, b = 0, car.frames
        while road.body_visible(car, a - 1):
            a -= 1
        while road.body_visible(car, b + 1):
            b += 1
        car.draw = (a, b)
        stagger = rng.uniform(1.0, 1.8) if i % 2 else rng.uniform(5.0, 6.0)
        start = prev + round(stagger * fps) if i else prev
        car.start = max(start, lane_free[approaching] + round(0.3 * fps) - a)
        lane_free[approaching] = car.start + b
        prev = car.start
        cars.append(car)
    total = max(c.start + c.draw[1] for c in cars) + round(1.5 * fps) if cars else round(fps)
    return cars, total


def _render_car(frame: np.ndarray, road: _Road, car: _Car, f: int) -> None:
    cx, cy, h, unit, roll = road.pose(car, f)
    quad = road.quad(car, f)
    a = road.pose(car, f - 0.5)
    b = road.pose(car, f + 0.5)
    kernel = R.motion_kernel(EXPOSURE * (b[0] - a[0]), EXPOSURE * (b[1] - a[1]))
    corners = np.array([[-3.6, -3.3], [3.6, -3.3], [3.6, 1.6], [-3.6, 1.6]], np.float32) * unit
    pts = np.vstack([R.transform(corners, (cx, cy), roll), quad])
    m = kernel.shape[0]
    lane = (0, road.w // 2) if car.approaching else (road.w // 2, road.w)
    x0, y0 = max(lane[0], math.floor(pts[:, 0].min()) - m), max(0, math.floor(pts[:, 1].min()) - m)
    x1, y1 = (
        min(lane[1], math.ceil(pts[:, 0].max()) + m),
        min(road.h, math.ceil(pts[:, 1].max()) + m),
    )
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    layer = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    R.draw_body(layer, alpha, (cx - x0, cy - y0), roll, unit, car.colour, car.approaching)
    q: np.ndarray = quad - np.array([x0, y0], np.float32)
    px0, py0 = max(0, math.floor(q[:, 0].min()) - 1), max(0, math.floor(q[:, 1].min()) - 1)
    px1 = min(x1 - x0, math.ceil(q[:, 0].max()) + 1)
    py1 = min(y1 - y0, math.ceil(q[:, 1].max()) + 1)
    if px1 - px0 >= 2 and py1 - py0 >= 2:
        level = next((t for t in reversed(car.levels) if t.shape[0] >= h), car.levels[0])
        th, tw = level.shape[:2]
        src = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
        mat = cv2.getPerspectiveTransform(src, q - np.array([px0, py0], np.float32))
        warped = cv2.warpPerspective(level, mat, (px1 - px0, py1 - py0), flags=cv2.INTER_LINEAR)
        wa = warped[..., 3].astype(np.float32) / 255
        sub = layer[py0:py1, px0:px1]
        sub[:] = cv2.blendLinear(np.ascontiguousarray(warped[..., :3]), sub, wa, 1 - wa)
        np.maximum(alpha[py0:py1, px0:px1], warped[..., 3], out=alpha[py0:py1, px0:px1])
    blurred = cv2.filter2D(layer, -1, kernel)
    cover = cv2.filter2D(alpha, -1, kernel).astype(np.float32) / 255
    roi = frame[y0:y1, x0:x1]
    roi[:] = cv2.add(cv2.blendLinear(roi, np.zeros_like(roi), 1 - cover, cover), blurred)


def _truth(road: _Road, car: _Car) -> dict[str, Any]:
    boxes: dict[str, list[int]] = {}
    inside: list[int] = []
    for f in range(car.start + car.draw[0], car.start + car.draw[1] + 1):
        q = road.quad(car, f)
        x1, y1 = math.floor(q[:, 0].min()), math.floor(q[:, 1].min())
        x2, y2 = math.ceil(q[:, 0].max()), math.ceil(q[:, 1].max())
        if x1 >= 0 and y1 >= 0 and x2 <= road.w and y2 <= road.h:
            inside.append(f)
        box = [max(0, x1), max(0, y1), min(road.w, x2), min(road.h, y2)]
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            boxes[str(f)] = box
    frames = [int(k) for k in boxes]
    return {
        "plate": car.plate,
        "display": car.display,
        "region": car.style.region,
        "style": car.style.name,
        "direction": "approaching" if car.approaching else "receding",
        "first_frame": min(frames),
        "last_frame": max(frames),
        "inside": [min(inside), max(inside)] if inside else None,
        "boxes": boxes,
    }


def generate(
    out_dir: Path, *, seed: int = 0, width: int = 1280, height: int = 720, fps: float = 15,
    plates: list[tuple[str, str]] | None = None, name: str = "demo", font: str = "auto",
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``<out_dir>/<name>.mp4`` and ``<name>.truth.json``; returns their paths.

    ``plates``: (text, region) pairs, region one of uk, eu, us, br or a style name (see
    module docstring); text may carry its printed separators ("AB-123-CD").  ``font``:
    "hershey", "ttf" (Pillow + DejaVuSans-Bold) or "auto" (ttf when available).
    """
    if width < 160 or height < 120 or fps <= 0:
        raise ValueError(f"frame size must be at least 160x120 and fps > 0, got {width}x{height}")
    plates = DEFAULT_PLATES if plates is None else plates
    if not plates:
        raise ValueError("no plates to render")
    if font == "auto":
        font = "ttf" if R.ttf_available() else "hershey"
    rng = np.random.default_rng(seed)
    road = _Road(width, height)
    cars, total = _schedule(road, list(plates), fps, rng, font)
    dim_car = cars[int(rng.integers(1, len(cars)))] if len(cars) > 1 else None
    dim_at = dim_car.start + dim_car.frames // 2 if dim_car else -(10**6)
    light = R.Lighting(width, height, fps, dim_at, rng)
    base = R.background(width, height, rng, road.vanish_y, road.edge())
    out_dir.mkdir(parents=True, exist_ok=True)
    video, truth = out_dir / f"{name}.mp4", out_dir / f"{name}.truth.json"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open an mp4v VideoWriter for {video}")
    try:
        for f in range(total):
            frame = base.copy()
            for car in cars:
                if car.start + car.draw[0] <= f <= car.start + car.draw[1]:
                    _render_car(frame, road, car, f)
            light.apply(frame, f, rng)
            writer.write(frame)
    finally:
        writer.release()
    rate = int(fps) if float(fps).is_integer() else fps
    doc = {"video": video.name, "fps": rate, "frames": total, "width": width, "height": height,
           "seed": seed, "font": font, "plates": [_truth(road, c) for c in cars]}  # fmt: skip
    truth.write_text(json.dumps(doc, indent=1) + "\n")
    return video, truth


def read_frames(video: Path, limit: int | None = None) -> list[np.ndarray]:
    """The BGR frames of ``video`` (the first ``limit`` of them)."""
    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames
