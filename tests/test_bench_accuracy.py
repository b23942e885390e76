"""Smoke run of scripts/bench_accuracy.py: tiny sizes, real servers, correctness only. The
default reader's photo runs use the session's server (it serves ``fused`` unless the
environment overrides the reader), the previous reader's get a fresh server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.ops.server_process import TritonProcess

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.server
@pytest.mark.data
def test_bench_accuracy_smoke(triton: TritonProcess, tmp_path: Path) -> None:
    if not (SHARED / "openalpr-eu").is_dir() or not (SHARED / "us-plate-crops").is_dir():
        pytest.skip("../shared/data absent")
    out = tmp_path / "accuracy.json"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "bench_accuracy.py"),
        "--limit",
        "3",
        "--crops",
        "12",
        "--readers",
        "fused",
        "ppocr",
        "--photo-sets",
        "eu",
        "--out",
        str(out),
    ]
    if os.environ.get("OVR_ALPR_PLATE_READER", "") in ("", "fused"):  # the session's reader
        cmd += ["--triton-url", triton.grpc_url]
    subprocess.run(cmd, check=True, timeout=600, cwd=REPO)
    res = json.loads(out.read_text())
    for fig in (res, res["previous"]):
        for key in ("eu_exact", "us_crops_val_exact", "br_crops_val_exact"):
            assert 0.0 <= fig[key] <= 1.0, key
        assert fig["rec_ms_per_plate_b8"] > 0 and fig["ms_per_photo_eu"] > 0
        assert fig["sets"]["openalpr-eu"]["images"] == 3
    assert res["reader"] == "fused" and "plate" not in res  # only the readers asked for
    # the default reader reads most of these crops (the card: >= 0.83 on the full splits)
    assert res["us_crops_val_exact"] >= 0.6 and res["br_crops_val_exact"] >= 0.6
    assert res["eu_exact"] >= 2 / 3
