"""No process left behind: children in their own process group, torn down as a group.

Every service this project starts (tritonserver with its Python-backend stubs,
redis-server, alpr-gate, edge clients) is started with :func:`spawn`: in a new session,
so its process group holds it *and everything it forks* (Triton's
``triton_python_backend_stub`` processes are forked by tritonserver and stay in its
group). :func:`stop` ends the whole group: SIGTERM, a wait for every member, then
SIGKILL for what is left (a stub ignores SIGTERM and outlives a SIGKILLed server).

    proc = spawn(["redis-server", "--port", "0"])   # own group; dies with this process
    ...
    stop(proc)                                      # SIGTERM the group, wait, SIGKILL

    with running(["tritonserver", ...]) as proc:    # the same as a context manager
        ...

A launcher calls :func:`install_teardown` once: SIGTERM and SIGHUP then raise
:class:`Terminated` (a ``SystemExit`` with status 128 + signal) and SIGINT raises
``KeyboardInterrupt``, so its ``finally`` blocks stop its children; an ``atexit`` hook
(:func:`stop_all`) stops every group still running when the interpreter exits. Children
in their own session no longer get the terminal's Ctrl-C or hang-up themselves: the
launcher's teardown is what stops them.

``die_with_parent`` (Linux, the default): the child gets ``PR_SET_PDEATHSIG`` (SIGTERM)
before it runs, so it is stopped when the launcher is SIGKILLed. The kernel sends it when
the *thread* that started the child ends, so it is set only for children started from
the main thread. It survives ``exec`` (the ``tritonserver`` launcher execs the binary).

The ``/proc`` readers (:func:`processes`, :func:`descendants`, :func:`group_members`,
:func:`with_env`) are what the teardown waits on and what the test suite's leak check
uses.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
PR_SET_PDEATHSIG = 1
KILL_WAIT_S = 5.0  # how long SIGKILLed members may take to disappear
ORPHAN_GRACE_S = 2.0  # SIGTERM grace for members left once the leader has ended
POLL_S = 0.05


# --- /proc --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcInfo:
    """One process as ``/proc`` shows it (``state`` ``Z``: a zombie, already dead)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start_ticks: int  # start time in clock ticks after boot: tells a reused pid apart
    name: str
    cmdline: str = ""
    cpu_ticks: int = 0  # user + system time so far, in clock ticks (SC_CLK_TCK)

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")

    def describe(self) -> str:
        return f"pid {self.pid} (ppid {self.ppid}, group {self.pgid}): {self.cmdline or self.name}"


def parse_stat(pid: int, text: str, cmdline: str = "") -> ProcInfo:
    """A ``/proc/PID/stat`` line; the name is between the first ``(`` and the *last* ``)``
    (it may hold spaces and parentheses)."""
    head, sep, rest = text.rpartition(")")
    if not sep or "(" not in head:
        raise ValueError(f"not a /proc/PID/stat line: {text!r}")
    fields = rest.split()
    if len(fields) < 20:
        raise ValueError(f"/proc/{pid}/stat has {len(fields) + 2} fields, want >= 22: {text!r}")
    return ProcInfo(
        pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), sid=int(fields[3]), state=fields[0],
        start_ticks=int(fields[19]), name=head.split("(", 1)[1], cmdline=cmdline,
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )  # fmt: skip


def read_proc(pid: int) -> ProcInfo | None:
    """``pid``'s entry, or None when it does not exist (any more)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return parse_stat(pid, stat, cmdline)


def processes() -> dict[int, ProcInfo]:
    """Every process on the machine, by pid (those that end while being read are left out)."""
    out: dict[int, ProcInfo] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (info := read_proc(int(entry))) is not None:
            out[info.pid] = info
    return out


def descendants(pid: int, table: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """Children, grandchildren, ... of ``pid`` (not ``pid`` itself), zombies included."""
    table = processes() if table is None else table
    children: dict[int, list[ProcInfo]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info)
    found, stack = [], list(children.get(pid, []))
    while stack:
        info = stack.pop()
        found.append(info)
        stack += children.get(info.pid, [])
    return sorted(found, key=lambda i: i.pid)


def group_members(pgid: int) -> list[ProcInfo]:
    """The live (not zombie) processes of process group ``pgid``."""
    return [i for i in processes().values() if i.pgid == pgid and i.alive]


def with_env(name: str, value: str, table: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """Processes started with ``name=value`` in their environment (it is inherited, so this
    finds a launcher's children even after they were orphaned). Only processes this user
    may read are seen."""
    want = f"{name}={value}".encode()
    table = processes() if table is None else table
    found = []
    for info in table.values():
        try:
            env = (PROC / str(info.pid) / "environ").read_bytes()
        except OSError:
            continue
        if want in env.split(b"\0"):
            found.append(info)
    return sorted(found, key=lambda i: i.pid)


def wait_gone(pids: Iterable[int], timeout_s: float) -> list[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); the ones still alive."""
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = {p for p in pending if (i := read_proc(p)) is not None and i.alive}
        if not pending or time.monotonic() >= deadline:
            return sorted(pending)
        time.sleep(POLL_S)


# --- spawn and stop -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Group:
    proc: subprocess.Popen[Any]
    start_ticks: int | None  # the leader's, to tell its group from a later one of that id


_GROUPS: dict[int, _Group] = {}
_LOCK = threading.Lock()
_ATEXIT = threading.Event()


def _pdeathsig_setter(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child ``PR_SET_PDEATHSIG``; None where that is not possible
    (not Linux, no libc, or not on the main thread: the signal follows the parent *thread*)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(128 + sig)

    return preexec


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    die_with_parent: bool = True,
    parent_death_signal: int = signal.SIGTERM,
    **popen_kwargs: Any,
) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **popen_kwargs)`` in a new session (so a process group of its
    own, with everything it forks), registered for :func:`stop_all`."""
    for key in ("start_new_session", "process_group", "preexec_fn"):
        if key in popen_kwargs:
            raise TypeError(f"spawn() sets {key} itself; got {key}={popen_kwargs[key]!r}")
    preexec = _pdeathsig_setter(int(parent_death_signal)) if die_with_parent else None
    proc = subprocess.Popen(args, start_new_session=True, preexec_fn=preexec, **popen_kwargs)
    info = read_proc(proc.pid)
    with _LOCK:
        _GROUPS[proc.pid] = _Group(proc, info.start_ticks if info else None)
        if not _ATEXIT.is_set():
            _ATEXIT.set()
            atexit.register(stop_all)
    return proc


def is_group(proc: subprocess.Popen[Any]) -> bool:
    """Whether ``proc`` leads a process group started by :func:`spawn` and not yet stopped."""
    group = _GROUPS.get(proc.pid)
    return group is not None and group.proc is proc


def _signal_group(pgid: int, sig: int, start_ticks: int | None) -> bool:
    """``killpg`` unless the id now names someone else's group (a reused pid leads it)."""
    leader = read_proc(pgid)
    if leader is not None and start_ticks is not None and leader.start_ticks != start_ticks:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(
    pgid: int, timeout_s: float = 10.0, *, start_ticks: int | None = None,
    reap: Callable[[], object] | None = None,
) -> list[int]:  # fmt: skip
    """SIGTERM process group ``pgid``, wait up to ``timeout_s`` for every member to end (at
    most ``ORPHAN_GRACE_S`` once the leader has ended: Triton's stubs ignore SIGTERM and
    wait for their server), then SIGKILL the rest. ``reap``: called while waiting (the
    leader's ``Popen.poll``, so a dead leader does not linger as a zombie). Returns the pids
    that needed SIGKILL."""

    def members() -> list[int]:
        if reap is not None:
            reap()
        return [i.pid for i in group_members(pgid)]

    if not members():
        return []
    _signal_group(pgid, signal.SIGTERM, start_ticks)
    deadline = time.monotonic() + timeout_s
    while (left := members()) and time.monotonic() < deadline:
        if pgid not in left:  # the leader is gone: nobody stops the rest for it
            deadline = min(deadline, time.monotonic() + ORPHAN_GRACE_S)
        time.sleep(POLL_S)
    if left:
        _signal_group(pgid, signal.SIGKILL, start_ticks)
        deadline = time.monotonic() + KILL_WAIT_S
        while members() and time.monotonic() < deadline:
            time.sleep(POLL_S)
    return left


def stop(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int | None:
    """Stop ``proc`` and reap it; its whole group when :func:`spawn` started it (also when the
    leader already died: what it forked is still in the group). A process started otherwise
    gets SIGTERM, then SIGKILL after ``timeout_s``. Returns its exit status."""
    group = _GROUPS.get(proc.pid)
    if group is not None and group.proc is proc:
        kill_group(proc.pid, timeout_s, start_ticks=group.start_ticks, reap=proc.poll)
        with _LOCK:
            _GROUPS.pop(proc.pid, None)
    elif proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        return proc.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:  # in uninterruptible sleep: nothing more to do
        return None


def stop_all(timeout_s: float = 10.0) -> None:
    """Stop every group :func:`spawn` started that is still registered, newest first."""
    with _LOCK:
        groups = [g.proc for g in reversed(_GROUPS.values())]
    for proc in groups:
        stop(proc, timeout_s)


@contextlib.contextmanager
def running(
    args: Sequence[str | os.PathLike[str]], *, timeout_s: float = 10.0, **kwargs: Any
) -> Iterator[subprocess.Popen[Any]]:
    """:func:`spawn` for the ``with`` block; the group is stopped when it ends, however."""
    proc = spawn(args, **kwargs)
    try:
        yield proc
    finally:
        stop(proc, timeout_s)


# --- signals ------------------------------------------------------------------------------
class Terminated(SystemExit):
    """Raised by :func:`install_teardown`'s handler for SIGTERM or SIGHUP: ``finally`` blocks
    run, and the process exits with status 128 + signal, as if the signal had killed it."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


TEARDOWN_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_STOPPING = threading.Event()


def _on_signal(signum: int, _frame: object) -> None:
    name = signal.Signals(signum).name
    # os.write, not print: the handler may interrupt a print to the same stream
    if _STOPPING.is_set():  # a teardown is running: let it finish (SIGKILL to force)
        os.write(2, f"{name}: already stopping\n".encode())
        return
    _STOPPING.set()
    os.write(2, f"{name}: stopping\n".encode())
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def install_teardown(signals: Iterable[int] = TEARDOWN_SIGNALS) -> None:
    """Make ``signals`` stop this process cleanly (main thread only): the first raises
    :class:`Terminated` (``KeyboardInterrupt`` for SIGINT) where the program is, later ones
    are ignored while it tears down; every group :func:`spawn` started and nobody stopped
    is stopped at exit."""
    _STOPPING.clear()
    for sig in signals:
        signal.signal(sig, _on_signal)
    with _LOCK:
        if not _ATEXIT.is_set():
            _ATEXIT.set()
            atexit.register(stop_all)
