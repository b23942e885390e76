"""The `tritonserver` launcher: argument pass-through and environment set-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ensemble.ops import launcher as server


def test_bundled_plan_passes_arguments_and_adds_backend_dir() -> None:
    if server.NATIVE_TRITON.exists():
        pytest.skip("native Triton present; bundled path not used")
    argv = ["--model-repository", "model_repository", "--http-port", "1234", "--log-verbose=1"]
    plan = server.plan_launch(argv, {"PATH": "/usr/bin"})
    assert plan.bundled and plan.binary.name == "tritonserver" and plan.binary.is_file()
    assert plan.argv[: len(argv)] == argv
    i = plan.argv.index("--backend-directory")
    backends = Path(plan.argv[i + 1])
    stub = backends / "python" / "triton_python_backend_stub"
    assert stub.is_file() and os.access(stub, os.X_OK)
    assert (backends / "python" / "libtriton_python.so").is_file()
    assert plan.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in plan.env["LD_LIBRARY_PATH"]


def test_explicit_backend_directory_is_respected() -> None:
    if server.NATIVE_TRITON.exists():
        pytest.skip("native Triton present")
    plan = server.plan_launch(["--backend-directory=/x"], {})
    assert plan.argv == ["--backend-directory=/x"]


def test_native_override_runs_given_binary_untouched() -> None:
    plan = server.plan_launch(["--a", "b"], {server.ENV_NATIVE: "/opt/custom/tritonserver"})
    assert not plan.bundled and plan.binary == Path("/opt/custom/tritonserver")
    assert plan.argv == ["--a", "b"]


def test_unknown_python_version_is_a_clear_error() -> None:
    with pytest.raises(server.TritonNotFoundError, match=r"Python 2\.7"):
        server.backend_dir_for("2.7")


KEY = "OVR_ALPR_TRITON_KEY"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, []),
        ([], {KEY: "s3cret"}, ["--grpc-restricted-protocol", "--http-restricted-api"]),
        (["--grpc-restricted-protocol=inference:k=v"], {KEY: "s"}, ["--http-restricted-api"]),
    ],
)  # fmt: skip
def test_access_key_flags(argv: list[str], env: dict[str, str], expected: list[str]) -> None:
    added = server.access_key_args(argv, env)
    assert [a.split("=", 1)[0] for a in added] == expected
    for a in added:
        assert a.endswith(":x-alpr-key=" + env["OVR_ALPR_TRITON_KEY"])
        assert "health" not in a.split(":")[0].split("=")[1]
