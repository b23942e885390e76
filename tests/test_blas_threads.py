"""The edge client runs numpy with one BLAS thread (OpenBLAS's busy-waiting worker cost more
CPU per frame than the client's own work), unless the user set the thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, os
import edge_client.cli.edge  # the entry point's imports, numpy among them
libs = [  # numpy's own OpenBLAS (scipy may load another)
    line.split()[-1] for line in open("/proc/self/maps")
    if "openblas" in line.lower() and "numpy" in line
]
if not libs:
    print("none")
else:
    lib = ctypes.CDLL(libs[0])
    for name in ("openblas_get_num_threads64_", "openblas_get_num_threads"):
        if hasattr(lib, name):
            print(getattr(lib, name)())
            break
    else:
        print("none")
"""


def blas_threads(env_value: str | None) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize(("env_value", "expected"), [(None, "1"), ("2", "2")])
def test_edge_client_uses_one_blas_thread_unless_told(env_value: str | None, expected: str) -> None:
    got = blas_threads(env_value)
    if got == "none":
        pytest.skip("numpy is not linked against OpenBLAS here")
    if env_value == "2" and (os.cpu_count() or 1) < 2:
        pytest.skip("OpenBLAS caps threads at the core count")
    assert got == expected
