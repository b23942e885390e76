"""Every Python command in scripts/ starts: ``--help`` exits 0.

Some benchmarks only run in tests that need ``../shared/data`` (skipped in a fresh clone),
so an import broken by a refactor (a renamed helper in another script) would otherwise
surface only where the data is. ``--help`` imports everything and parses nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("*.py"))


def test_the_table_is_not_empty() -> None:
    assert "bench_vehicle_size.py" in SCRIPTS and "bench_edge.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), "--help"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower(), done.stdout[-500:]
