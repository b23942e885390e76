"""Webhook sink: one HTTP POST per event, through a durable outbox, signed, with an image.

Flow. ``emit`` snapshots the event (``to_json``, where its image is) onto a bounded
in-memory queue and returns (``put_nowait``; a full queue drops the event and counts it):
the pipeline is never blocked. A *spooler* thread turns queued events into requests (the
image read, bounded and encoded) and commits them to the outbox (``outbox.Outbox``, SQLite
under ``output_dir``; ``queue_size`` waiting at most, the rest dropped and counted). A
*sender* thread posts the outbox oldest first and removes an event only when the receiver
answered 2xx; a non-retryable answer (any other 4xx, a redirect) moves it to the outbox's
dead-letter table (counted ``failed``). So an event survives both a receiver outage and a
restart of this process (``SIGKILL`` included) once spooled, milliseconds after ``emit``.

Retries (``tenacity``): network errors, timeouts, 429 and 5xx are retried with exponential
backoff from ``backoff_s`` up to ``max_backoff_s``, waiting at least what a
``Retry-After`` (seconds or HTTP date) asks, within that cap; until delivered, or
``max_retries`` retries / ``max_age_s`` after emit (then dead-lettered, ``failed``).

Delivery is at-least-once: if the process dies after the receiver got a POST but before
the outbox row was deleted, the event is posted again after the restart. Every request
carries ``Idempotency-Key: <event_id>`` so receivers can drop the repeat.

Request headers: ``Content-Type`` (``application/json``, or ``multipart/form-data``),
``Idempotency-Key``, the configured ``headers`` (literal or from environment variables,
never logged, never written to the outbox), and with ``secret_env`` a Stripe/GitHub-style
signature: ``X-OVR-Timestamp: <unix seconds>`` and
``X-OVR-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``, made at each
attempt. A receiver recomputes it over the raw body bytes, compares in constant time and
rejects old timestamps (``verify_signature`` does exactly that).

``close`` lets the sender drain until a deadline; what is left stays in a durable outbox
for the next start (``queued``), or is counted ``dropped`` with ``outbox_path: ":memory:"``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from alpr_common.config import WebhookSink
from alpr_common.secrets import secret_from_env

from .base import SinkEvent
from .images import ImageAttacher, json_bytes, multipart_body, with_image
from .jsonl import resolve_path
from .outbox import MEMORY, Envelope, Outbox, Queued

log = logging.getLogger(__name__)

USER_AGENT = "ovr-alpr/0.1"
SIGNATURE_TOLERANCE_S = 300
SPOOL_DRAIN_S = 5.0  # close() waits this long at least for emitted events to reach the outbox
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


# --- signatures ----------------------------------------------------------------------------
def sign_body(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"<timestamp>.".encode() + body``)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | int | None,
    signature: str | None,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """A receiver's check of a signed webhook: ``body`` is the raw request body, the other
    two the ``X-OVR-Timestamp`` and ``X-OVR-Signature`` header values. True only when the
    signature matches (constant-time) and the timestamp is within ``tolerance_s`` of
    ``now`` (against replays)."""
    if timestamp is None or not signature:
        return False
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_body(secret, ts, body), signature.strip())


# --- HTTP ------------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a body-less GET by urllib: treat 3xx as an
    answer (a non-retryable failure) instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (safe to log)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Retry(Exception):
    """A retryable delivery failure (network, timeout, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Fail(Exception):
    """The receiver refused the event for good (4xx other than 429, 3xx)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class _Aborted(Exception):
    """Closing: no time left; the event stays in the outbox."""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class _Pending:
    """An emitted event waiting for the spooler."""

    event_id: str
    doc: dict[str, Any]
    image: Path | None
    created: float


def outbox_location(template: str, *, camera: str, url: str, output_dir: Path | None) -> str:
    """The outbox file for a sink (``:memory:`` stays as is)."""
    if template == MEMORY:
        return MEMORY
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    return str(resolve_path(template.replace("{url}", digest), camera, output_dir))


class WebhookPoster:
    """The webhook sink (see the module docstring)."""

    def __init__(
        self,
        cfg: WebhookSink,
        *,
        camera: str = "",
        output_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.url = cfg.url
        self.clock = clock
        self.drain_timeout_s = drain_timeout_s
        self._static_headers = {"User-Agent": USER_AGENT, **_resolve_headers(cfg, environ)}
        secret = secret_from_env(cfg.secret_env, "webhook signing secret", environ=environ)
        self._secret = secret.encode("utf-8") if secret else None
        self.images = ImageAttacher.from_options(cfg, output_dir=output_dir, environ=environ)
        self.outbox = Outbox(
            outbox_location(cfg.outbox_path, camera=camera, url=cfg.url, output_dir=output_dir),
            max_events=cfg.queue_size,
        )
        self._exp_wait = wait_exponential(multiplier=cfg.backoff_s, max=cfg.max_backoff_s)
        self._pending: queue.Queue[_Pending] = queue.Queue(maxsize=cfg.queue_size)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._abort = threading.Event()  # set when the drain deadline has passed
        self._deadline = float("inf")
        self._lock = threading.Lock()
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._left_at_close = 0
        self._down = False
        self._closed = False
        self._finished = False  # close() has returned: the outbox is closed
        if len(self.outbox):
            log.info("webhook %s: %d event(s) waiting in the outbox from before",
                     redact_url(self.url), len(self.outbox))  # fmt: skip
        name = redact_url(cfg.url)
        self._spooler = threading.Thread(target=self._spool, name=f"webhook-spool-{name}",
                                         daemon=True)  # fmt: skip
        self._sender = threading.Thread(target=self._send, name=f"webhook-{name}", daemon=True)
        self._spooler.start()
        self._sender.start()

    @classmethod
    def from_config(
        cls,
        cfg: WebhookSink,
        *,
        camera: str,
        redis_client: Any = None,
        output_dir: Path | None = None,
    ) -> WebhookPoster:
        return cls(cfg, camera=camera, output_dir=output_dir)

    # --- Sink ------------------------------------------------------------------------------
    def emit(self, event: SinkEvent) -> None:
        if self._closing.is_set():
            self._count("dropped")
            return
        image = self.images.locate(event)
        item = _Pending(event.event_id, event.to_json(), image, self.clock())
        try:
            self._pending.put_nowait(item)
        except queue.Full:
            self._dropped("queue full")

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting events and deliver what is queued until ``timeout_s`` (default
        ``drain_timeout_s``) has passed; the rest stays in a durable outbox for the next
        start, or is counted as dropped with an in-memory one."""
        if self._closed:
            return
        self._closed = True
        wait = self.drain_timeout_s if timeout_s is None else max(0.0, timeout_s)
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._wake.set()
        self._spooler.join(max(wait, SPOOL_DRAIN_S))  # local and quick: spool everything
        self._sender.join(max(0.0, self._deadline - time.monotonic()) + 0.05)
        if self._spooler.is_alive() or self._sender.is_alive():
            self._abort.set()
            self._sender.join(self.cfg.timeout_s + 1.0)
            self._spooler.join(1.0)
        left = 0
        while True:  # only if the spooler was stuck: these never reached the outbox
            try:
                self._pending.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self._count("dropped", left)
        kept = len(self.outbox)
        self._left_at_close = kept if self.outbox.durable else 0
        self.outbox.close()
        self._finished = True
        if kept and not self.outbox.durable:
            self._count("dropped", kept)
            log.warning("webhook %s: %d undelivered event(s) dropped at close",
                        redact_url(self.url), kept)  # fmt: skip
        elif kept:
            log.info("webhook %s: %d undelivered event(s) kept in %s for the next start",
                     redact_url(self.url), kept, self.outbox.path)  # fmt: skip

    def stats(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
        queued = self._left_at_close if self._finished else len(self.outbox)
        return {**counts, "queued": self._pending.qsize() + queued, **self.images.stats()}

    # --- spooler: memory queue -> outbox ---------------------------------------------------
    def _spool(self) -> None:
        while not self._abort.is_set():
            try:
                batch = [self._pending.get(timeout=0.05)]
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            while len(batch) < 100:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            try:
                envelopes = [self._prepare(p) for p in batch]
                stored = self.outbox.put(envelopes)
            except Exception:
                log.exception("webhook %s: could not spool %d event(s)",
                              redact_url(self.url), len(batch))  # fmt: skip
                self._count("dropped", len(batch))
                continue
            if stored < len(batch):
                self._dropped("outbox full", len(batch) - stored)
            if stored:
                self._wake.set()

    def _prepare(self, p: _Pending) -> Envelope:
        image = self.images.load(p.image, p.event_id) if p.image is not None else None
        if self.images.enabled and self.images.encoding == "multipart":
            filename = f"{p.event_id}-{self.images.kind}.jpg"
            content_type, body = multipart_body(p.doc, image, filename)
        else:
            content_type, body = "application/json", json_bytes(with_image(p.doc, image))
        return Envelope(p.event_id, content_type, body, p.created)

    # --- sender: outbox -> receiver --------------------------------------------------------
    def _send(self) -> None:
        while not self._abort.is_set():
            try:
                item = self.outbox.first()
            except Exception:
                log.exception("webhook %s: outbox read failed", redact_url(self.url))
                self._abort.wait(1.0)
                continue
            if item is None:
                if self._closing.is_set() and not self._spooler.is_alive():
                    return
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            try:
                if not self._deliver(item):
                    return
            except Exception:  # never let the worker die; the event stays queued
                log.exception("webhook %s: unexpected error", redact_url(self.url))
                self._abort.wait(1.0)

    def _deliver(self, item: Queued) -> bool:
        """One event to a final outcome; False when closing cut it short (kept queued)."""
        if self._expired(item):
            self._bury(item, "expired (max_age_s) before delivery")
            return True
        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=lambda rs: self._give_up(rs, item),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            retrying(self._post, item.envelope)
        except _Aborted:
            return False
        except _Fail as exc:
            self._bury(item, str(exc), exc.status)
            return True
        except _Retry as exc:
            why = "expired (max_age_s)" if self._expired(item) else "max_retries reached"
            self._bury(item, f"{why}: {exc}")
            return True
        self.outbox.remove(item)
        self._count("delivered")
        if self._down:
            log.info("webhook %s: delivering again", redact_url(self.url))
            self._down = False
        return True

    def _give_up(self, rs: RetryCallState, item: Queued) -> bool:
        retries = self.cfg.max_retries
        return (retries is not None and rs.attempt_number > retries) or self._expired(item)

    def _expired(self, item: Queued) -> bool:
        age = self.cfg.max_age_s
        return age is not None and self.clock() - item.envelope.created > age

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        asked = getattr(exc, "retry_after", None) or 0.0
        return float(min(self.cfg.max_backoff_s, max(self._exp_wait(rs), asked)))

    def _sleep(self, seconds: float) -> None:
        if self._closing.is_set() and time.monotonic() + seconds > self._deadline:
            raise _Aborted
        if self._abort.wait(seconds):
            raise _Aborted

    def _before_sleep(self, rs: RetryCallState) -> None:
        self._count("retries")
        if not self._down:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            log.warning("webhook %s: delivery failed (%s), retrying",
                        redact_url(self.url), exc)  # fmt: skip
            self._down = True

    def _bury(self, item: Queued, reason: str, status: int | None = None) -> None:
        self.outbox.bury(item, reason=reason, status=status)
        self._count("failed")
        log.warning("webhook %s: event %s dead-lettered (%s)",
                    redact_url(self.url), item.envelope.event_id, reason)  # fmt: skip

    def _post(self, envelope: Envelope) -> None:
        timeout = self.cfg.timeout_s
        if self._closing.is_set():
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise _Aborted
            timeout = min(timeout, remaining)
        headers = {**self._static_headers, "Content-Type": envelope.content_type}
        key = envelope.event_id
        if not _IDEMPOTENCY_KEY.match(key):
            key = hashlib.sha256(key.encode("utf-8")).hexdigest()
        headers["Idempotency-Key"] = key
        if self._secret is not None:
            ts = int(self.clock())
            headers[self.cfg.timestamp_header] = str(ts)
            headers[self.cfg.signature_header] = sign_body(self._secret, ts, envelope.body)
        request = urllib.request.Request(
            self.url, data=envelope.body, headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            code = exc.code
            retry_after = retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            if code == 429 or code >= 500:
                raise _Retry(f"HTTP {code}", retry_after) from None
            raise _Fail(f"HTTP {code}", code) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # URLError wraps refused/unreachable/DNS; TimeoutError and resets are OSErrors.
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"{type(exc).__name__}: {reason}") from None

    # --- counters --------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> int:
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def _dropped(self, why: str, n: int = 1) -> None:
        dropped = self._count("dropped", n)
        if dropped == n or dropped // 1000 != (dropped - n) // 1000:
            log.warning("webhook %s: %s (%d), %d event(s) dropped so far",
                        redact_url(self.url), why, self.cfg.queue_size, dropped)  # fmt: skip

    def __repr__(self) -> str:
        return f"WebhookPoster({redact_url(self.url)!r})"


def _resolve_headers(cfg: WebhookSink, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The configured extra headers with their values (environment variables read now:
    a missing one is a ``SecretError`` at start-up)."""
    out: dict[str, str] = {}
    for h in cfg.headers:
        value = h.value
        if h.value_env is not None:
            value = secret_from_env(h.value_env, f"webhook header {h.name}", environ=environ)
        if value is None or not _HEADER_VALUE.match(value):
            raise ValueError(f"webhook header {h.name}: value has control characters")
        out[h.name] = value
    return out
