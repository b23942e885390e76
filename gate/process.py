"""Start and stop an ``alpr-gate`` process (demo, benchmark, end-to-end tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alpr_common import procgroup
from ensemble.ops.checkout import checkout_root
from ensemble.ops.server_process import free_port, stop_process


@dataclass
class GateProcess:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path
    config: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str, timeout_s: float = 5.0) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as r:
            return json.loads(r.read())

    def ready(self) -> bool:
        try:
            return bool(self.get("/api/health", 2.0))
        except OSError:
            return False

    def stop(self, timeout_s: float = 20) -> None:
        stop_process(self.proc, timeout_s)


def demo_gate_config(
    workdir: Path, redis_url: str, *, port: int | None = None, database: str | None = None,
    stream: str = "alpr:events", extra_publish: list[dict[str, Any]] | None = None,
    base: Path | None = None,
) -> Path:  # fmt: skip
    """``config/gate.yaml``'s demo gate, pointed at ``redis_url`` with its database, crops
    and decision log under ``workdir``. ``base``: the config to take the gate from
    (default: the checkout's, found by ``ensemble.ops.checkout``)."""
    base = base or checkout_root() / "config" / "gate.yaml"
    gate = yaml.safe_load(base.read_text())["gates"]["demo_gate"]
    gate["publish"] = [
        {"type": "jsonl", "path": str(workdir / "decisions-{gate}.jsonl")},
        *(extra_publish or []),
    ]
    cfg = {
        "redis": {"url": redis_url},
        "stream": stream,
        "database": {"url": database or f"sqlite:///{workdir / 'history.db'}"},
        "crops_dir": str(workdir / "crops"),
        "http": {"host": "127.0.0.1", "port": port or free_port()},
        "gates": {"demo_gate": gate},
    }
    path = workdir / "gate.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_gate(config: Path, log: Path, *, timeout_s: float = 60) -> GateProcess:
    """Start ``alpr-gate --config config`` and wait until its API answers."""
    cfg = yaml.safe_load(config.read_text())
    port = int(cfg.get("http", {}).get("port", 8080))
    exe = shutil.which("alpr-gate", path=str(Path(sys.executable).parent)) or "alpr-gate"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # its own process group, stopped as a whole
        proc = procgroup.spawn([exe, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
    gate = GateProcess(f"http://127.0.0.1:{port}", proc, log, config)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not gate.alive():
                raise RuntimeError(f"alpr-gate exited ({proc.returncode}); see {log}")
            if gate.ready():
                return gate
            time.sleep(0.2)
        raise RuntimeError(f"alpr-gate not ready after {timeout_s}s; see {log}")
    except BaseException:  # not ready or interrupted: leave nothing running
        gate.stop()
        raise
