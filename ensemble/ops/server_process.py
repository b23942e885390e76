"""Start and stop a tritonserver process on free ports (tests, benchmarks, demo).

The server runs in a process group of its own (``alpr_common.procgroup``) that also holds
its Python-backend stubs; stopping it stops the group, so no stub outlives its server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from alpr_common import procgroup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> tuple[int, ...]:
    """``n`` distinct free ports, held open together while they are picked (so the kernel
    cannot hand out the same one twice, as consecutive ``free_port`` calls sometimes did:
    tritonserver then refused to start with HTTP and gRPC on one port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(int(s.getsockname()[1]) for s in socks)
    finally:
        for s in socks:
            s.close()


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``: to the whole process group when ``proc``
    was started by ``procgroup.spawn`` (also when it already died and left children)."""
    procgroup.stop(proc, timeout_s)


@dataclass
class TritonProcess:
    """A running tritonserver; ``grpc_url`` is host:port for tritonclient.grpc."""

    grpc_url: str
    http_url: str
    metrics_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    extra_args: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, timeout_s: float = 30) -> None:
        stop_process(self.proc, timeout_s)

    def __enter__(self) -> TritonProcess:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_triton(
    repository: Path,
    log: Path,
    *,
    extra_args: list[str] | None = None,
    timeout_s: float = 180,
    ports: tuple[int, int, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> TritonProcess:
    """Start the project's ``tritonserver`` on free ports (or ``ports`` = http, grpc,
    metrics, e.g. to restart a server where its clients expect it) and wait until ready.
    ``env``: variables added to this process's environment for the server (its models'
    ``model.py`` read some, e.g. ``OVR_ALPR_PLATE_ENGINE``)."""
    exe = shutil.which("tritonserver", path=str(Path(sys.executable).parent)) or "tritonserver"
    http, grpc, metrics = ports or free_ports(3)
    cmd = [
        exe, "--model-repository", str(repository), "--http-port", str(http),
        "--grpc-port", str(grpc), "--metrics-port", str(metrics), *(extra_args or []),
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # own group (with its stubs); SIGTERMed if this process dies
        proc = procgroup.spawn(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = TritonProcess(
        f"127.0.0.1:{grpc}", f"http://127.0.0.1:{http}", f"http://127.0.0.1:{metrics}/metrics",
        proc, log, list(extra_args or []),
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"tritonserver exited early:\n{log.read_text()[-3000:]}")
            if server.ready():
                return server
            time.sleep(0.5)
        raise RuntimeError(f"tritonserver not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")
    except BaseException:  # not ready, crashed (stubs may be up) or interrupted: stop the group
        server.stop(5)
        raise


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Triton + its stub processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def inference_counts(
    metrics_url: str, model: str, *, at_least: int = 0, timeout_s: float = 10.0
) -> tuple[int, int]:
    """``model``'s (inferences, executions) from Triton's Prometheus endpoint
    (``nv_inference_count``, ``nv_inference_exec_count``; their ratio is the average
    batch). Triton publishes them asynchronously: with ``at_least``, poll until the
    inference count reaches it or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        found = []
        for metric in ("nv_inference_count", "nv_inference_exec_count"):
            pattern = rf'^{metric}{{[^}}]*model="{re.escape(model)}"[^}}]*}} (\S+)$'
            m = re.search(pattern, text, re.M)
            found.append(int(float(m.group(1))) if m else 0)
        counts = (found[0], found[1])
        if counts[0] >= at_least or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)
