"""Table-driven tests of defensive image decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synth import jpeg, png, render_plate, with_declared_size

from ensemble.contracts import InputError
from ensemble.image_io import decode_image, image_size

PLATE = render_plate("AB123CD")
JPEG = jpeg(PLATE)
PNG = png(PLATE)
_, WEBP = cv2.imencode(".webp", PLATE)
_, BMP = cv2.imencode(".bmp", PLATE)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(JPEG, "jpeg"), (PNG, "png"), (WEBP.tobytes(), "webp"), (BMP.tobytes(), "bmp")],
)
def test_good_images_decode_with_header_size(data: bytes, fmt: str) -> None:
    got_fmt, w, h = image_size(data)
    assert (got_fmt, w, h) == (fmt, PLATE.shape[1], PLATE.shape[0])
    image = decode_image(data)
    assert image.shape == PLATE.shape and image.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"hello world, not an image", "unsupported or corrupt image"),
        (JPEG[: len(JPEG) // 2], "truncated JPEG"),
        (JPEG[:20], "JPEG"),
        (PNG[: len(PNG) - 30], "truncated PNG"),
        (PNG[:16], "PNG"),
        (with_declared_size(JPEG, 60000, 60000), "60000x60000"),
        (with_declared_size(PNG, 60000, 60000), "60000x60000"),
        (with_declared_size(JPEG, 0, 100), "invalid JPEG dimensions"),
        (b"\xff\xd8\xff" + bytes(64), "JPEG"),
        (np.random.default_rng(0).bytes(5000), "unsupported or corrupt"),
    ],
    ids=[
        "empty", "text", "jpeg-half", "jpeg-20-bytes", "png-truncated", "png-header-only",
        "jpeg-bomb-header", "png-bomb-header", "jpeg-zero-width", "jpeg-zeros", "random",
    ],
)  # fmt: skip
def test_bad_images_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_image(data)


def test_size_limits_are_configurable() -> None:
    with pytest.raises(InputError, match="over the limit"):
        decode_image(JPEG, max_side=64)
    with pytest.raises(InputError, match="too large"):
        decode_image(JPEG, max_bytes=100)
