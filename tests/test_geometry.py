"""Letterboxing, quad ordering and recogniser crops."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.contracts import REC_HEIGHT, REC_WIDTH, InputError
from ensemble.preprocess import Letterbox, letterbox, order_quad, rec_crop, rec_input


@pytest.mark.parametrize(
    ("h", "w"), [(480, 640), (1080, 1920), (640, 640), (200, 1000), (900, 300)]
)
def test_letterbox_roundtrip(h: int, w: int) -> None:
    image = np.zeros((h, w, 3), np.uint8)
    boxed, lb = letterbox(image)
    assert boxed.shape == (640, 640, 3)
    src = np.array([[0, 0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.9]], np.float32)
    fwd = src.copy()
    fwd[:, [0, 2]] = fwd[:, [0, 2]] * lb.scale + lb.pad_x
    fwd[:, [1, 3]] = fwd[:, [1, 3]] * lb.scale + lb.pad_y
    assert np.allclose(lb.to_source(fwd, h, w), src, atol=1e-3)


def test_letterbox_rejects_empty_size() -> None:
    with pytest.raises(InputError, match="positive"):
        Letterbox.for_size(0, 10)


def test_order_quad_from_any_rotation() -> None:
    q = np.array([[10, 0], [10, 5], [0, 5], [0, 0]], np.float32)
    assert order_quad(q).tolist() == [[0, 0], [10, 0], [10, 5], [0, 5]]


@pytest.mark.parametrize(("w", "h"), [(200, 40), (30, 10), (1000, 50), (60, 60)])
def test_rec_crop_shape_and_padding(w: int, h: int) -> None:
    image = np.full((100, 1200, 3), 255, np.uint8)
    crop = rec_crop(image, np.array([[5, 5], [5 + w, 5], [5 + w, 5 + h], [5, 5 + h]], np.float32))
    assert crop.shape == (REC_HEIGHT, REC_WIDTH, 3)
    text_w = min(REC_WIDTH, round(REC_HEIGHT * w / h))
    assert (crop[:, :text_w] == 255).all()
    assert text_w == REC_WIDTH or (crop[:, text_w:] == 128).all()
    x = rec_input(crop[None])
    assert x.shape == (1, 3, REC_HEIGHT, REC_WIDTH) and x.min() >= -1 and x.max() <= 1


def test_rec_crop_rejects_degenerate_region() -> None:
    with pytest.raises(InputError, match="too small"):
        rec_crop(np.zeros((10, 10, 3), np.uint8), np.zeros((4, 2), np.float32))
