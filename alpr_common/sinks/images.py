"""Images that travel with events: which file, how big, and how it is carried.

A sink configured with ``image: plate | vehicle | frame`` (``config.EventImageOptions``)
asks ``ImageAttacher.attach(event)`` for that image of each event:

- which file: ``event.images[kind]`` (a local JPEG path per kind) when the event has it,
  else ``event.crop_path`` when the crop is of that kind (``crop_kinds``): a camera event
  whose ``vehicle_class`` is ``plate`` (plates mode) has a plate crop, any other camera
  event a vehicle crop; for other events (a gate decision) the crop stands for either.
  Nothing found, or the file is unreadable: the event goes without an image
  (``image_missing``);
- how big: an image over ``image_max_bytes`` is re-encoded as a smaller JPEG (lower
  quality, then smaller) when OpenCV is loaded in the process (the edge client always has
  it; ``alpr_common`` itself does not depend on it), else, or if even that does not fit,
  the event goes without it (``image_too_large``);
- how it is carried (``image_encoding``): ``base64`` adds
  ``image: {kind, content_type, data}`` to the JSON body; ``multipart`` sends
  ``multipart/form-data`` with a ``json`` part (the event) and an ``upload`` file part,
  as Plate Recognizer's webhooks do; ``url`` adds ``image_url``, an expiring signed link
  (``alpr_common.signed_links``) to the file on the crop server (``alpr_common.crop_server``)
  -- no bytes travel, so ``image_max_bytes`` does not apply.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpr_common.config import EventImageOptions
from alpr_common.files import safe_name
from alpr_common.secrets import secret_from_env
from alpr_common.signed_links import signed_url

from .base import SinkEvent

log = logging.getLogger(__name__)

JPEG = "image/jpeg"
Reencoder = Callable[[bytes, int], bytes | None]


@dataclass(frozen=True)
class EventImage:
    """The image attached to one event: ``data`` (base64/multipart) or ``url`` (url)."""

    kind: str
    data: bytes | None = None
    url: str | None = None
    content_type: str = JPEG


def crop_kinds(event: object) -> frozenset[str]:
    """The image kinds an event's ``crop_path`` can stand for."""
    if getattr(event, "kind", None) is None:  # not a camera event (e.g. a gate decision)
        return frozenset({"plate", "vehicle"})
    vehicle_class = getattr(event, "vehicle_class", "") or ""
    if vehicle_class == "plate":
        return frozenset({"plate"})
    return frozenset({"vehicle"}) if vehicle_class else frozenset({"plate", "vehicle"})


def image_path(event: object, kind: str) -> Path | None:
    """The local file of ``event``'s ``kind`` image, or None (see ``crop_kinds``)."""
    images: Mapping[str, str] = getattr(event, "images", None) or {}
    path = images.get(kind)
    if not path and kind in crop_kinds(event):
        path = getattr(event, "crop_path", None)
    return Path(path) if path else None


def opencv_reencoder() -> Reencoder | None:
    """A JPEG shrinker using the OpenCV this process already loaded, or None."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        return None

    def reencode(data: bytes, max_bytes: int) -> bytes | None:
        return shrink_jpeg(cv2, data, max_bytes)

    return reencode


def shrink_jpeg(cv2: Any, data: bytes, max_bytes: int) -> bytes | None:
    """``data`` re-encoded as a JPEG of at most ``max_bytes`` (quality 85 down to 40, then
    0.7x smaller steps down to a 16-pixel side), or None when it cannot be decoded or fit."""
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    while min(image.shape[:2]) >= 16:
        for quality in (85, 70, 55, 40):
            ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
            if ok and len(buf) <= max_bytes:
                return bytes(buf.tobytes())
        h, w = image.shape[:2]
        size = (max(1, int(w * 0.7)), max(1, int(h * 0.7)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return None


class ImageAttacher:
    """Finds, bounds and (for ``url``) links each event's image; counts the outcomes in
    ``counts`` (``images``, ``image_reencoded``, ``image_missing``, ``image_too_large``)."""

    def __init__(
        self,
        opts: EventImageOptions,
        *,
        crops_root: Path | None = None,
        url_secret: str | None = None,
        reencode: Reencoder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = opts.image
        self.encoding = opts.image_encoding
        self.max_bytes = opts.image_max_bytes
        self.url_base = opts.image_url_base
        self.url_ttl_s = opts.image_url_ttl_s
        self.crops_root = Path(crops_root).resolve() if crops_root is not None else None
        self.url_secret = url_secret
        self.reencode = reencode
        self.clock = clock
        self._lock = threading.Lock()
        self.counts = {"images": 0, "image_reencoded": 0, "image_missing": 0,
                       "image_too_large": 0}  # fmt: skip
        if self.enabled and self.encoding == "url" and not (url_secret and self.crops_root):
            raise ValueError("image_encoding url needs the link secret and the crops folder")

    @classmethod
    def from_options(
        cls,
        opts: EventImageOptions,
        *,
        output_dir: Path | None,
        environ: Mapping[str, str] | None = None,
    ) -> ImageAttacher:
        """The attacher a sink config asks for: crops under ``output_dir/crops``, the link
        secret from ``image_url_secret_env`` (required for ``url``), OpenCV re-encoding
        when the process has OpenCV loaded."""
        secret = None
        if opts.image != "none" and opts.image_encoding == "url":
            secret = secret_from_env(
                opts.image_url_secret_env, "image link signing secret", environ=environ
            )
        return cls(
            opts,
            crops_root=None if output_dir is None else Path(output_dir) / "crops",
            url_secret=secret,
            reencode=opencv_reencoder(),
        )

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def attach(self, event: SinkEvent) -> EventImage | None:
        """The event's image as configured, or None (counted) when it goes without one."""
        path = self.locate(event)
        return None if path is None else self.load(path, event.event_id)

    def locate(self, event: SinkEvent) -> Path | None:
        """Where the event's image is (no I/O; cheap enough for ``emit``); None, counted as
        missing, when the event has none of that kind."""
        if not self.enabled:
            return None
        path = image_path(event, self.kind)
        if path is None:
            self._missing(event.event_id, "no image of that kind")
        return path

    def load(self, path: Path, event_id: str) -> EventImage | None:
        """The image at ``path`` read and bounded (base64/multipart) or linked (url)."""
        if self.encoding == "url":
            return self._link(path, event_id)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._missing(event_id, f"unreadable ({type(exc).__name__})")
            return None
        if len(data) > self.max_bytes:
            smaller = self.reencode(data, self.max_bytes) if self.reencode else None
            if smaller is None:
                self._bump("image_too_large")
                log.debug("event %s: %s image of %d bytes over image_max_bytes, left out",
                          event_id, self.kind, len(data))  # fmt: skip
                return None
            self._bump("image_reencoded")
            data = smaller
        self._bump("images")
        return EventImage(self.kind, data=data)

    def _link(self, path: Path, event_id: str) -> EventImage | None:
        assert self.crops_root is not None and self.url_base and self.url_secret
        try:
            resolved = path.resolve()
            rel = resolved.relative_to(self.crops_root).as_posix()
        except (OSError, ValueError):
            self._missing(event_id, "not under the crops folder")
            return None
        if not resolved.is_file():
            self._missing(event_id, "file not found")
            return None
        url = signed_url(self.url_base, rel, self.url_secret, ttl_s=self.url_ttl_s,
                         now=self.clock())  # fmt: skip
        self._bump("images")
        return EventImage(self.kind, url=url)

    def _missing(self, event_id: str, why: str) -> None:
        self._bump("image_missing")
        log.debug("event %s: no %s image (%s)", event_id, self.kind, why)

    def _bump(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1


# --- bodies ----------------------------------------------------------------------------
def json_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def with_image(doc: dict[str, Any], image: EventImage | None) -> dict[str, Any]:
    """The event JSON with its image inline: ``image: {kind, content_type, data}`` (base64)
    or ``image_url`` (url); unchanged without an image."""
    if image is None:
        return doc
    if image.url is not None:
        return {**doc, "image_url": image.url}
    assert image.data is not None
    data = base64.b64encode(image.data).decode("ascii")
    return {**doc, "image": {"kind": image.kind, "content_type": image.content_type,
                             "data": data}}  # fmt: skip


def multipart_body(
    doc: Mapping[str, Any], image: EventImage | None, filename: str
) -> tuple[str, bytes]:
    """(content type, body) of a ``multipart/form-data`` POST: a ``json`` part with the
    event and, with an image, an ``upload`` file part (Plate Recognizer's webhook layout)."""
    body_json = json_bytes(doc)
    data = image.data if image is not None else None
    while True:
        boundary = f"ovr-{uuid.uuid4().hex}"
        marker = boundary.encode("ascii")
        if marker not in body_json and (data is None or marker not in data):
            break
    parts = [
        b"--" + marker + b"\r\n"
        b'Content-Disposition: form-data; name="json"\r\n'
        b"Content-Type: application/json; charset=utf-8\r\n\r\n" + body_json + b"\r\n"
    ]
    if image is not None and data is not None:
        name = safe_name(filename) or "image.jpg"
        parts.append(
            b"--" + marker + b"\r\n"
            b'Content-Disposition: form-data; name="upload"; filename="'
            + name.encode("ascii")
            + b'"\r\nContent-Type: '
            + image.content_type.encode("ascii")
            + b"\r\n\r\n"
            + data
            + b"\r\n"
        )
    parts.append(b"--" + marker + b"--\r\n")
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)
