"""Webhook sink against a real local HTTP receiver: headers, HMAC signatures, retries
(tenacity), the durable SQLite outbox across a SIGKILL, images (base64, multipart, signed
links served by the crop server)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from alpr_common import crop_server
from alpr_common.config import WebhookSink
from alpr_common.secrets import SecretError
from alpr_common.signed_links import LinkCheck, sign, signed_url, verify
from alpr_common.sinks import build_sink
from alpr_common.sinks.images import crop_kinds, image_path
from alpr_common.sinks.outbox import Envelope, Outbox, OutboxError
from alpr_common.sinks.webhook import (
    WebhookPoster,
    outbox_location,
    retry_after_s,
    sign_body,
    verify_signature,
)
from edge_client.events import PlateEvent, VehicleEvent

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-signing-key"
API_KEY = "alpr-db-key-0123456789"
ENV = {"HOOK_SECRET": SECRET, "ALPR_DB_KEY": API_KEY, "CROP_SECRET": "crop-link-secret"}


# --- a real receiver ------------------------------------------------------------------------
@dataclass
class Request:
    path: str
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP endpoint: answers the next ``(status, headers)`` of ``script`` (then
    200); ``gate`` cleared makes it hold each request (after recording it)."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def delivered(self) -> list[Request]:
        return [r for r, s in zip(self.requests, self.statuses, strict=True) if s == 200]

    def start(self, port: int = 0) -> Receiver:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers = rx.script.pop(0) if rx.script else (200, {})
                rx.requests.append(Request(self.path, self.headers, body))
                rx.statuses.append(status)
                rx.arrivals.append(time.monotonic())
                rx.entered.set()
                rx.gate.wait(30)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client is gone (killed mid-request)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.gate.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def event(n: int = 0, **kw: Any) -> PlateEvent:
    fields: dict[str, Any] = {
        "event_id": f"cam1-{n:04d}-abc",
        "camera": "cam1",
        "track_id": f"run:{n}",
        "plate": "AB12CDE",
        "confidence": 0.93,
        "vehicle_class": "plate",
    }
    return PlateEvent(**{**fields, **kw})


def poster(url: str, tmp_path: Path, **cfg: Any) -> WebhookPoster:
    opts: dict[str, Any] = {"url": url, "timeout_s": 2.0, "backoff_s": 0.01}
    return WebhookPoster(
        WebhookSink(**{**opts, **cfg}), camera="cam1", output_dir=tmp_path, environ=ENV
    )


# --- plain delivery, headers, signature ------------------------------------------------------
def test_delivers_with_headers_signature_and_idempotency_key(
    rx: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = [{"name": "x-api-key", "value_env": "ALPR_DB_KEY"}, {"name": "X-Site", "value": "g1"}]
    sink = poster(rx.url, tmp_path, headers=headers, secret_env="HOOK_SECRET")
    events = [event(i) for i in range(3)]
    for e in events:
        sink.emit(e)
    sink.close()
    assert [r.json() for r in rx.requests] == [e.to_json() for e in events]
    for req, e in zip(rx.requests, events, strict=True):
        h = req.headers
        assert h["Content-Type"] == "application/json"
        assert (h["X-Api-Key"], h["X-Site"]) == (API_KEY, "g1")
        assert h["Idempotency-Key"] == e.event_id
        assert h["X-OVR-Signature"].startswith("sha256=")
        assert verify_signature(SECRET, req.body, h["X-OVR-Timestamp"], h["X-OVR-Signature"])
    stats = sink.stats()
    assert (stats["delivered"], stats["failed"], stats["dropped"], stats["queued"]) == (3, 0, 0, 0)
    assert API_KEY not in caplog.text and SECRET not in caplog.text
    assert API_KEY not in repr(sink.cfg)  # literal header values are hidden from repr too
    assert "g1" not in repr(sink.cfg.headers[1])


def test_signature_header_names_are_configurable(rx: Receiver, tmp_path: Path) -> None:
    sink = poster(
        rx.url, tmp_path, secret_env="HOOK_SECRET", signature_header="X-Sig",
        timestamp_header="X-Sig-Time",
    )  # fmt: skip
    sink.emit(event())
    sink.close()
    (req,) = rx.requests
    assert "X-OVR-Signature" not in req.headers
    assert verify_signature(SECRET, req.body, req.headers["X-Sig-Time"], req.headers["X-Sig"])


NOW = 1_700_000_000
BODY = b'{"plate":"AB12CDE"}'
GOOD = sign_body(SECRET, NOW, BODY)


@pytest.mark.parametrize(
    ("secret", "body", "ts", "sig", "now", "ok"),
    [
        (SECRET, BODY, str(NOW), GOOD, NOW, True),
        (SECRET, BODY, str(NOW), GOOD, NOW + 299, True),  # within the tolerance
        (SECRET, BODY, str(NOW), GOOD, NOW + 301, False),  # a replay, too old
        ("other", BODY, str(NOW), GOOD, NOW, False),  # wrong secret
        (SECRET, BODY + b" ", str(NOW), GOOD, NOW, False),  # body changed
        (SECRET, BODY, str(NOW + 1), GOOD, NOW, False),  # timestamp changed
        (SECRET, BODY, None, GOOD, NOW, False),  # header missing
        (SECRET, BODY, "soon", GOOD, NOW, False),  # malformed timestamp
        (SECRET, BODY, str(NOW), GOOD.replace("sha256=", "md5="), NOW, False),
    ],
)
def test_verify_signature(
    secret: str, body: bytes, ts: str | None, sig: str, now: float, ok: bool
) -> None:
    assert verify_signature(secret, body, ts, sig, now=now) is ok


def test_missing_header_variable_fails_at_start(tmp_path: Path) -> None:
    header = {"name": "x-api-key", "value_env": "NOPE_UNSET"}
    cfg = WebhookSink(url="http://127.0.0.1:9/x", headers=[header])
    with pytest.raises(SecretError, match="NOPE_UNSET"):
        WebhookPoster(cfg, camera="cam1", output_dir=tmp_path, environ={})


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"headers": [{"name": "x-api-key", "value": "a", "value_env": "B"}]}, "exactly one"),
        ({"headers": [{"name": "x-api-key"}]}, "exactly one"),
        ({"headers": [{"name": "bad name", "value": "a"}]}, "pattern"),
        ({"headers": [{"name": "X-K", "value": "a\r\nInjected: 1"}]}, "pattern"),
        ({"headers": [{"name": "content-type", "value": "text/plain"}]}, "reserved"),
        ({"headers": [{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]}, "duplicate"),
        ({"secret_env": "S", "headers": [{"name": "x-ovr-signature", "value": "1"}]}, "reserved"),
        ({"image": "plate", "image_encoding": "url"}, "image_url_base"),
        ({"image": "frame", "image_encoding": "zip"}, "image_encoding"),
        ({"image_max_bytes": 10}, "image_max_bytes"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_config_errors(extra: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        WebhookSink(url="http://x/", **extra)


# --- retries ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("script", "statuses", "delivered", "failed", "retries"),
    [
        ([503], [503, 200], 1, 0, 1),  # retried, then delivered once
        ([500, 502, 503], [500, 502, 503, 200], 1, 0, 3),
        ([429], [429, 200], 1, 0, 1),
        ([400], [400], 0, 1, 0),  # not retried
        ([404], [404], 0, 1, 0),
        ([301], [301], 0, 1, 0),  # a redirect is an answer, not followed
    ],
)
def test_retry_policy(
    rx: Receiver,
    tmp_path: Path,
    script: list[int],
    statuses: list[int],
    delivered: int,
    failed: int,
    retries: int,
) -> None:
    rx.script = [(s, {"Location": rx.url} if s == 301 else {}) for s in script]
    sink = poster(rx.url, tmp_path)
    sink.emit(event(1))
    sink.close()
    assert rx.statuses == statuses
    stats = sink.stats()
    assert (stats["delivered"], stats["failed"], stats["retries"]) == (delivered, failed, retries)
    assert stats["queued"] == 0
    dead = Outbox(sink.outbox.path, max_events=10).dead_letters()
    assert [(d.event_id, d.status) for d in dead] == (
        [(event(1).event_id, statuses[-1])] if failed else []
    )


def test_non_retryable_event_does_not_block_the_next(rx: Receiver, tmp_path: Path) -> None:
    rx.script = [(400, {})]
    sink = poster(rx.url, tmp_path)
    for i in range(3):
        sink.emit(event(i))
    sink.close()
    assert rx.statuses == [400, 200, 200]
    assert [r.json()["event_id"] for r in rx.delivered] == [event(1).event_id, event(2).event_id]


def test_retry_after_is_honoured(rx: Receiver, tmp_path: Path) -> None:
    rx.script = [(503, {"Retry-After": "1"})]
    sink = poster(rx.url, tmp_path, backoff_s=0.01)
    sink.emit(event())
    sink.close()
    assert rx.statuses == [503, 200]
    assert rx.arrivals[1] - rx.arrivals[0] >= 0.95  # waited what the receiver asked


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("Tue, 14 Nov 2023 22:13:30 GMT", 10.0),  # NOW + 10 s as an HTTP date
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    got = retry_after_s(value, now=NOW)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_max_retries_gives_up_into_dead_letters(rx: Receiver, tmp_path: Path) -> None:
    rx.script = [(500, {})] * 10
    sink = poster(rx.url, tmp_path, max_retries=2)
    sink.emit(event())
    sink.close()
    assert rx.statuses == [500, 500, 500]
    assert (sink.stats()["failed"], sink.stats()["retries"]) == (1, 2)
    (dead,) = Outbox(sink.outbox.path, max_events=10).dead_letters()
    assert "max_retries" in dead.reason


def test_max_age_dead_letters_a_stale_event(tmp_path: Path) -> None:
    sink = poster(f"http://127.0.0.1:{free_port()}/x", tmp_path, max_age_s=0.3)
    sink.emit(event())
    assert wait_until(lambda: sink.stats()["failed"] == 1)
    sink.close()
    assert sink.stats()["queued"] == 0
    (dead,) = Outbox(sink.outbox.path, max_events=10).dead_letters()
    assert "expired" in dead.reason and dead.status is None


def test_endpoint_down_then_up(tmp_path: Path) -> None:
    port = free_port()
    sink = poster(f"http://127.0.0.1:{port}/hook", tmp_path, backoff_s=0.02, max_backoff_s=0.1)
    sink.emit(event(1))
    assert wait_until(lambda: sink.stats()["retries"] >= 2)
    late = Receiver().start(port)
    try:
        assert wait_until(lambda: sink.stats()["delivered"] == 1)
        sink.close()
        assert [r.json() for r in late.requests] == [event(1).to_json()]
    finally:
        late.stop()


def test_full_queue_drops_without_blocking(rx: Receiver, tmp_path: Path) -> None:
    rx.gate.clear()  # the receiver holds the first POST
    sink = poster(rx.url, tmp_path, queue_size=5)
    sink.emit(event(0))
    assert rx.entered.wait(5)
    for i in range(1, 101):
        sink.emit(event(i))  # returns at once: memory queue, then outbox, then dropped
    rx.gate.set()
    sink.close()
    stats = sink.stats()
    assert stats["delivered"] + stats["dropped"] == 101 and stats["queued"] == 0
    assert 5 <= stats["delivered"] <= 10  # the outbox (5, the one in flight included) + memory (5)
    ids = [r.json()["event_id"] for r in rx.requests]
    assert ids == sorted(ids) and ids[0] == event(0).event_id  # oldest first, the rest dropped


@pytest.mark.parametrize(("outbox_path", "queued", "dropped"), [(None, 10, 0), (":memory:", 0, 10)])
def test_close_deadline_keeps_or_drops(
    tmp_path: Path, outbox_path: str | None, queued: int, dropped: int
) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    extra = {"outbox_path": outbox_path} if outbox_path else {}
    sink = poster(url, tmp_path, backoff_s=0.05, **extra)
    for i in range(10):
        sink.emit(event(i))
    sink.close(timeout_s=0.3)
    stats = sink.stats()
    assert (stats["delivered"], stats["queued"], stats["dropped"]) == (0, queued, dropped)
    sink.emit(event(11))  # after close: counted, not raised
    assert sink.stats()["dropped"] == dropped + 1


def test_outbox_has_one_owner(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    first = poster(url, tmp_path)
    try:
        with pytest.raises(OutboxError, match="in use"):
            poster(url, tmp_path)
        other = poster(url + "y", tmp_path)  # another URL: another outbox
        other.close(0)
    finally:
        first.close(0)
    poster(url, tmp_path).close(0)  # free again once closed


def test_outbox_location(tmp_path: Path) -> None:
    a = outbox_location(
        "outbox/w-{camera}-{url}.db", camera="../x", url="http://a/", output_dir=tmp_path
    )
    b = outbox_location(
        "outbox/w-{camera}-{url}.db", camera="../x", url="http://b/", output_dir=tmp_path
    )
    assert a != b and Path(a).parent == tmp_path / "outbox" and "/../" not in a
    assert outbox_location(":memory:", camera="c", url="u", output_dir=tmp_path) == ":memory:"


def test_outbox_is_bounded_and_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_events=3, dead_keep=2)
    envs = [Envelope(f"e{i}", "application/json", b"{}", float(i)) for i in range(5)]
    assert box.put(envs) == 3 and len(box) == 3
    for _ in range(3):
        item = box.first()
        assert item is not None
        box.bury(item, reason="test", status=400)
    assert box.first() is None and len(box) == 0
    assert [d.event_id for d in box.dead_letters()] == ["e2", "e1"]  # newest 2 kept
    box.close()


# --- durability: SIGKILL ---------------------------------------------------------------------
CLIENT = """
import sys, time
from pathlib import Path
from alpr_common.config import WebhookSink
from alpr_common.sinks.webhook import WebhookPoster
from edge_client.events import PlateEvent

url, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
cfg = WebhookSink(url=url, timeout_s=30, backoff_s=0.05, max_backoff_s=0.2)
sink = WebhookPoster(cfg, camera="cam1", output_dir=out)
for i in range(n):
    sink.emit(PlateEvent(event_id=f"evt-{i:03d}", camera="cam1", track_id=f"t{i}",
                         plate="AB12CDE"))
while len(sink.outbox) < n:
    time.sleep(0.01)
print("spooled", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("moment", ["receiver_down", "during_post"])
def test_outbox_survives_sigkill(tmp_path: Path, moment: str) -> None:
    """Events emitted by a client that is then SIGKILLed all reach the receiver after a
    restart. Killed while the receiver holds a POST, that one event comes twice, with the
    same Idempotency-Key (at-least-once)."""
    n, port = 12, free_port()
    url = f"http://127.0.0.1:{port}/hook"
    rx = Receiver()
    if moment == "during_post":
        rx.gate.clear()
        rx.start(port)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path), str(n)],
        stdout=subprocess.PIPE, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"spooled"
        if moment == "during_post":
            assert rx.entered.wait(10)  # the receiver has the first event, unanswered
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    if moment == "receiver_down":
        assert rx.requests == []
        rx.start(port)
    try:
        rx.gate.set()
        sink = poster(url, tmp_path)  # the restarted client: same output_dir, same outbox
        assert wait_until(lambda: sink.stats()["delivered"] == n, 20), sink.stats()
        sink.close()
        ids = [r.json()["event_id"] for r in rx.requests]
        want = [f"evt-{i:03d}" for i in range(n)]
        if moment == "receiver_down":
            assert ids == want  # every event, once, in order
        else:
            assert ids == [want[0], *want]  # the interrupted one again, then the rest
            first, again = rx.requests[0], rx.requests[1]
            assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"]
        assert sink.stats()["queued"] == 0
    finally:
        rx.stop()


# --- images ----------------------------------------------------------------------------------
def write_jpeg(path: Path, size: tuple[int, int] = (64, 160), noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    h, w = size
    if noise:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        img = np.full((h, w, 3), 200, np.uint8)
        cv2.putText(img, "AB12", (5, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def crop_file(tmp_path: Path, name: str = "cam1-0000-abc.jpg") -> Path:
    return tmp_path / "crops" / "cam1" / "2024-05-01" / name


def multipart_parts(req: Request) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, payload), parsed by the stdlib email parser."""
    head = f"Content-Type: {req.headers['Content-Type']}\r\n\r\n".encode()
    msg = email.message_from_bytes(head + req.body, policy=email.policy.HTTP)
    assert msg.is_multipart()
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return out


def test_image_base64(rx: Receiver, tmp_path: Path) -> None:
    data = write_jpeg(crop_file(tmp_path))
    sink = poster(rx.url, tmp_path, image="plate", image_encoding="base64")
    e = event(crop_path=str(crop_file(tmp_path)))
    sink.emit(e)
    sink.close()
    body = rx.requests[0].json()
    image = body.pop("image")
    assert body == e.to_json()
    assert (image["kind"], image["content_type"]) == ("plate", "image/jpeg")
    assert base64.b64decode(image["data"]) == data
    assert sink.stats()["images"] == 1


def test_image_multipart(rx: Receiver, tmp_path: Path) -> None:
    data = write_jpeg(crop_file(tmp_path))
    sink = poster(rx.url, tmp_path, image="plate", image_encoding="multipart",
                  secret_env="HOOK_SECRET")  # fmt: skip
    e = event(crop_path=str(crop_file(tmp_path)))
    sink.emit(e)
    sink.close()
    (req,) = rx.requests
    assert req.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(req)
    assert set(parts) == {"json", "upload"}
    assert json.loads(parts["json"][2]) == e.to_json()
    assert parts["upload"] == (f"{e.event_id}-plate.jpg", "image/jpeg", data)
    h = req.headers
    assert verify_signature(SECRET, req.body, h["X-OVR-Timestamp"], h["X-OVR-Signature"])


def test_image_url_served_by_crop_server(rx: Receiver, tmp_path: Path) -> None:
    data = write_jpeg(crop_file(tmp_path))
    server = crop_server.start("127.0.0.1", 0, tmp_path / "crops", ENV["CROP_SECRET"])
    try:
        opts = {"image_url_base": server.url + "/", "image_url_secret_env": "CROP_SECRET"}
        sink = poster(rx.url, tmp_path, image="plate", image_encoding="url", **opts)
        sink.emit(event(crop_path=str(crop_file(tmp_path))))
        sink.close()
        link = rx.requests[0].json()["image_url"]
        assert link.startswith(f"{server.url}/cam1/2024-05-01/cam1-0000-abc.jpg?expires=")
        with urllib.request.urlopen(link, timeout=5) as resp:
            assert (resp.status, resp.headers["Content-Type"], resp.read()) == (
                200, "image/jpeg", data)  # fmt: skip
        assert fetch(link.replace("sig=", "sig=0")) == 403  # tampered signature
        assert fetch(link.replace("cam1-0000", "cam1-0001")) == 403  # another file
    finally:
        server.stop()


def fetch(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


LINK = "cam1/2024-05-01/cam1-0000-abc.jpg"
KEY = "crop-link-secret"


def link_query(kind: str, path: str, future: int, past: int) -> str:
    if kind == "forged":  # the MAC of a path that sign() refuses to sign
        raw = urllib.parse.unquote(path)
        msg = b"ovr-link-v1\n" + raw.encode() + b"\n" + str(future).encode()
        return f"expires={future}&sig={hmac.new(KEY.encode(), msg, hashlib.sha256).hexdigest()}"
    if kind == "none":
        return ""
    when = past if kind == "expired" else future
    key = "other" if kind == "wrong_key" else KEY
    return f"expires={when}&sig={sign(path, when, key)}"


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        (LINK, "ok", 200),
        (LINK, "expired", 403),
        (LINK, "wrong_key", 403),
        (LINK, "none", 403),
        ("cam1/2024-05-01/gone.jpg", "ok", 404),  # valid link, file removed since
        ("cam1/2024-05-01", "ok", 404),  # a folder is not served
        ("cam1/../../secret.txt", "forged", 403),  # traversal, even with a valid MAC
        ("cam1/%2e%2e/%2e%2e/secret.txt", "forged", 403),
        ("..%2Fsecret.txt", "forged", 403),
        ("escape.jpg", "ok", 404),  # a symlink out of the crops folder
    ],
)
def test_crop_server(tmp_path: Path, path: str, query: str, status: int) -> None:
    data = write_jpeg(tmp_path / "crops" / LINK)
    (tmp_path / "secret.txt").write_text("not a crop")
    (tmp_path / "crops" / "escape.jpg").symlink_to(tmp_path / "secret.txt")
    server = crop_server.start("127.0.0.1", 0, tmp_path / "crops", KEY)
    try:
        future, past = int(time.time()) + 60, int(time.time()) - 1
        q = link_query(query, path, future, past)
        url = f"{server.url}/{path}?{q}"
        assert fetch(url) == status
        assert fetch(url, "HEAD") == status
        if status == 200:
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.read() == data
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("expires_in", "secret", "tamper", "want"),
    [
        (60, KEY, "", LinkCheck.OK),
        (-1, KEY, "", LinkCheck.EXPIRED),
        (60, "other", "", LinkCheck.BAD_SIGNATURE),
        (60, KEY, "path", LinkCheck.BAD_SIGNATURE),
        (60, KEY, "expires", LinkCheck.BAD_SIGNATURE),
    ],
)
def test_signed_links(expires_in: int, secret: str, tamper: str, want: LinkCheck) -> None:
    expires = NOW + expires_in
    sig = sign(LINK, expires, secret)
    path = LINK + "x" if tamper == "path" else LINK
    when = expires + 3600 if tamper == "expires" else expires
    assert verify(path, when, sig, KEY, now=NOW) is want
    url = signed_url("http://h:1/p/", LINK, KEY, ttl_s=60, now=NOW)
    assert url.startswith(f"http://h:1/p/{LINK}?expires={NOW + 60}&sig=")


@dataclass(frozen=True)
class Decision:
    """A non-camera event (like a gate decision) with an optional ``images`` mapping."""

    event_id: str = "d-1"
    camera: str = "cam1"
    plate: str = "AB12CDE"
    crop_path: str | None = None
    images: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "plate": self.plate}


@pytest.mark.parametrize(
    ("ev", "kind", "want"),
    [
        (event(crop_path="c.jpg", vehicle_class="plate"), "plate", "c.jpg"),  # plates mode
        (event(crop_path="c.jpg", vehicle_class="plate"), "vehicle", None),
        (event(crop_path="c.jpg", vehicle_class="car"), "vehicle", "c.jpg"),  # vehicles mode
        (event(crop_path="c.jpg", vehicle_class="car"), "plate", None),
        (
            VehicleEvent(
                event_id="v", camera="c", track_id="t", vehicle_class="bus", crop_path="v.jpg"
            ),
            "vehicle",
            "v.jpg",
        ),
        (event(crop_path="c.jpg"), "frame", None),  # a crop is never the frame
        (Decision(crop_path="c.jpg"), "plate", "c.jpg"),  # unsure: the crop for either
        (Decision(crop_path="c.jpg"), "vehicle", "c.jpg"),
        (Decision(crop_path="c.jpg", images={"frame": "f.jpg"}), "frame", "f.jpg"),
        (Decision(crop_path="c.jpg", images={"plate": "p.jpg"}), "plate", "p.jpg"),
        (Decision(), "plate", None),
    ],
)
def test_which_image(ev: Any, kind: str, want: str | None) -> None:
    assert image_path(ev, kind) == (Path(want) if want else None)
    assert crop_kinds(ev) <= {"plate", "vehicle"}


def test_frame_image_from_images_mapping(rx: Receiver, tmp_path: Path) -> None:
    data = write_jpeg(tmp_path / "frames" / "f.jpg", (120, 200))
    sink = poster(rx.url, tmp_path, image="frame")
    sink.emit(Decision(images={"frame": str(tmp_path / "frames" / "f.jpg")}))
    sink.close()
    image = rx.requests[0].json()["image"]
    assert image["kind"] == "frame" and base64.b64decode(image["data"]) == data


@pytest.mark.parametrize(
    ("case", "counter", "has_image"),
    [
        ("missing_kind", "image_missing", False),  # no vehicle image for a plates-mode event
        ("missing_file", "image_missing", False),  # crop removed before sending
        ("too_large", "image_reencoded", True),  # re-encoded under the limit
        ("too_large_no_opencv", "image_too_large", False),
    ],
)
def test_image_fallbacks(
    rx: Receiver, tmp_path: Path, case: str, counter: str, has_image: bool
) -> None:
    path = crop_file(tmp_path)
    write_jpeg(path, (480, 640), noise=True)  # noise: a JPEG of a few hundred kB
    kind = "vehicle" if case == "missing_kind" else "plate"
    sink = poster(rx.url, tmp_path, image=kind, image_max_bytes=20_000)
    if case == "missing_file":
        path.unlink()
    if case == "too_large_no_opencv":
        sink.images.reencode = None
    e = event(crop_path=str(path))
    sink.emit(e)
    sink.close()
    body = rx.requests[0].json()  # the event is sent either way
    assert ("image" in body) is has_image
    stats = sink.stats()
    assert stats[counter] == 1 and stats["delivered"] == 1
    if has_image:
        data = base64.b64decode(body["image"]["data"])
        assert len(data) <= 20_000
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_build_sink_from_yaml_config(rx: Receiver, tmp_path: Path) -> None:
    sink = build_sink(WebhookSink(url=rx.url), camera="cam1", output_dir=tmp_path)
    assert isinstance(sink, WebhookPoster)
    sink.emit(event())
    sink.close()
    assert [r.json() for r in rx.requests] == [event().to_json()]
    assert Path(str(sink.outbox.path)).parent == tmp_path / "outbox"
