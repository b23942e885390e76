"""`tritonserver` command: run a native Triton if one is installed, else the bundled one.

NVIDIA's container ships Triton at ``/opt/tritonserver``; there we simply exec it.
Elsewhere we run the Triton 2.51 binary bundled in the ``nvidia-pytriton`` wheel.
That binary needs three things its wheel does not set up (see docs/platform.md):

1. a Python-backend stub built for *this* interpreter's minor version, placed in the
   backend directory next to ``libtriton_python.so``;
2. this environment's ``bin/`` first on ``PATH`` so the stub's embedded Python sees this
   environment's site-packages (and so ``ensemble`` is importable from ``model.py``);
3. ``libpython3.X.so`` on ``LD_LIBRARY_PATH`` when the system has none.

Every command-line argument is passed through unchanged; ``--backend-directory`` is
added only when the caller did not give one.

The launcher *execs* the server: no extra process. The server keeps the launcher's pid,
process group and parent-death signal (``start_triton`` starts it in a group of its own
with ``PR_SET_PDEATHSIG``, see ``alpr_common.procgroup``) and its Python-backend stubs
join that group, so stopping the group stops them all, even after the server crashed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

NATIVE_TRITON = Path("/opt/tritonserver/bin/tritonserver")
ENV_NATIVE = "OVR_ALPR_TRITONSERVER"  # explicit override of the binary to run


class TritonNotFoundError(RuntimeError):
    """Neither a native Triton nor the nvidia-pytriton wheel is installed."""


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to exec a Triton server process."""

    binary: Path
    argv: list[str]
    env: dict[str, str]
    bundled: bool


def _pytriton_root() -> Path:
    # find_spec, not import: pytriton's own dependencies are not installed (--no-deps)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFoundError(
            "no Triton found: /opt/tritonserver is absent and the 'nvidia-pytriton' wheel "
            "is not installed. Run scripts/install.sh (pip install --no-deps "
            "nvidia-pytriton==0.7.0) or use NVIDIA's Triton container."
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "tritonserver"


def backend_dir_for(python_version: str | None = None, root: Path | None = None) -> Path:
    """Return a Triton backend directory whose python backend matches this interpreter.

    The bundled wheel keeps one stub per Python version under ``python_backend_stubs``;
    Triton expects it beside ``libtriton_python.so``. We assemble a backend directory
    in a writable place (inside the wheel if writable, else the user's cache) once.
    """
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    root = root or _pytriton_root()
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotFoundError(f"bundled Triton has no Python-backend stub for Python {version}")
    src_backend = root / "backends" / "python"
    candidates = [root / "backends", Path.home() / ".cache" / "ovr-alpr" / "triton-backends"]
    for backends in candidates:
        target = backends / "python"
        try:
            target.mkdir(parents=True, exist_ok=True)
            for item in ("libtriton_python.so", "triton_python_backend_utils.py"):
                dst = target / item
                if not dst.exists():
                    shutil.copy2(src_backend / item, dst)
            dst_stub = target / "triton_python_backend_stub"
            marker = target / ".stub-python-version"
            if not dst_stub.exists() or (marker.read_text() if marker.exists() else "") != version:
                shutil.copy2(stub, dst_stub)
                dst_stub.chmod(0o755)
                marker.write_text(version)
            return backends
        except OSError:
            continue
    raise TritonNotFoundError("no writable place to assemble the Triton python backend")


def import_root(package: str) -> Path:
    """The ``sys.path`` entry ``package`` is imported from: the checkout in an editable
    install (its finder is not active in Triton's stub), ``site-packages`` from a wheel."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFoundError(f"package {package!r} is not importable")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def _has_flag(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


ACCESS_KEY_ENV = "OVR_ALPR_TRITON_KEY"
ACCESS_KEY_HEADER = "x-alpr-key"
# Everything but health and metadata (left open for load-balancer and Kubernetes probes).
RESTRICTED = "inference,shared-memory,model-config,model-repository,statistics,trace,logging"


def access_key_args(argv: list[str], env: dict[str, str]) -> list[str]:
    """With ``OVR_ALPR_TRITON_KEY`` set, require the ``x-alpr-key`` header on every gRPC and
    HTTP endpoint except health and metadata (unless the caller restricts them itself).
    Triton takes the value on its command line: it is visible to local users in ``ps``."""
    key = env.get(ACCESS_KEY_ENV)
    if not key:
        return []
    out = []
    if not _has_flag(argv, "--grpc-restricted-protocol"):
        out.append(f"--grpc-restricted-protocol={RESTRICTED}:{ACCESS_KEY_HEADER}={key}")
    if not _has_flag(argv, "--http-restricted-api"):
        out.append(f"--http-restricted-api={RESTRICTED}:{ACCESS_KEY_HEADER}={key}")
    return out


def plan_launch(argv: list[str], environ: dict[str, str] | None = None) -> LaunchPlan:
    """Decide which binary to run and with which environment (pure apart from file checks)."""
    env = dict(os.environ if environ is None else environ)
    argv = list(argv) + access_key_args(list(argv), env)
    override = env.get(ENV_NATIVE)
    if override:
        return LaunchPlan(Path(override), list(argv), env, bundled=False)
    if NATIVE_TRITON.is_file() and os.access(NATIVE_TRITON, os.X_OK):
        return LaunchPlan(NATIVE_TRITON, list(argv), env, bundled=False)

    root = _pytriton_root()
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise TritonNotFoundError(f"bundled tritonserver missing at {binary}")
    args = list(argv)
    if not _has_flag(args, "--backend-directory"):
        args += ["--backend-directory", str(backend_dir_for(root=root))]

    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [venv_bin, *[p for p in env.get("PATH", "").split(os.pathsep) if p]]
    )
    libs = [str(root.parent.parent / "nvidia_pytriton.libs")]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        libs.append(str(libdir))
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([old] if old else []))
    # The stub's interpreter must import the project's `ensemble` package from model.py.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(import_root("ensemble")), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    return LaunchPlan(binary, args, env, bundled=True)


def main() -> None:
    try:
        plan = plan_launch(sys.argv[1:])
    except TritonNotFoundError as exc:
        print(f"tritonserver: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    os.execve(str(plan.binary), [str(plan.binary), *plan.argv], plan.env)


if __name__ == "__main__":  # pragma: no cover
    main()
