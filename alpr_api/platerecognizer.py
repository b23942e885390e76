"""Plate Recognizer Snapshot's answer (``POST /v1/plate-reader/``, status 201): per plate
its ``box``, lower-case ``plate``, ``region`` (code and score), ``score`` (reading),
``dscore`` (detection), ``candidates`` and ``vehicle``; then ``filename``, ``version``,
``camera_id``, ``timestamp`` and ``processing_time`` (ms). A failure is
``{"detail": ...}`` (their Django REST framework's shape) with a 4xx/5xx status.

Scores are this project's: ``score`` the plate's confidence after voting and format
correction, ``region.score`` the weight of the fitting format in ``plate_formats.yaml``
(1 for a national format, 0.3 for a generic one, 0 when none fits). The vehicle ``type``
is the detector's class where Plate Recognizer has it (``Bus``, ``Motorcycle``) and
``Unknown`` otherwise (the detector does not tell a sedan from an SUV)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ensemble.contracts import Box

from .contracts import FoundPlate
from .regions import plate_recognizer_code

__all__ = ["Failure", "Reply", "Result", "failure", "reply"]

VEHICLE_TYPES = {"bus": "Bus", "motorcycle": "Motorcycle"}


class PrBox(BaseModel):
    xmin: int
    ymin: int
    xmax: int
    ymax: int

    @classmethod
    def of(cls, box: Box) -> PrBox:
        return cls(xmin=round(box.x1), ymin=round(box.y1), xmax=round(box.x2), ymax=round(box.y2))


class Region(BaseModel):
    code: str = Field(description='e.g. "gb", "fr", "us-ca"; "" when no format fits')
    score: float = Field(ge=0, le=1)


class Candidate(BaseModel):
    score: float = Field(ge=0, le=1)
    plate: str


class Vehicle(BaseModel):
    score: float = Field(ge=0, le=1, description="0: no vehicle detected around the plate")
    type: str
    box: PrBox


class Result(BaseModel):
    box: PrBox
    plate: str = Field(description="lower case, as Plate Recognizer sends it")
    region: Region
    score: float = Field(ge=0, le=1, description="how sure the reading is")
    candidates: list[Candidate]
    dscore: float = Field(ge=0, le=1, description="how sure the plate detection is")
    vehicle: Vehicle


class Reply(BaseModel):
    processing_time: float = Field(description="ms")
    results: list[Result]
    filename: str
    version: int = 1
    camera_id: str | None
    timestamp: str


class Failure(BaseModel):
    detail: str


def _vehicle(plate: FoundPlate) -> Vehicle:
    v = plate.vehicle
    if v is None:
        return Vehicle(score=0.0, type="Unknown", box=PrBox(xmin=0, ymin=0, xmax=0, ymax=0))
    return Vehicle(
        score=round(v.score, 3), type=VEHICLE_TYPES.get(v.label, "Unknown"), box=PrBox.of(v.box)
    )


def result(plate: FoundPlate, requested: Sequence[str] = ()) -> Result:
    code = plate_recognizer_code(plate.region, plate.format, requested)
    return Result(
        box=PrBox.of(plate.box), plate=plate.plate.lower(),
        region=Region(code=code, score=round(min(plate.format_weight, 1.0), 3)),
        score=round(plate.confidence, 3),
        candidates=[Candidate(score=round(s, 3), plate=t.lower()) for t, s in plate.candidates],
        dscore=round(min(max(plate.det_score, 0.0), 1.0), 3), vehicle=_vehicle(plate),
    )  # fmt: skip


def reply(
    plates: Sequence[FoundPlate], processing_ms: float, filename: str, camera_id: str | None,
    timestamp: str | None = None, requested: Sequence[str] = (),
) -> Reply:  # fmt: skip
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Reply(
        processing_time=round(processing_ms, 3), results=[result(p, requested) for p in plates],
        filename=filename, camera_id=camera_id, timestamp=timestamp or now,
    )  # fmt: skip


def failure(detail: str) -> Failure:
    return Failure(detail=detail)
