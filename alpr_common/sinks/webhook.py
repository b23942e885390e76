"""Webhook sink: one HTTP POST (``application/json`` body = ``event.to_json()``) per event.

``emit`` only serialises the event and puts it on a bounded queue (``put_nowait``; a full
queue drops the event and counts it), so a slow or dead endpoint never blocks the
pipeline. A daemon worker thread posts the queue in order. Connection errors, timeouts,
HTTP 429 and 5xx are retried up to ``max_retries`` times with exponential backoff
(``backoff_s`` doubling, capped at ``MAX_BACKOFF_S``; a ``Retry-After`` in seconds is
honoured within that cap); any other non-2xx answer (4xx, redirects) fails at once.
``close`` lets the worker drain the queue until a deadline, then counts the rest as dropped.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from alpr_common.backoff import Backoff
from alpr_common.config import WebhookSink

from .base import SinkEvent

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
USER_AGENT = "ovr-alpr-edge/0.1"


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
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Fail(Exception):
    pass


class WebhookPoster:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        queue_size: int = 1000,
        max_backoff_s: float = MAX_BACKOFF_S,
        drain_timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        self.url = url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.drain_timeout_s = drain_timeout_s
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        self._headers.update(headers or {})
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._closing = threading.Event()
        self._abort = threading.Event()  # set when the drain deadline has passed
        self._deadline = float("inf")
        self._lock = threading.Lock()
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._down = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"webhook-{redact_url(url)}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_config(
        cls,
        cfg: WebhookSink,
        *,
        camera: str,
        redis_client: Any = None,
        output_dir: Path | None = None,
    ) -> WebhookPoster:
        return cls(
            cfg.url,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            queue_size=cfg.queue_size,
        )

    # --- Sink ------------------------------------------------------------------------
    def emit(self, event: SinkEvent) -> None:
        if self._closing.is_set():
            self._count("dropped")
            return
        body = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))
        try:
            self._queue.put_nowait(body.encode("utf-8"))
        except queue.Full:
            dropped = self._count("dropped")
            if dropped == 1 or dropped % 1000 == 0:
                log.warning(
                    "webhook %s: queue full (%d), %d event(s) dropped so far",
                    redact_url(self.url),
                    self._queue.maxsize,
                    dropped,
                )

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting events, post what is queued until ``timeout_s`` (default
        ``drain_timeout_s``) has passed, then count what is left as dropped."""
        if self._closed:
            return
        self._closed = True
        wait = self.drain_timeout_s if timeout_s is None else max(0.0, timeout_s)
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._thread.join(wait + 0.05)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout_s + 1.0)
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self._count("dropped", left)
            log.warning(
                "webhook %s: %d queued event(s) dropped at close", redact_url(self.url), left
            )

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    # --- worker ----------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> int:
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                body = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                self._deliver(body)
            except Exception:  # never let the worker die
                log.exception("webhook %s: unexpected error", redact_url(self.url))
                self._count("failed")

    def _deliver(self, body: bytes) -> None:
        retry = Backoff(self.backoff_s, max(self.backoff_s, self.max_backoff_s)).retry()
        attempt = 0
        while True:
            try:
                self._post(body)
            except _Fail as exc:
                self._count("failed")
                log.warning("webhook %s: event rejected (%s)", redact_url(self.url), exc)
                return
            except _Retry as exc:
                if attempt >= self.max_retries:
                    self._count("failed")
                    log.warning(
                        "webhook %s: giving up on an event after %d attempt(s) (%s)",
                        redact_url(self.url),
                        attempt + 1,
                        exc,
                    )
                    return
                if not self._down:
                    log.warning(
                        "webhook %s: delivery failed (%s), retrying", redact_url(self.url), exc
                    )
                    self._down = True
                wait = min(self.max_backoff_s, max(retry.fail(), exc.retry_after or 0.0))
                if time.monotonic() + wait > self._deadline or self._sleep(wait):
                    self._count("dropped")  # closing: no time left for another attempt
                    return
                attempt += 1
                self._count("retries")
                continue
            self._count("delivered")
            if self._down:
                log.info("webhook %s: delivering again", redact_url(self.url))
                self._down = False
            return

    def _sleep(self, seconds: float) -> bool:
        """Sleep; True when the close deadline aborted the wait."""
        return self._abort.wait(seconds)

    def _post(self, body: bytes) -> None:
        timeout = self.timeout_s
        if self._closing.is_set():
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise _Retry("close deadline passed")
            timeout = min(timeout, remaining)
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            code = exc.code
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            if code == 429 or code >= 500:
                raise _Retry(f"HTTP {code}", retry_after) from None
            raise _Fail(f"HTTP {code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # URLError wraps refused/unreachable/DNS; TimeoutError and resets are OSErrors.
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"{type(exc).__name__}: {reason}") from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to the backoff
