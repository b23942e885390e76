"""Shared fixtures (a real tritonserver on free ports, model paths, the shared data set) and
the test markers.

Markers: a test that needs a real service carries that service's marker (``server``,
``redis``, ``mqtt``, ``postgres``, ``browser``, ``rtsp``); every other test is ``unit``, so
``pytest -m unit`` runs without any service installed. Markers are derived at collection
from the fixtures a test uses (``FIXTURE_MARKS``, ``PARAM_MARKS``) plus a small table for
tests that start a service themselves (``TEST_MARKS``). While a ``unit`` test runs, starting
a service binary or connecting to a live PostgreSQL server fails it, naming the marker it lacks.

No process left behind: a run that leaves a process alive when it ends (a child of pytest,
or an orphan it started, see tests/proc_leaks.py) fails, listing them.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ensemble.ops.server_process import TritonProcess, free_port, start_triton
from tests import proc_leaks

__all__ = ["TritonProcess", "free_port", "start_triton", "stop_triton"]

REPO = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO / "model_repository"
SHARED_DATA = REPO.parent / "shared" / "data" / "openalpr-eu"
sys.path.insert(0, str(Path(__file__).resolve().parent))

REQUIRED_WEIGHTS = [
    MODEL_REPOSITORY / "vehicle_detector/1/model.onnx",
    MODEL_REPOSITORY / "plate_detector/1/ppocr_det.onnx",
    MODEL_REPOSITORY / "plate_ocr/1/ppocr_rec.onnx",
    MODEL_REPOSITORY / "plate_ocr/1/plate_rec.onnx",
]

# --- markers ------------------------------------------------------------------------------
SERVICE_MARKERS = {
    "server": "needs a real tritonserver serving model_repository/ (started by the session "
    "fixture)",
    "redis": "starts a private redis-server on a free port (apt: redis-server; TLS: openssl)",
    "mqtt": "starts a private mosquitto broker on a free port (apt: mosquitto)",
    "postgres": "needs a PostgreSQL server (OVR_ALPR_TEST_PG_URL, default "
    "postgres@127.0.0.1:5432; skipped when unreachable)",
    "browser": "drives a headless Chromium through ChromeDriver (apt: chromium chromium-driver)",
    "rtsp": "serves a video over RTSP (ffmpeg + the GStreamer RTSP server of the system Python)",
}
UNIT_MARKER = "unit: needs no service (none of: " + ", ".join(SERVICE_MARKERS) + ")"

# Fixture -> markers. A key is a fixture name, or ``<defining file stem>::<name>`` for a
# name that means different things in different modules.
FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    "triton": ("server",),
    "triton_replica2": ("server",),
    "redis_factory": ("redis",),
    "test_cache::server": ("redis",),
    "test_edge_e2e::redis_proc": ("redis",),
    "test_gate_service::redis_proc": ("redis",),
    "test_sinks::redis_server": ("redis",),
    "test_sinks::broker": ("mqtt",),
    "test_sentinel::sentinel_set": ("redis",),
    "test_gate_e2e::site": ("redis",),
    "test_gate_browser::dash": ("browser",),
    "test_wheel_install::redis_url": ("redis",),
    "pg_database": ("postgres",),
    "openalpr_eu": ("data",),
}
# (parametrised fixture, parameter) -> markers
PARAM_MARKS: dict[tuple[str, str], tuple[str, ...]] = {
    ("db_url", "postgresql"): ("postgres",),
}
# Tests that start a service themselves: "<file>::<function>" -> markers.
TEST_MARKS: dict[str, tuple[str, ...]] = {
    "test_bench_smoke.py::test_bench_gate_smoke": ("redis",),
    "test_bench_smoke.py::test_soak_smoke": ("redis",),
    "test_cache.py::test_helper_restart_same_port": ("redis",),
    "test_faults.py::test_tritonserver_killed_and_restarted": ("server", "redis"),
    "test_faults.py::test_redis_stopped_and_restarted": ("redis",),
    "test_faults.py::test_rtsp_source_disappears_and_comes_back": ("rtsp", "redis"),
    "test_gate_e2e.py::test_demo_video_through_gate_dashboard": ("browser",),
    "test_ingest.py::test_mid_stream_stall_is_caught_by_read_timeout": ("rtsp",),
    "test_gate_service.py::test_consumer_decides_publishes_mqtt_and_stores": ("mqtt",),
    "test_gate_two_cameras.py::test_plate_and_overview_cameras_make_one_record": ("redis",),
    "test_security.py::test_access_key_required_except_health": ("server",),
    "test_sinks.py::test_mqtt_broker_outage_queues_qos1": ("mqtt",),
    "test_variants.py::test_bls_variant_matches_default": ("server",),
    "test_procs.py::test_sigkilled_tritonserver_leaves_no_stub": ("server",),
    "test_procs.py::test_services_launcher_leaves_nothing": ("server", "redis"),
    "test_procs.py::test_demo_sigterm_stops_everything": ("server", "redis"),
    "test_bench_scale.py::test_scale_smoke": ("server", "redis"),
}
# Executables a unit test must not start -> the marker the test is missing.
SERVICE_BINARIES = {
    "tritonserver": "server",
    "redis-server": "redis",
    "mosquitto": "mqtt",
    "postgres": "postgres",
    "pg_ctl": "postgres",
    "pg_ctlcluster": "postgres",
    "chromium": "browser",
    "chromedriver": "browser",
    "ffmpeg": "rtsp",
    "rtsp_server.py": "rtsp",
}


def pytest_configure(config: pytest.Config) -> None:
    known = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for name, doc in {**SERVICE_MARKERS, "unit": UNIT_MARKER.split(": ", 1)[1]}.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {doc}")


def _fixture_keys(item: pytest.Item) -> Iterator[str]:
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        yield name
        defs = info.name2fixturedefs.get(name, ()) if info is not None else ()
        for fixturedef in defs:
            try:
                stem = Path(inspect.getfile(fixturedef.func)).stem
            except TypeError:
                continue
            yield f"{stem}::{name}"


def markers_for(item: pytest.Item) -> set[str]:
    """The markers ``item`` gets from the tables (its own explicit markers aside)."""
    found: set[str] = set()
    for key in _fixture_keys(item):
        found.update(FIXTURE_MARKS.get(key, ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for name, value in callspec.params.items():
            found.update(PARAM_MARKS.get((name, str(value)), ()))
    found.update(TEST_MARKS.get(f"{item.path.name}::{item.originalname}", ()))  # type: ignore[attr-defined]
    return found


def _check_test_marks(items: Sequence[pytest.Item]) -> None:
    """Every TEST_MARKS entry of a collected file names a test that exists in it."""
    modules = {item.path.name: getattr(item, "module", None) for item in items}
    for key in TEST_MARKS:
        file, func = key.split("::")
        module = modules.get(file)
        if module is not None and not hasattr(module, func):
            raise pytest.UsageError(f"tests/conftest.py TEST_MARKS: {key} names no test")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_test_marks(items)
    for item in items:
        have = {m.name for m in item.iter_markers()}
        for name in sorted(markers_for(item) - have):
            item.add_marker(name)
        if not (have | markers_for(item)) & SERVICE_MARKERS.keys():
            item.add_marker("unit")


# --- the unit guard: a unit test that starts a service fails, naming the missing marker ---
def _service_in(args: Any) -> str | None:
    """The service binary (or service script) that a Popen ``args`` would run, if any."""
    argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
    words = [os.fsdecode(a) for a in argv if isinstance(a, str | bytes | os.PathLike)]
    if not words:
        return None
    program = os.path.basename(words[0].split(" ")[0])  # also a shell=True command line
    if program in SERVICE_BINARIES:
        return program
    scripts = (os.path.basename(w) for w in words[1:] if w.endswith(".py"))
    return next((s for s in scripts if s in SERVICE_BINARIES), None)


@contextmanager
def _unit_guard(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("unit") is None:
        yield
        return
    real_popen = subprocess.Popen

    class GuardedPopen(real_popen):  # type: ignore[valid-type,misc]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            service = _service_in([kw["executable"]] if kw.get("executable") else args)
            if service is not None:
                pytest.fail(
                    f"{item.nodeid} is marked unit but starts {service}: give it the "
                    f"'{SERVICE_BINARIES[service]}' marker (tests/conftest.py TEST_MARKS or "
                    "FIXTURE_MARKS)",
                    pytrace=False,
                )
            super().__init__(args, *a, **kw)

    import psycopg

    real_connect = psycopg.connect

    def no_postgres(*a: Any, **kw: Any) -> Any:
        real_connect(*a, **kw).close()  # an unreachable server raises as before
        pytest.fail(
            f"{item.nodeid} is marked unit but connects to a PostgreSQL server: give it the "
            "'postgres' marker (tests/conftest.py)",
            pytrace=False,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", GuardedPopen)
        patch.setattr(psycopg, "connect", no_postgres)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _unit_guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _unit_guard(item):
        return (yield)


# --- no process left behind: the run fails when one outlives it ----------------------------
SESSION_MARK = proc_leaks.mark_session()  # in the environment of everything the tests start
LEFT_BEHIND = pytest.StashKey[list[proc_leaks.ProcInfo]]()


@pytest.hookimpl(trylast=True)  # after the runner's own sessionfinish tore the fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None)  # None when no test used tmp_path
    left = proc_leaks.wait_leftovers(SESSION_MARK, [str(basetemp)] if basetemp else [])
    if not left:
        return
    proc_leaks.kill(left)
    session.config.stash[LEFT_BEHIND] = left
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.stats.setdefault("left behind", []).extend(left)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    left = config.stash.get(LEFT_BEHIND, [])
    if left:
        terminalreporter.section("processes left behind", red=True, bold=True)
        for line in proc_leaks.report(left):
            terminalreporter.write_line(line, red=True)


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def weights() -> Path:
    missing = [str(p.relative_to(REPO)) for p in REQUIRED_WEIGHTS if not p.is_file()]
    if missing:
        pytest.fail(f"model weights missing ({', '.join(missing)}): run `alpr-models fetch` first")
    return MODEL_REPOSITORY


@pytest.fixture(scope="session")
def openalpr_eu() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent (development data set not available)")
    return SHARED_DATA


def stop_triton(server: TritonProcess) -> None:
    server.stop()


@pytest.fixture(scope="session")
def triton(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real tritonserver serving the repository's model_repository/ on free ports."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = start_triton(weights, log)
    yield server
    stop_triton(server)


@pytest.fixture(scope="session")
def triton_replica2(
    weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[TritonProcess]]:
    """A second replica of model_repository/ beside ``triton`` (tests/test_balancer.py,
    tests/test_bench_balance.py), in a one-item list: a test that kills it puts the server
    it restarted on the same ports there, for the tests after it and the teardown."""
    log = tmp_path_factory.mktemp("triton2") / "tritonserver.log"
    servers = [start_triton(weights, log)]
    yield servers
    for server in servers:
        stop_triton(server)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The synthetic demo video (6 plates) and its ground truth."""
    import json

    from edge_client.tools.demo_video import generate

    video, truth = generate(tmp_path_factory.mktemp("demo"), font="hershey")
    return video, json.loads(truth.read_text())
