"""Smoke run of scripts/bench_ingest.py against the session's tritonserver and a private
redis-server: small frames, two plates, real ``edge-client`` processes (one of them with
``read_source``: the end-to-end run of two streams per camera). Correctness only (plates
read, frames matched, corruption counted, fields as committed), never time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ensemble.ops.server_process import TritonProcess
from tests.redis_server import RedisProc, redis_factory
from tests.test_bench_smoke import assert_fields, assert_finite

__all__ = ["redis_factory"]  # the fixture

REPO = Path(__file__).resolve().parent.parent
ZERO = {"corrupt_packets": 0, "decode_errors": 0, "corrupt_frames": 0}


def counted(decode: dict[str, Any]) -> int:
    return sum(decode[k] for k in ZERO)


def test_bench_ingest_smoke(
    triton: TritonProcess, redis_factory: Callable[..., RedisProc], tmp_path: Path
) -> None:
    if not shutil.which("ffmpeg"):  # it encodes the H.264 clips (apt-get install ffmpeg)
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    redis = redis_factory()
    out = tmp_path / "ingest.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_ingest.py"), "--smoke", "--out",
           str(out), "--triton-url", triton.grpc_url, "--redis-url", redis.url]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=900, cwd=REPO)
    res = json.loads(out.read_text())
    # the committed full run has the same fields (runs and readability keyed by bitrate)
    keyed = ["two_streams.runs", "two_streams.crop_readability", "*.per_plate"]
    assert_fields(res, "ingest.json", keyed=keyed)
    assert_finite(res)
    assert res["smoke"] is True
    truth = res["video"]["plates"]
    assert len(truth) == 2

    # two streams: the main stream's crops read at least what the sub-stream's do, every
    # detect frame is matched (the files have the same frames), at the same time
    two = res["two_streams"]
    (kbps,) = two["sub_kbps"]
    sub, pair, main = (two["runs"][k] for k in (f"sub_{kbps}k", f"paired_{kbps}k", "main"))
    assert pair["correct"] >= sub["correct"], (sub["plates"], pair["plates"])
    assert pair["correct"] >= 1 and pair["wrong"] == 0, pair["plates"]
    assert main["correct"] >= 1
    m = pair["stream_match"]
    assert m["matched"] == pair["frames"] == two["frames"] and m["unmatched"] == 0
    assert m["drift_max_s"] <= 0.1 and m["read_ended"] is True
    assert pair["read_decode"] == ZERO and "stream_match" not in sub
    readable = two["crop_readability"]
    assert readable["main"]["crops"] == readable[f"sub_{kbps}k"]["crops"] > 0
    assert readable["main"]["fraction"] >= readable[f"sub_{kbps}k"]["fraction"]
    for run in two["runs"].values():
        assert run["frames"] == two["frames"] and run["cpu_s"] > 0 and run["tracks"] >= 1

    # corruption: PyAV counts it and decodes to the end; OpenCV conceals silently
    bad = res["corruption"]
    assert bad["bytes_flipped"] == 200
    dec = bad["decode"]
    for backend in ("pyav", "opencv"):
        assert counted(dec["clean"][backend]) == 0
        assert dec["corrupt"][backend]["frames"] >= 0.9 * dec["clean"][backend]["frames"]
        clean, corrupt = bad["runs"][f"clean_{backend}"], bad["runs"][f"corrupt_{backend}"]
        assert clean["decode"] == ZERO and clean["correct"] >= 1
        assert corrupt["frames"] >= 0.9 * clean["frames"]
    assert (
        counted(dec["corrupt"]["pyav"]) > 0 and counted(bad["runs"]["corrupt_pyav"]["decode"]) > 0
    )
    assert (
        dec["corrupt"]["pyav"]["frames_flagged_corrupt"] == dec["corrupt"]["pyav"]["corrupt_frames"]
    )
    assert counted(dec["corrupt"]["opencv"]) == 0

    # enhancement: counted when on, never when off; the clean file reads as without it
    enh = res["enhancement"]["runs"]
    assert enh["night_off"]["enhanced"] == enh["clean_off"]["enhanced"] == 0
    assert enh["clean_bilateral"]["enhanced"] >= 1
    assert enh["clean_bilateral"]["correct"] >= 1
    for check in res["enhancement"]["in_process"].values():
        assert check["samples"] > 0 and 0 <= check["located"] <= 1

    # decoders side by side: every frame of each file, from both backends
    for entry in res["decoders"].values():
        assert entry["pyav"]["frames"] == entry["opencv"]["frames"] > 0
        assert entry["fps_pyav_over_opencv"] > 0
    assert res["machine"]["cpus"] >= 1 and res["machine"]["date"]
