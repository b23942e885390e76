"""CodeProject.AI's licence-plate answer (``POST /v1/vision/alpr``), as its ALPR module
words it (``success``, ``predictions`` with ``plate``, ``label`` "Plate: ...",
``confidence`` and integer ``x_min``..``y_max``, ``processMs``, ``inferenceMs``,
``message`` "Found Plate: ..." or "No plates found") plus the fields CodeProject.AI
Server adds (``count``, ``moduleId``, ``command``, ``code``, ``analysisRoundTripMs``,
``timestampUTC``...). A failure is ``{"success": false, "error": ...}`` with a 4xx/5xx
status (CodeProject.AI Server sends its failures with status 200; clients read
``success``)."""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import formatdate
from typing import Literal

from pydantic import BaseModel, Field

from .contracts import FoundPlate

__all__ = ["Failure", "Prediction", "Reply", "failure", "message", "reply"]

MODULE_ID, MODULE_NAME, COMMAND = "ALPR", "License Plate Reader", "alpr"


class Prediction(BaseModel):
    confidence: float = Field(ge=0, le=1, description="how sure the reading is")
    label: str = Field(description='"Plate: " + plate')
    plate: str = Field(description="the plate's text, A-Z0-9")
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class Reply(BaseModel):
    success: Literal[True] = True
    message: str = Field(description='"Found Plate: AB12CDE, ..." or "No plates found"')
    count: int
    predictions: list[Prediction]
    processMs: int = Field(description="time to read the photo, decoding included")
    inferenceMs: int = Field(description="time spent waiting for the inference server")
    analysisRoundTripMs: int = Field(description="time from the request to the answer")
    moduleId: str = MODULE_ID
    moduleName: str = MODULE_NAME
    command: str = COMMAND
    code: int = 200
    inferenceDevice: str = "Triton"
    processedBy: str = "alpr-api"
    timestampUTC: str = Field(description="RFC 1123 time of the answer")


class Failure(BaseModel):
    success: Literal[False] = False
    error: str
    code: int = Field(description="the HTTP status")
    moduleId: str = MODULE_ID
    command: str = COMMAND


def message(predictions: Sequence[Prediction]) -> str:
    """The module's summary: the first three labels ("..." after them when more)."""
    if not predictions:
        return "No plates found"
    shown = ", ".join(p.label for p in predictions[:3])
    return f"Found {shown}" + ("..." if len(predictions) > 3 else "")


def reply(
    plates: Sequence[FoundPlate], inference_ms: float, process_ms: float, round_trip_ms: float
) -> Reply:
    predictions = [
        Prediction(
            confidence=round(p.confidence, 4), label=f"Plate: {p.plate}", plate=p.plate,
            x_min=round(p.box.x1), y_min=round(p.box.y1), x_max=round(p.box.x2),
            y_max=round(p.box.y2),
        )
        for p in plates
    ]  # fmt: skip
    return Reply(
        message=message(predictions), count=len(predictions), predictions=predictions,
        processMs=round(process_ms), inferenceMs=round(inference_ms),
        analysisRoundTripMs=round(round_trip_ms), timestampUTC=formatdate(usegmt=True),
    )  # fmt: skip


def failure(error: str, status: int) -> Failure:
    return Failure(error=error, code=status)
