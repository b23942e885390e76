"""Bytes -> pixels, defensively.

Encoded images come from the network, so they are checked before any decoder touches
them: size in bytes, format (JPEG, PNG, BMP, WebP), dimensions read from the header (a
header claiming 60000x60000 is refused before a 10 GB buffer is allocated) and, for
JPEG/PNG, the end marker (truncated files are refused rather than decoded half-grey).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from .contracts import MAX_ENCODED_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, InputError

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff_format(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise InputError(
        f"unsupported or corrupt image: first bytes {data[:8].hex()} are not JPEG, PNG, BMP or WebP"
    )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise InputError(f"corrupt JPEG: expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker == 0xDA:
            break
        i += 2 + length
    raise InputError("corrupt or truncated JPEG: no frame header (SOF) found")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise InputError("corrupt or truncated PNG: no IHDR chunk")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise InputError("truncated BMP header")
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    raise InputError("corrupt or truncated WebP header")


def image_size(data: bytes) -> tuple[str, int, int]:
    """Return (format, width, height) read from the header alone."""
    fmt = sniff_format(data)
    w, h = {"jpeg": _jpeg_size, "png": _png_size, "bmp": _bmp_size, "webp": _webp_size}[fmt](data)
    return fmt, w, h


def check_complete(fmt: str, data: bytes) -> None:
    """Refuse truncated JPEG/PNG files (decoders would silently fill them with grey)."""
    if fmt == "jpeg" and b"\xff\xd9" not in data[-1024:]:
        raise InputError("truncated JPEG: no end-of-image marker (FFD9) in the last 1 KiB")
    if fmt == "png" and b"IEND" not in data[-16:]:
        raise InputError("truncated PNG: no IEND chunk at the end")


def decode_image(
    data: bytes,
    *,
    max_side: int = MAX_IMAGE_SIDE,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_ENCODED_BYTES,
) -> np.ndarray:
    """Decode encoded image bytes to a BGR uint8 array, or raise :class:`InputError`."""
    if not data:
        raise InputError("empty image: 0 bytes received")
    if len(data) > max_bytes:
        raise InputError(f"image too large: {len(data)} bytes > limit {max_bytes}")
    fmt, w, h = image_size(data)
    if w <= 0 or h <= 0:
        raise InputError(f"invalid {fmt.upper()} dimensions {w}x{h}")
    if w > max_side or h > max_side or w * h > max_pixels:
        raise InputError(
            f"{fmt.upper()} header declares {w}x{h}, over the limit of {max_side}px per side "
            f"/ {max_pixels} pixels"
        )
    check_complete(fmt, data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"undecodable {fmt.upper()} ({len(data)} bytes, header {w}x{h})")
    if image.shape[0] != h or image.shape[1] != w:
        raise InputError(
            f"decoded size {image.shape[1]}x{image.shape[0]} differs from header {w}x{h}"
        )
    return image


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"could not encode image of shape {image.shape} as JPEG")
    return bytes(buf.tobytes())
