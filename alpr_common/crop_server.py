"""A small HTTP server for event crops behind expiring signed links (``signed_links``).

``start(host, port, root, secret)`` serves ``GET``/``HEAD /{path}?expires=..&sig=..`` from
the folder ``root`` (the edge's ``output_dir/crops``) on a daemon thread and returns the
running ``CropServer`` (``.url``, ``.port``, ``.stop()``). Answers:

- 403 for a path that is not a plain relative path (``..``, absolute, backslashes), a
  missing, wrong or tampered signature, or an expired link;
- 404 when the link is valid but the file is gone (crop retention) or resolves outside
  ``root`` (a symbolic link), or is not a regular file;
- 200 with the file otherwise (``image/jpeg`` for ``.jpg``/``.jpeg``).

Nothing is listed, nothing is written, and the request log never holds a signature.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .signed_links import LinkCheck, canonical_path, verify

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024  # crops are small; refuse to stream anything huge


class CropServer(ThreadingHTTPServer):
    """The running server; ``stop()`` shuts it down and closes the socket."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], root: Path, secret: str | bytes) -> None:
        if not secret:
            raise ValueError("crop server needs a non-empty signing secret")
        self.root = Path(root).resolve()
        self.secret = secret
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (the base for ``signed_links.signed_url``)."""
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()


def start(host: str, port: int, root: Path | str, secret: str | bytes) -> CropServer:
    """Serve ``root`` on ``host:port`` (0: a free port) from a daemon thread."""
    server = CropServer((host, int(port)), Path(root), secret)
    server._thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="crop-server", daemon=True
    )
    server._thread.start()
    log.info("crop server on %s serving %s", server.url, server.root)
    return server


class _Handler(BaseHTTPRequestHandler):
    server: CropServer
    server_version = "ovr-alpr-crops"
    sys_version = ""
    timeout = 10  # a client that stalls mid-request does not hold a thread forever

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        status, path = self._check()
        if path is None:
            self._answer(status)
            return
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        if len(data) > MAX_FILE_BYTES:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "private, max-age=300")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _check(self) -> tuple[HTTPStatus, Path | None]:
        """(status, file to send or None)."""
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        rel = urllib.parse.unquote(parts.path).lstrip("/")
        try:
            rel = canonical_path(rel)
        except ValueError:
            return HTTPStatus.FORBIDDEN, None
        expires, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
        if verify(rel, expires, sig, self.server.secret) is not LinkCheck.OK:
            return HTTPStatus.FORBIDDEN, None
        root = self.server.root
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return HTTPStatus.NOT_FOUND, None
        return HTTPStatus.OK, target

    def _answer(self, status: HTTPStatus) -> None:
        data = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urllib.parse.urlsplit(self.path).path  # never the query: it holds the signature
        log.debug("crop server: %s %s -> %s", self.command, path, code)

    def log_message(self, format: str, *args: object) -> None:
        pass  # errors are answered; request lines go through log_request
