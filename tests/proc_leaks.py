"""The test session's leak check: processes a test run left behind (tests/conftest.py).

A process is left behind when the session ends and it is still alive and

- a descendant of the pytest process, or
- started with this session's marker in its environment (``mark_session`` puts it in
  ``os.environ`` at start-up, so every child inherits it, also one that was orphaned:
  a ``triton_python_backend_stub`` whose server was SIGKILLed, a daemonised server), or
- a service (``SERVICE_NAMES``) whose command line points into the session's temporary
  folders (a child started with a clean environment).

Processes that started before the session (the machine's own redis-server on 6379 and
mosquitto on 1883, other sessions' servers) are never flagged; neither is
multiprocessing's resource tracker or fork server, which end with pytest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from alpr_common.procgroup import ProcInfo, descendants, processes, read_proc, with_env

SERVICE_NAMES = ("triton_python_backend_stub", "tritonserver", "redis-server", "mosquitto")
BENIGN = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
GRACE_S = 5.0  # what a stop still in progress at the end of the session may take


@dataclass(frozen=True)
class SessionMark:
    """``name=value`` in the environment of everything this session starts."""

    pid: int
    name: str
    value: str
    start_ticks: int  # the pytest process's start: nothing older is a leftover


def mark_session() -> SessionMark:
    """This process's mark, set once (``conftest`` may be imported twice: as a conftest and
    by tests that import from it)."""
    pid = os.getpid()
    me = read_proc(pid)
    name = f"OVR_ALPR_PYTEST_{pid}"
    token = os.environ.setdefault(name, str(time.time_ns()))
    return SessionMark(pid, name, token, me.start_ticks if me else 0)


def program(info: ProcInfo) -> str:
    """The program's file name (``comm`` is cut at 15 characters; the command line is not)."""
    first = info.cmdline.split(" ", 1)[0]
    return os.path.basename(first) if first else info.name


def leftovers(
    mark: SessionMark, tmp_roots: Sequence[str] = (), table: dict[int, ProcInfo] | None = None
) -> list[ProcInfo]:
    """The processes this session left behind (see the module's docstring)."""
    table = processes() if table is None else table
    found = {i.pid: i for i in descendants(mark.pid, table)}
    found |= {i.pid: i for i in with_env(mark.name, mark.value, table)}
    roots = [r for r in tmp_roots if r]
    found |= {
        i.pid: i
        for i in table.values()
        if program(i) in SERVICE_NAMES and any(r in i.cmdline for r in roots)
    }
    return sorted(
        (
            i
            for i in found.values()
            if i.alive
            and i.pid != mark.pid
            and i.start_ticks >= mark.start_ticks
            and not any(b in i.cmdline for b in BENIGN)
        ),
        key=lambda i: i.pid,
    )


def wait_leftovers(
    mark: SessionMark, tmp_roots: Sequence[str] = (), grace_s: float = GRACE_S
) -> list[ProcInfo]:
    """:func:`leftovers`, once those still stopping had ``grace_s`` to end."""
    deadline = time.monotonic() + grace_s
    while (left := leftovers(mark, tmp_roots)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill(procs: Sequence[ProcInfo]) -> None:
    """SIGKILL ``procs`` (after the report: they must not outlive the run either)."""
    for info in procs:
        current = read_proc(info.pid)
        if current is not None and current.start_ticks == info.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)


def report(procs: Sequence[ProcInfo]) -> list[str]:
    return [
        f"{len(procs)} process(es) outlived the tests (now SIGKILLed); stop what a test or "
        "fixture starts, as a group (alpr_common.procgroup.spawn / stop):",
        *(f"  {i.describe()[:300]}" for i in procs),
    ]
