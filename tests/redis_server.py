"""A real ``redis-server`` on a free port in a temporary directory, for tests.

    proc = start_redis(tmp_path, password=None)   # started, PING answered
    proc.url, proc.port, proc.password
    proc.stop(); proc.start()                      # outage: restart on the same port
    start_redis(tmp_path, tls=True).url            # rediss://...?ssl_ca_certs=... (openssl)

No persistence (``--save '' --appendonly no``): a restart starts empty. The server runs in
a process group of its own (``alpr_common.procgroup``), stopped as a whole. The
``redis_factory`` fixture starts servers on demand and stops them at teardown; import it
into a test module (``from tests.redis_server import redis_factory``) to use it. Tests are
skipped when ``redis-server`` is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from alpr_common import procgroup
from ensemble.ops.server_process import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisProc:
    """A redis-server process; ``url`` holds no password (pass ``password`` separately)."""

    port: int
    dir: Path
    password: str | None = None
    tls: bool = False  # serve TLS only, with a self-signed certificate made by openssl
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ca_file(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.ca_file))}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain client (decoded strings) for inspecting the server in tests."""
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.ca_file))
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=2,
            **kwargs,  # type: ignore[arg-type]
        )

    def _make_cert(self) -> None:
        if self.ca_file.exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("openssl not installed (needed for a TLS redis-server)")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(self.dir / "key.pem"), "-out", str(self.ca_file),
             "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> RedisProc:
        if self.running:
            return self
        port_args = ["--port", str(self.port)]
        if self.tls:
            self._make_cert()
            port_args = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.ca_file),
                "--tls-key-file", str(self.dir / "key.pem"),
                "--tls-ca-cert-file", str(self.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        args = [
            REDIS_SERVER,
            *port_args,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = procgroup.spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        probe = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    log = (
                        (self.dir / "redis.log").read_text()
                        if (self.dir / "redis.log").exists()
                        else ""
                    )
                    raise RuntimeError(
                        f"redis-server exited ({self.proc.returncode}): {err}{log[-2000:]}"
                    )
                try:
                    if probe.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} not ready in {timeout_s}s"
                    )
                time.sleep(0.01)
        finally:
            probe.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        procgroup.stop(self.proc, 5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


def start_redis(tmp_path: Path, password: str | None = None, *, tls: bool = False) -> RedisProc:
    """Start redis-server on a free port with its files under ``tmp_path``."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    last: Exception | None = None
    for _ in range(3):  # the free port can be taken between probing and binding
        d = tmp_path / f"redis-{free_port()}"
        d.mkdir(parents=True, exist_ok=True)
        proc = RedisProc(port=int(d.name.split("-")[1]), dir=d, password=password, tls=tls)
        try:
            return proc.start()
        except RuntimeError as exc:
            last = exc
    raise RuntimeError(f"could not start redis-server: {last}")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisProc]]:
    """``redis_factory(password=None, tls=False) -> RedisProc``; all stopped at teardown."""
    started: list[RedisProc] = []

    def make(password: str | None = None, *, tls: bool = False) -> RedisProc:
        proc = start_redis(tmp_path, password, tls=tls)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
