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
