"""What a photo reading returns, the reader's interface, and the errors a request can end
in (each carries its HTTP status, so both API dialects answer the same failure alike)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ensemble.contracts import Box, Detection

__all__ = [
    "ApiError",
    "FoundPlate",
    "PhotoReader",
    "PhotoReading",
    "TritonFailed",
    "TritonUnavailable",
]


@dataclass(frozen=True)
class FoundPlate:
    """One plate in a photo, after the edge client's choice, voting and format correction."""

    plate: str  # final text, A-Z0-9
    raw: str  # what the recogniser read for it
    confidence: float  # 0..1
    box: Box  # photo pixels
    det_score: float  # the plate detector's score
    region: str | None  # plate_formats.yaml region of the fitting format, e.g. "uk"
    format: str | None  # that format's name, e.g. "uk_current"
    format_weight: float  # the format's prior weight (0 when none fits)
    candidates: tuple[tuple[str, float], ...]  # (text, confidence), the plate first
    vehicle: Detection | None  # the vehicle whose box holds the plate, if one was detected


@dataclass(frozen=True)
class PhotoReading:
    plates: tuple[FoundPlate, ...]  # most confident first
    inference_ms: float  # time spent waiting for Triton


class PhotoReader(Protocol):
    def read(self, data: bytes, frame: np.ndarray, regions: Sequence[str]) -> PhotoReading:
        """The plates in one photo (``data`` encoded, ``frame`` decoded BGR) read with the
        formats of ``regions``. Raises ``TritonUnavailable`` / ``TritonFailed``."""

    def ready(self) -> bool:
        """Whether the inference server answers."""


class ApiError(Exception):
    """A request that cannot be answered; ``status`` is the HTTP status to send."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0])


class TritonUnavailable(ApiError):
    """No Triton server answers (down, restarting, wrong URL): try again later."""

    status = 503


class TritonFailed(ApiError):
    """Triton answered but failed the request."""

    status = 502
