"""No process left behind (alpr_common.procgroup, tests/proc_leaks.py).

Real processes throughout: process groups torn down whole (a child that ignores SIGTERM
included), children that die with a SIGKILLed parent, a launcher stopped by SIGTERM,
SIGHUP or Ctrl-C, the demo itself stopped by SIGTERM with tritonserver, its Python-backend
stub, redis-server and alpr-gate up, a SIGKILLed tritonserver whose stub must not outlive
its teardown, and a pytest session that leaks a process and must fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from alpr_common import procgroup
from alpr_common.procgroup import ProcInfo
from ensemble.ops.server_process import start_triton
from tests import proc_leaks

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
STUB = "triton_python_backend_stub"


def alive(pids: list[int]) -> list[ProcInfo]:
    return [i for p in pids if (i := procgroup.read_proc(p)) is not None and i.alive]


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def gone_within(pids: list[int], timeout_s: float = 15.0) -> list[ProcInfo]:
    """The processes of ``pids`` still alive after ``timeout_s`` (their teardown may lag)."""
    left = procgroup.wait_gone(pids, timeout_s)
    return alive(left)


# --- logic ---------------------------------------------------------------------------------
TAIL = " ".join(["0"] * 15) + " 4242 0 0"  # fields 7..21, starttime, two more


@pytest.mark.parametrize(
    ("line", "want"),
    [
        (f"12 (sleep) S 1 12 12 {TAIL}", (12, 1, 12, 12, "S", 4242, "sleep")),
        (f"13 (a b) c)) Z 12 12 5 {TAIL}", (13, 12, 12, 5, "Z", 4242, "a b) c)")),
        (f"14 () R 0 0 0 {TAIL}", (14, 0, 0, 0, "R", 4242, "")),
        ("15 sleep S 1 15 15", ValueError),
        ("16 (short) S 1 16 16 0 0", ValueError),
    ],
)  # fmt: skip
def test_parse_stat(line: str, want: tuple[object, ...] | type[Exception]) -> None:
    pid = int(line.split()[0])
    if isinstance(want, type):
        with pytest.raises(want, match="stat"):
            procgroup.parse_stat(pid, line)
        return
    info = procgroup.parse_stat(pid, line)
    got = (info.pid, info.ppid, info.pgid, info.sid, info.state, info.start_ticks, info.name)
    assert got == want
    assert info.alive is (info.state != "Z")


def test_parse_stat_cpu_ticks() -> None:
    line = (
        "17 (cpu) S 1 17 17 " + " ".join(["0"] * 7) + " 30 12 " + " ".join(["0"] * 6) + " 4242 0 0"
    )
    assert procgroup.parse_stat(17, line).cpu_ticks == 42  # utime 30 + stime 12


def fake(pid: int, ppid: int, cmd: str, *, start: int = 500, state: str = "S") -> ProcInfo:
    return ProcInfo(pid, ppid, pid, pid, state, start, cmd.split()[0][:15], cmd)


ROOT = 100  # the fake pytest process, started at tick 400
TMP = "/tmp/pytest-of-me/pytest-7"
TABLE = [
    (fake(101, ROOT, "sleep 300"), True),  # a child still running
    (fake(102, 101, "redis-server *:0"), True),  # a grandchild
    (fake(103, ROOT, "tritonserver --x", state="Z"), False),  # dead, not reaped: harmless
    (fake(104, 1, f"/v/{STUB} {TMP}/repo/m/1/model.py shm 1 1 9"), True),  # an orphan
    (fake(105, 1, "redis-server 127.0.0.1:6379", start=10), False),  # the machine's own
    (fake(106, 1, f"mosquitto -c {TMP}/m.conf", start=10), False),  # older than the session
    (fake(107, 1, "mosquitto -c /etc/mosquitto/mosquitto.conf"), False),  # not ours
    (fake(108, ROOT, "python -c from multiprocessing.resource_tracker import main"), False),
    (fake(109, 1, f"cat {TMP}/x"), False),  # an unrelated program naming the folder
    (fake(ROOT, 1, "python -m pytest", start=400), False),  # pytest itself
]


def test_leftovers_table() -> None:
    mark = proc_leaks.SessionMark(ROOT, "OVR_ALPR_PYTEST_TEST", "never-set", 400)
    table = {info.pid: info for info, _ in TABLE}
    got = [i.pid for i in proc_leaks.leftovers(mark, [TMP], table)]
    assert got == [info.pid for info, flagged in TABLE if flagged]
    assert proc_leaks.program(fake(1, 0, f"/v/{STUB} a b")) == STUB  # comm is cut at 15


def test_session_mark_is_set_once() -> None:
    """conftest may be imported twice; the children's mark must stay the session's."""
    first, again = proc_leaks.mark_session(), proc_leaks.mark_session()
    assert first == again and os.environ[first.name] == first.value
    assert first.pid == os.getpid() and first.start_ticks > 0


def test_descendants_follow_the_tree() -> None:
    table = {info.pid: info for info, _ in TABLE}
    assert [i.pid for i in procgroup.descendants(ROOT, table)] == [101, 102, 103, 108]
    assert procgroup.descendants(102, table) == []


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_terminated_exits_like_the_signal(sig: signal.Signals, status: int) -> None:
    exc = procgroup.Terminated(sig)
    assert isinstance(exc, SystemExit) and exc.code == status and sig.name in str(exc)


@pytest.mark.parametrize("key", ["start_new_session", "process_group", "preexec_fn"])
def test_spawn_owns_the_group_options(key: str) -> None:
    with pytest.raises(TypeError, match=key):
        procgroup.spawn(["true"], **{key: None})  # type: ignore[arg-type]


# --- real process groups ---------------------------------------------------------------------
# a child that ignores SIGTERM (as Triton's stub does) and one that does not
GROUP_SCRIPT = "(trap '' TERM; sleep 300) & sleep 300 & wait"


def at_least(n: int, pgid: int) -> list[ProcInfo]:
    members = procgroup.group_members(pgid)
    return members if len(members) >= n else []


@pytest.mark.parametrize("leader", ["running", "SIGKILLed"])
def test_stop_ends_the_whole_group(leader: str) -> None:
    proc = procgroup.spawn(["bash", "-c", GROUP_SCRIPT])
    members = wait_for("3 members", lambda: at_least(3, proc.pid))
    pids = [i.pid for i in members]
    assert procgroup.is_group(proc) and all(i.pgid == proc.pid for i in members)
    if leader == "SIGKILLed":  # a crash: the children stay, in the leader's group
        os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.3)
        assert len(alive(pids)) == len(pids) - 1
    procgroup.stop(proc, timeout_s=1.0)
    assert alive(pids) == [] and procgroup.group_members(proc.pid) == []
    assert proc.returncode is not None and not procgroup.is_group(proc)


def test_running_context_stops_on_error() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), procgroup.running(["sleep", "300"]) as proc:
        pids.append(proc.pid)
        raise RuntimeError("boom")
    assert alive(pids) == [] and proc.returncode == -signal.SIGTERM


def test_stop_of_a_plain_process_still_works() -> None:
    proc = subprocess.Popen(["sleep", "300"])
    assert not procgroup.is_group(proc)
    assert procgroup.stop(proc, 5) == -signal.SIGTERM


MIDDLE = """
import sys, time
from alpr_common import procgroup
child = procgroup.spawn(["sleep", "300"], die_with_parent=sys.argv[1] == "1")
print(child.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_child_dies_with_a_sigkilled_parent(die_with_parent: bool) -> None:
    middle = subprocess.Popen(
        [PY, "-c", MIDDLE, "1" if die_with_parent else "0"], stdout=subprocess.PIPE, text=True
    )
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    try:
        middle.kill()  # SIGKILL: no handler, no atexit, no finally runs
        middle.wait(10)
        left = gone_within([child], 5.0 if die_with_parent else 1.0)
        assert bool(left) is not die_with_parent, left
    finally:
        if alive([child]):
            os.killpg(child, signal.SIGKILL)


LAUNCHER = """
import sys, time
from contextlib import ExitStack
from alpr_common import procgroup

procgroup.install_teardown()
try:
    with ExitStack() as started:
        for cmd in (["sleep", "300"], ["bash", "-c", sys.argv[1]]):
            proc = procgroup.spawn(cmd)
            started.callback(procgroup.stop, proc, 1.0)
        procgroup.spawn(["sleep", "301"])  # nobody stops it: the exit hook does
        print("READY", flush=True)
        time.sleep(300)
except KeyboardInterrupt:
    sys.exit(130)
"""


def live_tree(pid: int, at_least: int = 1) -> list[ProcInfo]:
    """``pid``'s live descendants, or [] while there are fewer than ``at_least``."""
    tree = [i for i in procgroup.descendants(pid) if i.alive]
    return tree if len(tree) >= at_least else []


def start_launcher(argv: list[str], **kw: Any) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **kw)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "READY":
            return proc
    raise AssertionError(f"the launcher ended before it was ready ({proc.wait()})")


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_launcher_stops_every_child_on_signal(sig: signal.Signals, status: int) -> None:
    launcher = start_launcher([PY, "-c", LAUNCHER, GROUP_SCRIPT])
    try:  # 2 sleeps, bash and its children (bash starts them after READY)
        tree = wait_for("5 children", lambda: live_tree(launcher.pid, 5))
        session = procgroup.read_proc(launcher.pid).sid  # type: ignore[union-attr]
        assert all(i.sid != session for i in tree), tree  # Ctrl-C reaches only the launcher
        launcher.send_signal(sig)
        assert launcher.wait(30) == status
    finally:
        procgroup.stop(launcher, 30)
    assert gone_within([i.pid for i in tree]) == []


# --- real services -----------------------------------------------------------------------
IDENT_CONFIG = """
name: "ident"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
IDENT_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A model repository with one Python-backend model: a server with one stub, in ~2 s."""
    model = tmp_path / "repo" / "ident"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(IDENT_CONFIG)
    (model / "1" / "model.py").write_text(IDENT_MODEL)
    return tmp_path / "repo"


def stubs_of(pid: int) -> list[ProcInfo]:
    return [i for i in procgroup.descendants(pid) if proc_leaks.program(i) == STUB and i.alive]


def test_sigkilled_tritonserver_leaves_no_stub(tiny_repo: Path, tmp_path: Path) -> None:
    server = start_triton(tiny_repo, tmp_path / "triton.log", timeout_s=120)
    try:
        stubs = wait_for("the stub", lambda: stubs_of(server.proc.pid))
        pids = [i.pid for i in stubs]
        assert all(i.pgid == server.proc.pid for i in stubs)
        # kill -9, not reaped (a crash seen by nobody): the stub takes the zombie for its
        # live parent and, ignoring SIGTERM, would stay for good
        os.kill(server.proc.pid, signal.SIGKILL)
        time.sleep(1.0)
    finally:
        server.stop(10)
    assert server.proc.returncode == -signal.SIGKILL
    assert alive(pids) == [] and procgroup.group_members(server.proc.pid) == []


SERVICES_LAUNCHER = """
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, "scripts")
from demo import start_redis, watch  # the demo's own helpers
from alpr_common import procgroup
from ensemble.ops.server_process import start_triton

procgroup.install_teardown()
work = Path(sys.argv[1])
with ExitStack() as started:
    redis_proc, url = start_redis(work)
    started.callback(procgroup.stop, redis_proc)
    server = start_triton(Path(sys.argv[2]), work / "triton.log", timeout_s=120)
    started.callback(server.stop)
    sleeper = procgroup.spawn(["sleep", "300"])
    started.callback(procgroup.stop, sleeper)
    print("READY", flush=True)
    crashed = watch({"redis-server": redis_proc, "tritonserver": server.proc, "sleep": sleeper})
    print(f"{crashed} exited", file=sys.stderr)
sys.exit(3 if crashed else 0)
"""


@pytest.mark.parametrize("end", ["SIGTERM", "a child crashes"])
def test_services_launcher_leaves_nothing(end: str, tiny_repo: Path, tmp_path: Path) -> None:
    argv = [PY, "-c", SERVICES_LAUNCHER, str(tmp_path), str(tiny_repo)]
    launcher = start_launcher(argv, cwd=REPO)
    try:
        tree = wait_for("the services", lambda: live_tree(launcher.pid, 4))
        programs = {proc_leaks.program(i) for i in tree}
        assert {"redis-server", "tritonserver", STUB, "sleep"} <= programs, programs
        if end == "SIGTERM":
            launcher.send_signal(signal.SIGTERM)
            assert launcher.wait(60) == 143
        else:  # the sleeping child dies: the launcher stops the others and exits
            (sleeper,) = [i for i in tree if proc_leaks.program(i) == "sleep"]
            os.kill(sleeper.pid, signal.SIGKILL)
            assert launcher.wait(60) == 3
    finally:
        procgroup.stop(launcher, 30)
    assert gone_within([i.pid for i in tree]) == []


def test_demo_sigterm_stops_everything(weights: Path, tmp_path: Path) -> None:
    """``scripts/demo.sh --dashboard`` execs ``scripts/demo.py`` (after install.sh, left out
    here): the same process, so the same SIGTERM."""
    err = tmp_path / "demo.err"
    with err.open("w") as stderr:
        demo = subprocess.Popen(
            [PY, "scripts/demo.py", "--dashboard", "--out", str(tmp_path / "demo")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        wait_for("the gate", lambda: "gate dashboard:" in err.read_text() or demo.poll(), 150)
        assert demo.poll() is None, err.read_text()[-3000:]
        tree = [i for i in procgroup.descendants(demo.pid) if i.alive]
        programs = {proc_leaks.program(i) for i in tree}
        assert {"redis-server", "tritonserver", STUB} <= programs, programs
        assert any("alpr-gate" in i.cmdline for i in tree), tree  # python .../alpr-gate
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(90) == 143, err.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert gone_within([i.pid for i in tree]) == []
    assert all(procgroup.group_members(i.pgid) == [] for i in tree if i.pgid != os.getpgid(0))


# --- the session's own leak check ---------------------------------------------------------
LEAKY_TEST = """
import subprocess, time

def test_leaks(tmp_path):
    child = subprocess.Popen(["sleep", "300"])  # a child nobody stops
    subprocess.run(["bash", "-c", "sleep 301 & echo $! > {orphan}"], check=True)  # orphaned
    open("{pids}", "w").write(f"{{child.pid}}\\n")
"""
CLEAN_TEST = """
import subprocess

def test_clean():
    subprocess.run(["sleep", "0.1"], check=True)
"""


@pytest.mark.parametrize("leaky", [True, False])
def test_session_fails_when_a_process_outlives_it(leaky: bool, tmp_path: Path) -> None:
    pids, orphan = tmp_path / "pids", tmp_path / "orphan"
    body = LEAKY_TEST.format(pids=pids, orphan=orphan) if leaky else CLEAN_TEST
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "test_inner.py").write_text(textwrap.dedent(body))
    done = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "tests.conftest", "-c", os.devnull, "--rootdir",
         str(tmp_path / "inner"), "-p", "no:cacheprovider", str(tmp_path / "inner")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    if not leaky:
        assert done.returncode == 0 and "left behind" not in out, out[-3000:]
        return
    leaked = [int(pids.read_text()), int(orphan.read_text())]
    try:
        assert done.returncode == 1, out[-3000:]
        assert "processes left behind" in out and "2 left behind" in out, out[-3000:]
        for pid in leaked:
            assert f"pid {pid} " in out, out[-3000:]
        assert gone_within(leaked, 5.0) == []  # and they were killed
    finally:
        for info in alive(leaked):
            os.kill(info.pid, signal.SIGKILL)
