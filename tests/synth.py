"""Builders for synthetic test inputs (rendered plates, crafted image headers)."""

from __future__ import annotations

import struct

import cv2
import numpy as np


def render_plate(text: str, height: int = 110, scale: float = 3.0) -> np.ndarray:
    """A clean EU-like plate: black text on white with a dark border (BGR)."""
    font, thick = cv2.FONT_HERSHEY_DUPLEX, max(2, int(scale * 2.5))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    w = tw + 60
    plate = np.full((height, w, 3), 255, np.uint8)
    cv2.rectangle(plate, (2, 2), (w - 3, height - 3), (20, 20, 20), 4)
    cv2.putText(
        plate, text, (30, (height + th) // 2), font, scale, (10, 10, 10), thick, cv2.LINE_AA
    )
    return plate


def render_vehicle(
    text: str, size: tuple[int, int] = (480, 640)
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A grey 'vehicle crop' with the plate in its lower half; returns (image, plate xywh)."""
    h, w = size
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(img, (60, 80), (w - 60, h - 40), (140, 60, 40), -1)  # body
    plate = render_plate(text)
    scale = min(1.0, (w * 0.45) / plate.shape[1])
    plate = cv2.resize(plate, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ph, pw = plate.shape[:2]
    x, y = (w - pw) // 2, int(h * 0.62)
    img[y : y + ph, x : x + pw] = plate
    return img, (x, y, pw, ph)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the dimensions a JPEG (SOF) or PNG (IHDR) header declares."""
    b = bytearray(data)
    if b[:2] == b"\xff\xd8":
        i = 2
        while i < len(b):
            marker, length = b[i + 1], struct.unpack(">H", b[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                b[i + 5 : i + 9] = struct.pack(">HH", height, width)
                return bytes(b)
            i += 2 + length
        raise ValueError("no SOF marker")
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        b[16:24] = struct.pack(">II", width, height)
        return bytes(b)
    raise ValueError("not JPEG/PNG")


def place_plate(
    plate: np.ndarray,
    *,
    size: tuple[int, int] = (480, 640),
    width: int = 240,
    roll_deg: float = 0.0,
    yaw: float = 0.0,
    blur: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 'vehicle crop' (grey surround, coloured body) with ``plate`` warped into its lower
    half: ``width`` px wide, rolled by ``roll_deg``, in perspective (``yaw``: relative
    shortening of the right edge, e.g. 0.1), then Gaussian blur (sigma px) and sensor noise
    (sigma grey levels). Returns (BGR image, plate box xywh)."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(img, (50, 60), (w - 50, h - 30), (140, 60, 40), -1)  # body
    cv2.rectangle(img, (90, 90), (w - 90, 200), (70, 60, 55), -1)  # window
    ph, pw = plate.shape[:2]
    pw_out = width
    ph_out = width * ph / pw
    cx, cy = w / 2, h * 0.62 + ph_out / 2
    half = np.array([pw_out / 2, ph_out / 2], np.float32)
    local = np.array([[-1, -1], [1, -1 + yaw], [1, 1 - yaw], [-1, 1]], np.float32) * half
    a = np.deg2rad(roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    dst = (local @ rot.T + [cx, cy]).astype(np.float32)
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate, m, (w, h), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), m, (w, h), flags=cv2.INTER_AREA)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    img = (img * (1 - alpha) + warped * alpha).astype(np.uint8)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img = (img + rng.normal(0, noise, img.shape)).clip(0, 255).astype(np.uint8)
    x1, y1 = dst.min(axis=0)
    x2, y2 = dst.max(axis=0)
    return img, (int(x1), int(y1), int(x2 - x1), int(y2 - y1))
