"""The HTTP service: CodeProject.AI's ``POST /v1/vision/alpr``, Plate Recognizer's
``POST /v1/plate-reader/``, ``GET /api/health``, and OpenAPI (``/docs``,
``/openapi.json``).

Every failure is answered in the dialect of the endpoint asked (``codeproject.Failure``
or ``platerecognizer.Failure``): 401 a missing or wrong token, 413 a body over
``http.max_upload_bytes``, 400/415/422 a bad upload (``upload``), 503 no inference server
(the service stays up and answers again once Triton is back), 502 a request Triton failed.
A token, when configured, is read from ``Authorization: Token <t>`` or ``Bearer <t>``;
health and the OpenAPI pages need none.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from edge_client.plates.formats import load_formats

from . import codeproject, platerecognizer
from .config import ApiConfig
from .contracts import ApiError, FoundPlate, PhotoReader, PhotoReading
from .regions import project_regions
from .upload import BodyLimit, Photo, decode, file_field, read_form, text_or_file_field

__all__ = ["PLATE_READER", "VISION_ALPR", "create_app"]

log = logging.getLogger("ovr_alpr.api")
VISION_ALPR = "/v1/vision/alpr"
PLATE_READER = "/v1/plate-reader/"
MISSING_TOKEN = "Authentication credentials were not provided."  # Plate Recognizer's words
WRONG_TOKEN = "Invalid token."


def _is_plate_reader(path: str) -> bool:
    return path.rstrip("/") == PLATE_READER.rstrip("/")


def _failure(path: str, error: str, status: int) -> JSONResponse:
    body: BaseModel = (
        platerecognizer.failure(error)
        if _is_plate_reader(path)
        else codeproject.failure(error, status)
    )
    headers = {"WWW-Authenticate": "Token"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _refuse(path: str, error: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return _failure(path, error, 413)


def token_problem(header: str | None, token: str) -> str | None:
    """Why ``header`` (``Authorization``) does not carry ``token``; None when it does."""
    if not header or not header.strip():
        return MISSING_TOKEN
    scheme, _, given = header.strip().partition(" ")
    # Header values arrive decoded as Latin-1: encode back to the bytes that were sent.
    sent = given.strip().encode("latin-1", "replace")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(sent, token.encode()):
        return WRONG_TOKEN
    return None


def _number(value: object, name: str, default: float) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value) if isinstance(value, str) else None
    except ValueError:
        number = None
    if number is None or not 0.0 <= number <= 1.0:
        raise ApiError(f"{name} must be a number from 0 to 1, got {str(value)[:40]!r}", 400)
    return number


def _codes(values: Sequence[object]) -> list[str]:
    """Plate Recognizer ``regions`` values (repeated fields, or comma-separated)."""
    return [c.strip() for v in values if isinstance(v, str) for c in v.split(",") if c.strip()]


def _form_body(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """OpenAPI requestBody of a form endpoint (the form is read by hand, see ``upload``)."""
    schema = {"type": "object", "properties": fields, "required": required}
    form = {"multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": form}}


CPAI_FORM = _form_body(
    {"upload": {"type": "string", "format": "binary", "description": "the photo"},
     "min_confidence": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "leave out plates read less surely"}},
    ["upload"],
)  # fmt: skip
PR_FORM = _form_body(
    {"upload": {"oneOf": [{"type": "string", "format": "binary"}, {"type": "string"}],
                "description": "the photo: a file, or base64 text"},
     "regions": {"type": "array", "items": {"type": "string"},
                 "description": "country codes (gb, fr, us-ca...), repeatable"},
     "camera_id": {"type": "string"},
     "timestamp": {"type": "string", "description": "ISO 8601, echoed back"}},
    ["upload"],
)  # fmt: skip


def _responses(ok: int, reply: type[BaseModel], failure: type[BaseModel]) -> dict[int | str, Any]:
    out: dict[int | str, Any] = {ok: {"model": reply}}
    for status, why in [
        (400, "no image field, or a bad field"), (401, "token missing or wrong"),
        (413, "request body over http.max_upload_bytes"), (415, "not a form, or not an image"),
        (422, "the image does not decode"), (502, "the inference server failed the request"),
        (503, "the inference server is not reachable"),
    ]:  # fmt: skip
        out[status] = {"model": failure, "description": why}
    return out


def create_app(config: ApiConfig, reader: PhotoReader, token: str | None = None) -> FastAPI:
    """The service over ``reader``; ``token``: the API token (None: requests need none)."""
    available = tuple(load_formats())
    limit = config.http.max_upload_bytes
    limiter = anyio.CapacityLimiter(config.http.max_concurrent)
    app = FastAPI(
        title="OVR-ALPR API",
        version="0.1.0",
        summary="CodeProject.AI- and Plate Recognizer-compatible licence-plate reading "
        "in front of Triton",
        openapi_tags=[
            {"name": "CodeProject.AI", "description": "what Blue Iris and Agent DVR call"},
            {"name": "Plate Recognizer", "description": "the Snapshot API's plate reader"},
            {"name": "service", "description": "health"},
        ],
    )
    app.add_middleware(BodyLimit, max_bytes=limit, refuse=_refuse)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("api: %s %s: %s", request.method, request.url.path, exc.message)
        return _failure(request.url.path, exc.message, exc.status)

    def authorise(request: Request) -> None:
        if token is None:
            return
        problem = token_problem(request.headers.get("authorization"), token)
        if problem is not None:
            hint = "" if _is_plate_reader(request.url.path) else (
                " (send 'Authorization: Token <token>' or 'Bearer <token>')"
            )  # fmt: skip
            raise ApiError(problem + hint, 401)

    async def read(photo: Photo, regions: Sequence[str]) -> tuple[PhotoReading, float]:
        """Decode and read the photo in a worker thread (at most ``max_concurrent`` at
        once); the reading and the ms it took, decoding included."""

        def work() -> tuple[PhotoReading, float]:
            t0 = time.perf_counter()
            frame = decode(photo, limit)
            return reader.read(photo.data, frame, regions), 1000 * (time.perf_counter() - t0)

        return await anyio.to_thread.run_sync(work, limiter=limiter)

    def sure(plates: Sequence[FoundPlate], min_confidence: float) -> list[FoundPlate]:
        return [p for p in plates if p.confidence >= min_confidence]

    @app.get("/api/health", tags=["service"], summary="Liveness, and whether Triton answers")
    async def health() -> dict[str, Any]:
        ready = await anyio.to_thread.run_sync(reader.ready)
        return {"status": "ok", "triton": "ready" if ready else "unreachable"}

    @app.get("/v1/server/status/ping", tags=["CodeProject.AI"], summary="CodeProject.AI ping")
    async def ping() -> dict[str, bool]:
        return {"success": True}

    @app.post(
        VISION_ALPR,
        tags=["CodeProject.AI"],
        summary="Read every licence plate in a photo (CodeProject.AI ALPR module)",
        openapi_extra=CPAI_FORM,
        responses=_responses(200, codeproject.Reply, codeproject.Failure),
        response_model=None,
    )
    async def vision_alpr(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        authorise(request)
        async with read_form(request, limit) as form:
            min_confidence = _number(
                form.get("min_confidence"), "min_confidence", config.reading.min_confidence
            )
            photo = await file_field(form)
        reading, process_ms = await read(photo, config.reading.regions)
        answer = codeproject.reply(
            sure(reading.plates, min_confidence), reading.inference_ms, process_ms,
            1000 * (time.perf_counter() - t0),
        )  # fmt: skip
        return JSONResponse(answer.model_dump())

    app.add_api_route(
        "/v1/image/alpr", vision_alpr, methods=["POST"], include_in_schema=False
    )  # CodeProject.AI's older route

    async def plate_reader(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        authorise(request)
        async with read_form(request, limit) as form:
            photo = await text_or_file_field(form)
            requested = _codes(form.getlist("regions"))
            camera, stamp = form.get("camera_id"), form.get("timestamp")
        regions = project_regions(requested, available) or config.reading.regions
        reading, _ = await read(photo, regions)
        answer = platerecognizer.reply(
            sure(reading.plates, config.reading.min_confidence),
            1000 * (time.perf_counter() - t0), photo.filename,
            camera if isinstance(camera, str) and camera else None,
            stamp if isinstance(stamp, str) and stamp else None, requested,
        )  # fmt: skip
        return JSONResponse(answer.model_dump(), status_code=201)

    for path, shown in ((PLATE_READER, True), (PLATE_READER.rstrip("/"), False)):
        app.add_api_route(
            path, plate_reader, methods=["POST"], include_in_schema=shown,
            tags=["Plate Recognizer"],
            summary="Read every licence plate in a photo (Plate Recognizer Snapshot)",
            openapi_extra=PR_FORM, status_code=201, response_model=None,
            responses=_responses(201, platerecognizer.Reply, platerecognizer.Failure),
        )  # fmt: skip
    return app
