"""The uploaded photo: the request body's size limit, the form, the image field (a file,
or base64 text for Plate Recognizer clients) and its decoding, each refused with a clear
``ApiError``:

- 413: a body over ``http.max_upload_bytes`` (refused before it is parsed, announced
  ``Content-Length`` or not);
- 415: a body that is not a form, or an upload that is no JPEG, PNG, BMP or WebP;
- 400: no image field, a field that is not a number where one is expected;
- 422: an image that does not decode (truncated, corrupt, a header declaring more pixels
  than the server takes), base64 that is not.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensemble.contracts import InputError
from ensemble.image_io import decode_image, sniff_format

from .contracts import ApiError

__all__ = ["BodyLimit", "Photo", "decode", "file_field", "read_form", "text_or_file_field"]

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class Photo:
    data: bytes  # encoded image as uploaded
    filename: str


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered by ``refuse(path,
    message)`` with 413 before the app sees it (the announced ``Content-Length`` is
    checked first; a body sent without one is counted as it arrives). The body is held
    in memory, at most ``max_bytes``, and replayed to the app."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        refuse: Callable[[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]],
    ) -> None:
        self.app, self.max_bytes, self.refuse = app, max_bytes, refuse

    def _too_large(self, size: str) -> str:
        return (
            f"request body too large: {size} bytes, the limit is {self.max_bytes} bytes "
            "(http.max_upload_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        announced = headers.get(b"content-length", b"").decode("latin-1")
        if announced.isdigit() and int(announced) > self.max_bytes:
            await self.refuse(scope["path"], self._too_large(announced))(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self.refuse(scope["path"], self._too_large(f"over {self.max_bytes}"))(
                    scope, receive, send
                )
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@contextlib.asynccontextmanager
async def read_form(request: Request, max_bytes: int) -> AsyncIterator[FormData]:
    """The request's form (multipart, or URL-encoded for base64 uploads); its uploaded
    files are closed on leaving."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        raise ApiError(
            f"expected a form upload (multipart/form-data with the image in 'upload'), got "
            f"Content-Type {kind or 'none'!r}",
            415,
        )
    try:
        form = await request.form(max_files=8, max_fields=64, max_part_size=max_bytes)
    except Exception as exc:  # malformed multipart: starlette's HTTPException or parser errors
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise ApiError(f"malformed form upload: {detail}", 400) from None
    try:
        yield form
    finally:
        await form.close()


async def _file(item: UploadFile) -> Photo:
    return Photo(await item.read(), item.filename or "upload")


async def file_field(form: FormData, names: tuple[str, ...] = ("upload", "image")) -> Photo:
    """The image file of a CodeProject.AI request: the ``upload`` field (``image``, as
    DeepStack clients name it), else the form's first file, as CodeProject.AI takes it."""
    for name in names:
        item = form.get(name)
        if isinstance(item, UploadFile):
            return await _file(item)
        if item is not None:
            raise ApiError(f"'{name}' must be an image file (multipart file part), got text", 400)
    first = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
    if first is None:
        raise ApiError("no image: send the photo as the multipart file field 'upload'", 400)
    return await _file(first)


async def text_or_file_field(form: FormData, name: str = "upload") -> Photo:
    """The image of a Plate Recognizer request: a file, or base64 text (a ``data:`` URL
    prefix allowed)."""
    item = form.get(name)
    if isinstance(item, UploadFile):
        return await _file(item)
    if form.get("upload_url") is not None and item is None:
        raise ApiError(
            "upload_url is not supported (the service fetches nothing): send the image itself "
            "as 'upload', a file or base64 text",
            400,
        )
    if item is None or not item.strip():
        raise ApiError(f"no image: send the photo as '{name}' (a file, or base64 text)", 400)
    text = _DATA_URL.sub("", item.strip())
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            f"'{name}' is text but not base64 ({len(item)} characters): send a file or a "
            "base64-encoded image",
            422,
        ) from None
    return Photo(data, name)


def decode(photo: Photo, max_bytes: int) -> np.ndarray:
    """The photo as BGR pixels, with the checks the server applies (size, format, header
    dimensions, truncation)."""
    if not photo.data:
        raise ApiError(f"empty upload: {photo.filename!r} has 0 bytes", 400)
    try:
        sniff_format(photo.data)
    except InputError as exc:
        raise ApiError(f"{photo.filename!r} is not an image: {exc}", 415) from None
    try:
        return decode_image(photo.data, max_bytes=max_bytes)
    except InputError as exc:
        raise ApiError(f"{photo.filename!r}: {exc}", 422) from None
