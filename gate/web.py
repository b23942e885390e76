"""The gate's operator dashboard and its JSON API (FastAPI; OpenAPI at ``/openapi.json``).

``create_app(runtime)`` serves, for one running gate service (anything satisfying
``GateRuntime``):

- ``/`` the dashboard (``static/``: plain HTML + vanilla JS + CSS, no build step, nothing
  fetched from the internet: gates run offline);
- ``/api/live`` (long-poll) and ``/api/live/stream`` (server-sent events) following the
  service's ``LiveFeed`` by sequence number;
- ``/api/records`` search over the history database, a record by id, and its crop (only the
  file the record names, only a JPEG);
- cameras, gates, statistics, and the per-gate allow/deny lists;
- ``/metrics`` for Prometheus (``http.metrics``: open, behind the token, or off);
- ``/login`` and ``/logout`` (``gate.auth``).

When ``http.token_env`` names a set environment variable, list changes and reads of the
history, crops and live feed (personal data) need ``Authorization: Bearer <token>`` or a
login's session cookie, and ``/`` sends a browser without one to ``/login``. Health,
cameras, gates, statistics, list reads and the static files stay open. Without a token,
everything is open.

Every response carries security headers (a ``'self'``-only Content-Security-Policy without
inline script, ``nosniff``, no framing). FastAPI's ``/docs`` and ``/redoc`` are disabled:
they load Swagger/ReDoc from a CDN, which an offline gate cannot reach and the policy
forbids; the OpenAPI document itself is served.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qs, quote

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alpr_common.secrets import secret_from_env
from gate.access import ListEntry

from .auth import SESSION_COOKIE, login_page, new_session, session_valid
from .config import GateConfig
from .contracts import VehicleRecord
from .history import History, HistoryError, HistoryQuery, StoredEntry
from .live import LiveFeed, LiveItem
from .metrics import CONTENT_TYPE_LATEST, GateMetrics

__all__ = ["GateRuntime", "close_live_streams", "create_app"]

log = logging.getLogger(__name__)


def _static_dir() -> Path:
    """The dashboard's files: package data of ``gate`` (a wheel installs them unpacked)."""
    ref = resources.files("gate") / "static"
    if not isinstance(ref, Path):
        raise RuntimeError(f"gate's dashboard files must lie in a folder, found {ref!r}")
    return ref


STATIC_DIR = _static_dir()

LONG_POLL_MAX_S = 25.0
"""A long-poll waits at most this long (below common proxy idle timeouts of 30 s)."""

SSE_HEARTBEAT_S = 10.0
"""An idle event stream sends a comment this often, so proxies keep it open and a dead
client is noticed (the write fails)."""

SSE_POLL_S = 0.1
"""How often an event stream looks for new feed items. Polling ``LiveFeed.latest`` from
the event loop holds no thread per connected dashboard; 100 ms is invisible to operators."""

SSE_RETRY_MS = 3000
"""Tells EventSource how soon to reconnect after the stream drops."""

LONG_POLL_THREADS = 16
"""Long-polls block in ``LiveFeed.wait`` in worker threads of their own, so waiting
clients never starve the thread pool that serves database requests."""

LOGIN_MAX_BYTES = 4096
"""A login form's body is refused above this size."""

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
JPEG_MAGIC = b"\xff\xd8\xff"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class GateRuntime(Protocol):
    """What the web layer needs from a running gate service (``service.GateService``)."""

    config: GateConfig
    history: History
    feed: LiveFeed
    """Publishes ``("decision", DecisionEvent.to_json() | {"record": VehicleRecord.to_json()})``
    and ``("record", VehicleRecord.to_json())``."""

    def cameras(self) -> list[dict[str, Any]]:
        """Per camera: ``camera``, ``gate``, ``role`` (plate | overview), ``status`` (live |
        stale | unknown), ``fps``, ``frames``, ``events``, ``updated_at``."""
        ...


# --- response / request models ------------------------------------------------------------
class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong")


class ValidationErrorOut(BaseModel):
    detail: list[dict[str, Any]] = Field(description="FastAPI's per-field errors")
    message: str = Field(description="the errors in one readable line")


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    gates: list[str]
    live_seq: int = Field(description="sequence number of the newest live item")
    live_streams: int = Field(description="event streams currently connected")
    time: float = Field(description="server wall time, epoch seconds")


class LiveItemOut(BaseModel):
    seq: int
    kind: str = Field(description="decision | record")
    data: dict[str, Any]


class LivePageOut(BaseModel):
    latest: int = Field(description="newest sequence number: pass it as `after` next time")
    items: list[LiveItemOut] = Field(description="items newer than `after`, oldest first")


class RecordOut(BaseModel):
    """A stored ``VehicleRecord`` plus URLs of its crops (None when it has none)."""

    model_config = ConfigDict(extra="allow")

    record_id: str
    gate: str
    first_seen: float = Field(description="epoch seconds of the first sighting")
    plate: str = ""
    plate_confidence: float = 0.0
    plate_camera: str | None = None
    overview_camera: str | None = None
    vehicle_class: str = ""
    color: str | None = None
    direction: str | None = Field(None, description="entry | exit")
    dwell_s: float | None = None
    decision: str | None = Field(None, description="allow | deny | unknown; None: undecided")
    matched: str | None = Field(None, description="list plate or pattern that decided it")
    list_label: str = ""
    decided_at: float | None = None
    decision_latency_ms: float | None = None
    crop_path: str | None = None
    overview_crop_path: str | None = None
    event_ids: list[str] = Field(default_factory=list)
    crop_url: str | None = Field(None, description="the plate camera's crop (JPEG)")
    overview_crop_url: str | None = Field(None, description="the overview camera's crop")


class RecordPageOut(BaseModel):
    total: int | None = Field(
        description="records matching the filters (None for fuzzy searches: not counted)"
    )
    limit: int
    offset: int
    items: list[RecordOut]


class CameraOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    camera: str
    gate: str | None = None
    role: Literal["plate", "overview"]
    status: Literal["live", "stale", "unknown"]
    fps: float | None = Field(None, description="frames processed per second")
    frames: int | None = None
    events: int | None = None
    updated_at: float | None = Field(None, description="epoch seconds of the last report")


class GateOut(BaseModel):
    gate: str
    plate_camera: str
    overview_camera: str | None
    allow: int = Field(description="entries on the allow list")
    deny: int = Field(description="entries on the deny list")
    lists_version: int = Field(description="increases on every list change")
    allow_tolerance: int
    deny_tolerance: int


class StatsOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    records: int
    by_decision: dict[str, int]


class StoredEntryOut(BaseModel):
    id: int
    gate: str
    kind: Literal["allow", "deny"]
    entry: ListEntry
    created_at: datetime = Field(description="when the entry was stored (UTC)")

    @classmethod
    def of(cls, e: StoredEntry) -> StoredEntryOut:
        return cls(id=e.id, gate=e.gate, kind=e.kind, entry=e.entry, created_at=e.created_at)


class GateListsOut(BaseModel):
    gate: str
    version: int = Field(description="increases on every list change")
    allow_tolerance: int = Field(description="OCR slips tolerated on the allow list")
    deny_tolerance: int = Field(description="OCR slips tolerated on the deny list")
    entries: list[StoredEntryOut] = Field(description="oldest first")


# --- helpers ------------------------------------------------------------------------------
class _SecurityHeaders:
    """Pure ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response. (Starlette's
    ``BaseHTTPMiddleware`` would buffer through a memory stream and interfere with the
    event stream's disconnect handling.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _record_out(r: VehicleRecord) -> RecordOut:
    base = f"/api/records/{_quote(r.record_id)}/crop"
    return RecordOut(
        **r.to_json(),
        crop_url=base if r.crop_path else None,
        overview_crop_url=f"{base}?which=overview" if r.overview_crop_path else None,
    )


def _quote(s: str) -> str:
    return quote(s, safe="")


def _jpeg_file(path: str | None) -> Path | None:
    """``path`` when it names an existing regular file whose name (and, through links, the
    target's name) ends in .jpg/.jpeg and whose content starts like a JPEG; else None.
    Records name crops written by the service, but their paths travel through the event
    stream, so nothing else is ever served from them."""
    if not path:
        return None
    p = Path(path)
    try:
        real = p.resolve(strict=True)
        if p.suffix.lower() not in JPEG_SUFFIXES or real.suffix.lower() not in JPEG_SUFFIXES:
            return None
        if not real.is_file():
            return None
        with real.open("rb") as f:
            if f.read(len(JPEG_MAGIC)) != JPEG_MAGIC:
                return None
    except (OSError, RuntimeError, ValueError):
        return None
    return real


def _sse(item: LiveItem) -> str:
    data = json.dumps(item.payload, separators=(",", ":"), default=str)
    return f"id: {item.seq}\nevent: {item.kind}\ndata: {data}\n\n"


def _start_seq(feed: LiveFeed, requested: int | None) -> int:
    """Where a follower resumes. A sequence number beyond the feed's newest one comes from
    before a service restart (numbers start again at 1): resume from the start of the ring
    rather than waiting for numbers that mean something else now."""
    if requested is None or requested < 0:
        return 0
    return 0 if requested > feed.latest else requested


def close_live_streams(app: FastAPI) -> None:
    """End every open event stream of ``app`` (EventSource clients reconnect on their own).
    Call before stopping the server: uvicorn waits for open responses to finish, and an
    event stream never does by itself."""
    app.state.live_closing.set()


# --- dependencies (module level: the routes' string annotations resolve against globals) --
_BEARER = HTTPBearer(auto_error=False, description="the token named by `http.token_env`")


def _runtime(request: Request) -> GateRuntime:
    rt: GateRuntime = request.app.state.runtime
    return rt


def _known_gate(gate: str, request: Request) -> str:
    """The path's gate id; 404 when the configuration has no such gate."""
    if gate not in _runtime(request).config.gates:
        raise HTTPException(404, f"no gate {gate!r}")
    return gate


def _expected_token(request: Request) -> str | None:
    """The dashboard token (read per request, so a changed variable applies at once);
    None when none is configured."""
    env = _runtime(request).config.http.token_env
    return secret_from_env(env, "dashboard token", required=False)


def _authorized(request: Request, creds: HTTPAuthorizationCredentials | None) -> bool:
    """No token configured, the token as a bearer (compared in constant time), or a valid
    login session cookie."""
    expected = _expected_token(request)
    if not expected:
        return True
    # Header values arrive decoded as Latin-1: encode back to the bytes that were sent.
    given = (creds.credentials if creds is not None else "").encode("latin-1", "replace")
    if hmac.compare_digest(given, expected.encode()):
        return True
    return session_valid(request.cookies.get(SESSION_COOKIE), expected, time.time())


def _require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """List changes need the token (bearer) or a login when ``http.token_env`` names a set
    variable. (A login's cookie is SameSite=Strict and changes take only JSON, so another
    site cannot make an operator's browser change lists.)"""
    if not _authorized(request, creds):
        raise HTTPException(
            401,
            "a valid API token is required to change lists (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _require_reader(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """Reads of personal data (history, crops, live feed) need the token or a login when
    ``http.token_env`` names a set variable."""
    if not _authorized(request, creds):
        raise HTTPException(
            401,
            "a valid API token (Authorization: Bearer ...) or a login (/login) is required "
            "to read vehicle data",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def _form_field(request: Request, name: str) -> str | None:
    """One field of an ``application/x-www-form-urlencoded`` body of at most
    ``LOGIN_MAX_BYTES``; None when absent. 413/415 for other bodies."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the login form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_MAX_BYTES:
            raise HTTPException(413, "login form too large")
    values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(name)
    return values[0] if values else None


# --- the app ------------------------------------------------------------------------------
def create_app(runtime: GateRuntime) -> FastAPI:
    """The dashboard and API for ``runtime`` (see the module docstring)."""
    app = FastAPI(
        title="OVR-ALPR gate",
        version="0.1.0",
        summary="Operator dashboard API: live decisions, vehicle history, allow/deny lists",
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "live", "description": "decisions and record updates as they happen"},
            {"name": "records", "description": "the searchable vehicle history"},
            {"name": "site", "description": "service health, cameras, gates, statistics"},
            {
                "name": "lists",
                "description": "per-gate allow/deny lists (changes may need a bearer token)",
            },
        ],
    )
    app.add_middleware(_SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.runtime = runtime
    app.state.live_closing = threading.Event()
    closing: threading.Event = app.state.live_closing
    streams = {"open": 0}
    limiter: dict[str, anyio.CapacityLimiter] = {}

    token_env = runtime.config.http.token_env
    if token_env and not secret_from_env(token_env, "dashboard token", required=False):
        log.warning(
            "gate web: http.token_env names %s but it is not set: list changes are open to "
            "anyone who can reach the dashboard",
            token_env,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        parts = []
        for e in errors:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body"))
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        detail = json.loads(json.dumps(errors, default=str))
        return JSONResponse(
            status_code=422, content={"detail": detail, "message": "; ".join(parts)}
        )

    @app.exception_handler(HistoryError)
    async def _database(_request: Request, exc: HistoryError) -> JSONResponse:
        log.warning("gate web: %s", exc)
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
    invalid: dict[int | str, dict[str, Any]] = {422: {"model": ValidationErrorOut}}
    unauthorized: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}}
    reader = [Depends(_require_reader)]
    found = getattr(runtime, "metrics", None)
    metrics = found if isinstance(found, GateMetrics) else GateMetrics()
    http = runtime.config.http

    # --- pages ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False, response_model=None)
    def dashboard(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> FileResponse | RedirectResponse:
        if not _authorized(request, creds):
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/login", include_in_schema=False, response_model=None)
    def login_form(request: Request) -> HTMLResponse | RedirectResponse:
        if not _expected_token(request):
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page(), headers={"Cache-Control": "no-store"})

    @app.post("/login", include_in_schema=False, response_model=None)
    async def login(request: Request) -> HTMLResponse | RedirectResponse:
        expected = _expected_token(request)
        if not expected:
            return RedirectResponse("/", status_code=303)
        given = await _form_field(request, "password") or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("gate web: failed dashboard login from %s",
                        request.client.host if request.client else "?")  # fmt: skip
            return HTMLResponse(
                login_page("Wrong token."), status_code=401, headers={"Cache-Control": "no-store"}
            )
        ttl = http.session_hours * 3600
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, new_session(expected, time.time(), ttl), max_age=int(ttl),
            path="/", httponly=True, samesite="strict",
            secure=http.secure_cookie or request.url.scheme == "https",
        )  # fmt: skip
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    if http.metrics != "off":

        @app.get(
            "/metrics",
            include_in_schema=False,
            dependencies=reader if http.metrics == "token" else [],
        )
        def prometheus() -> Response:
            return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # --- site -------------------------------------------------------------------------
    @app.get("/api/health", tags=["site"], summary="Liveness of the web service")
    def health() -> HealthOut:
        return HealthOut(
            gates=list(runtime.config.gates),
            live_seq=runtime.feed.latest,
            live_streams=streams["open"],
            time=time.time(),
        )

    @app.get("/api/cameras", tags=["site"], summary="Each camera's status and processed FPS")
    def cameras() -> list[CameraOut]:
        return [CameraOut.model_validate(c) for c in runtime.cameras()]

    @app.get("/api/gates", tags=["site"], summary="Gates, their cameras and list sizes")
    def gates() -> list[GateOut]:
        out = []
        for gid, g in runtime.config.gates.items():
            stored = runtime.history.entries(gid)
            out.append(
                GateOut(
                    gate=gid,
                    plate_camera=g.plate_camera,
                    overview_camera=g.overview_camera,
                    allow=sum(e.kind == "allow" for e in stored),
                    deny=sum(e.kind == "deny" for e in stored),
                    lists_version=runtime.history.lists_version(gid),
                    allow_tolerance=g.lists.allow_tolerance,
                    deny_tolerance=g.lists.deny_tolerance,
                )
            )
        return out

    @app.get("/api/stats", tags=["site"], summary="Records in total and per decision")
    def stats() -> StatsOut:
        return StatsOut.model_validate(dict(runtime.history.stats()))

    # --- live -------------------------------------------------------------------------
    @app.get(
        "/api/live",
        tags=["live"],
        summary="Long-poll the live feed",
        description="Items newer than `after`; waits up to `wait` seconds (at most "
        f"{LONG_POLL_MAX_S:g}) when there are none yet. An `after` beyond the newest item "
        "(a restarted service) starts from the oldest item kept.",
        responses={**unauthorized, **invalid},
        dependencies=reader,
    )
    async def live(
        after: Annotated[int, Query(ge=0, description="last sequence number seen")] = 0,
        wait: Annotated[
            float, Query(ge=0, description=f"seconds to wait, capped at {LONG_POLL_MAX_S:g}")
        ] = 0.0,
    ) -> LivePageOut:
        seq = _start_seq(runtime.feed, after)
        timeout = min(wait, LONG_POLL_MAX_S)
        if timeout > 0:
            if "waits" not in limiter:
                limiter["waits"] = anyio.CapacityLimiter(LONG_POLL_THREADS)
            items = await anyio.to_thread.run_sync(
                runtime.feed.wait, seq, timeout, limiter=limiter["waits"]
            )
        else:
            items = runtime.feed.since(seq)
        return LivePageOut(
            latest=runtime.feed.latest,
            items=[LiveItemOut(seq=i.seq, kind=i.kind, data=i.payload) for i in items],
        )

    @app.get(
        "/api/live/stream",
        tags=["live"],
        summary="Follow the live feed (server-sent events)",
        description="`text/event-stream`: per item `id: <seq>`, `event: <kind>`, `data: "
        "<json>`. Resumes after the `Last-Event-ID` header (sent by EventSource on "
        "reconnect) or `after`; without either, starts with the items the feed still "
        f"holds. A comment is sent every {SSE_HEARTBEAT_S:g} s when idle.",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **unauthorized, **invalid},
        dependencies=reader,
    )
    async def live_stream(
        request: Request,
        after: Annotated[int | None, Query(ge=0, description="last sequence number seen")] = None,
    ) -> StreamingResponse:
        resume = after
        header = request.headers.get("last-event-id")
        if header is not None and header.strip().isdigit():
            resume = int(header.strip())
        feed = runtime.feed

        async def events() -> AsyncIterator[str]:
            seq = _start_seq(feed, resume)
            streams["open"] += 1
            try:
                yield f"retry: {SSE_RETRY_MS}\n\n"
                idle_since = time.monotonic()
                while not closing.is_set():
                    if feed.latest > seq:
                        items = feed.since(seq)
                        for it in items:
                            yield _sse(it)
                        if items:
                            seq = items[-1].seq
                        idle_since = time.monotonic()
                        continue
                    if await request.is_disconnected():
                        return
                    if time.monotonic() - idle_since >= SSE_HEARTBEAT_S:
                        yield ": keep-alive\n\n"
                        idle_since = time.monotonic()
                    await asyncio.sleep(SSE_POLL_S)
            finally:
                streams["open"] -= 1

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # --- records ----------------------------------------------------------------------
    @app.get(
        "/api/records",
        tags=["records"],
        summary="Search the vehicle history",
        description="Filters combine with AND; newest first (fuzzy: closest first). "
        "`since`/`until` are ISO-8601 (naive = UTC).",
        responses={**unauthorized, **invalid},
        dependencies=reader,
    )
    def records(q: Annotated[HistoryQuery, Query()]) -> RecordPageOut:
        found = runtime.history.search(q)
        total = None if (q.fuzzy and q.plate is not None) else runtime.history.count(q)
        return RecordPageOut(
            total=total, limit=q.limit, offset=q.offset, items=[_record_out(r) for r in found]
        )

    @app.get(
        "/api/records/{record_id}",
        tags=["records"],
        summary="One vehicle record",
        responses={**unauthorized, **not_found},
        dependencies=reader,
    )
    def record(record_id: str) -> RecordOut:
        r = runtime.history.get(record_id)
        if r is None:
            raise HTTPException(404, f"no record {record_id!r}")
        return _record_out(r)

    @app.get(
        "/api/records/{record_id}/crop",
        tags=["records"],
        summary="A record's crop (JPEG)",
        description="Only the file named by the record, only when it is an existing JPEG.",
        response_class=FileResponse,
        responses={200: {"content": {"image/jpeg": {}}}, **unauthorized, **not_found, **invalid},
        dependencies=reader,
    )
    def crop(
        record_id: str,
        which: Annotated[
            Literal["plate", "overview"], Query(description="which camera's crop")
        ] = "plate",
    ) -> FileResponse:
        r = runtime.history.get(record_id)
        if r is None:
            raise HTTPException(404, f"no record {record_id!r}")
        path = _jpeg_file(r.crop_path if which == "plate" else r.overview_crop_path)
        if path is None:
            raise HTTPException(404, f"record {record_id!r} has no {which} crop")
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    # --- lists ------------------------------------------------------------------------
    @app.get(
        "/api/gates/{gate}/lists",
        tags=["lists"],
        summary="A gate's allow/deny entries",
        responses=not_found,
    )
    def gate_lists(gate: Annotated[str, Depends(_known_gate)]) -> GateListsOut:
        g = runtime.config.gates[gate]
        return GateListsOut(
            gate=gate,
            version=runtime.history.lists_version(gate),
            allow_tolerance=g.lists.allow_tolerance,
            deny_tolerance=g.lists.deny_tolerance,
            entries=[StoredEntryOut.of(e) for e in runtime.history.entries(gate)],
        )

    @app.post(
        "/api/gates/{gate}/lists/{kind}",
        tags=["lists"],
        summary="Add a plate or pattern to a gate's allow or deny list",
        description="Idempotent: an entry with the same plate (or pattern) already on that "
        "list is returned unchanged.",
        status_code=201,
        responses={401: {"model": ErrorOut}, **not_found, **invalid},
        dependencies=[Depends(_require_token)],
    )
    def add_entry(
        gate: Annotated[str, Depends(_known_gate)],
        kind: Literal["allow", "deny"],
        entry: ListEntry,
    ) -> StoredEntryOut:
        stored = runtime.history.add_entry(gate, kind, entry)
        log.info("gate %s: %s entry %s added (%s)", gate, kind, stored.id, entry.plate or "pattern")
        return StoredEntryOut.of(stored)

    @app.delete(
        "/api/gates/{gate}/lists/{entry_id}",
        tags=["lists"],
        summary="Remove an entry from a gate's lists",
        status_code=204,
        response_class=Response,
        responses={401: {"model": ErrorOut}, **not_found, **invalid},
        dependencies=[Depends(_require_token)],
    )
    def remove_entry(gate: Annotated[str, Depends(_known_gate)], entry_id: int) -> Response:
        if not runtime.history.remove_entry(gate, entry_id):
            raise HTTPException(404, f"gate {gate!r} has no list entry {entry_id}")
        log.info("gate %s: list entry %s removed", gate, entry_id)
        return Response(status_code=204)

    return app
