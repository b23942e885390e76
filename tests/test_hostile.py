"""Hostile input: a fuzz corpus against every model and the ensemble (thousands of requests,
each refused with an error, server memory bounded, server still serving), and property-
based fuzzing of the configuration loader (validation errors, never tracebacks)."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import struct
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import TritonProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth import jpeg, png, render_plate, render_vehicle, with_declared_size
from tritonclient.utils import InferenceServerException

from alpr_common.sinks import mqtt_topic
from edge_client.config import ConfigError, EdgeConfig, parse_config
from edge_client.crops import safe_name
from ensemble.ops.server_process import tree_rss_mb

GOOD_JPEG = jpeg(render_vehicle("AB123CD")[0])
GOOD_PNG = png(render_plate("AB123CD"))


def png_bomb(width: int, height: int) -> bytes:
    """A real, valid PNG of width x height black pixels: a few hundred KB that inflate to
    width*height*3 bytes (the classic decompression bomb)."""
    raw = zlib.compress(b"".join(b"\x00" + bytes(width * 3) for _ in range(height)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def corpus(n: int, seed: int = 0) -> list[bytes]:
    """Encoded-image payloads that must all be refused."""
    rng = np.random.default_rng(seed)
    fixed = [
        b"", b"\x00", b"\xff\xd8\xff", GOOD_JPEG[:100], GOOD_PNG[:30],
        with_declared_size(GOOD_JPEG, 60000, 60000), with_declared_size(GOOD_PNG, 65535, 65535),
        with_declared_size(GOOD_JPEG, 0, 0), png_bomb(7000, 7000),
    ]  # fmt: skip
    out = list(fixed)
    while len(out) < n:
        kind = rng.integers(0, 3)
        if kind == 0:  # truncated at a random point
            src = GOOD_JPEG if rng.random() < 0.5 else GOOD_PNG
            out.append(src[: int(rng.integers(1, len(src) - 600))])
        elif kind == 1:  # random bytes, sometimes with a valid magic number
            body = rng.bytes(int(rng.integers(1, 4000)))
            out.append(rng.choice([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF"]) + body)
        else:  # huge declared dimensions
            w, h = (int(x) for x in rng.integers(9000, 65535, 2))
            out.append(with_declared_size(GOOD_JPEG if rng.random() < 0.5 else GOOD_PNG, w, h))
    return out


def _bytes_request(url: str, model: str, name: str, payload: bytes) -> str | None:
    client = grpcclient.InferenceServerClient(url)
    try:
        inp = grpcclient.InferInput(name, [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[payload]], dtype=object))
        client.infer(model, [inp], client_timeout=60)
        return None
    except InferenceServerException as exc:
        return exc.message() or str(exc)
    finally:
        client.close()


@pytest.mark.server
def test_fuzz_corpus_every_request_refused_memory_bounded(triton: TritonProcess) -> None:
    payloads = corpus(400)
    targets = [("alpr", "IMAGE"), ("plate_detector", "IMAGE"), ("plate_ocr", "PLATE_IMAGE")]
    jobs = [(m, n, p) for m, n in targets for p in payloads] * 2  # 2400 requests
    assert _bytes_request(triton.grpc_url, "alpr", "IMAGE", GOOD_JPEG) is None  # warm
    rss_before = tree_rss_mb(triton.proc.pid)
    with cf.ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(lambda j: _bytes_request(triton.grpc_url, *j), jobs))
    accepted = [(m, p[:16]) for (m, _, p), e in zip(jobs, errors, strict=True) if e is None]
    assert not accepted, f"hostile payloads accepted: {accepted[:5]}"
    assert all(e for e in errors)
    rss_after = tree_rss_mb(triton.proc.pid)
    assert triton.alive() and triton.ready()
    assert _bytes_request(triton.grpc_url, "alpr", "IMAGE", GOOD_JPEG) is None
    assert rss_after < rss_before + 300, (
        f"server memory grew {rss_before:.0f} -> {rss_after:.0f} MB"
    )


WRONG = [
    ("vehicle_detector", "IMAGE", np.zeros((1, 640, 640, 3), np.float32), "FP32"),
    ("vehicle_detector", "IMAGE", np.zeros((1, 640, 640), np.uint8), "UINT8"),
    ("vehicle_detector", "IMAGE", np.zeros((64, 640, 640, 3), np.uint8), "UINT8"),  # batch > 16
    ("vehicle_detector", "IMAGE", np.zeros((1, 1, 1, 3), np.uint8), "UINT8"),
    ("alpr", "IMAGE", np.zeros((1, 1), np.float64), "FP64"),
    ("alpr", "IMAGE", np.array([[GOOD_JPEG]] * 40, dtype=object), "BYTES"),  # batch > 16
    ("plate_ocr", "PLATE_CROPS", np.zeros((1, 8, 48, 320, 3), np.uint8), "UINT8"),  # no count
    ("plate_ocr", "PLATE_COUNT", np.full((1, 1), 99, np.int32), "INT32"),
]


@pytest.mark.server
def test_wrong_tensors_to_every_model_refused(triton: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    for _ in range(25):  # 200 requests
        for model, name, arr, dtype in WRONG:
            inp = grpcclient.InferInput(name, list(arr.shape), dtype)
            inp.set_data_from_numpy(arr)
            with pytest.raises(InferenceServerException):
                client.infer(model, [inp])
    assert triton.ready()


# --- configuration fuzzing -------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)  # fmt: skip
BASE = {"cameras": {"cam1": {"source": "a.mp4", "sinks": [{"type": "jsonl", "path": "x.jsonl"}]}}}
PATHS = [
    ("cameras",), ("cameras", "cam1"), ("cameras", "cam1", "process_every"),
    ("cameras", "cam1", "thresholds"), ("cameras", "cam1", "roi"), ("cameras", "cam1", "sinks"),
    ("cameras", "cam1", "regions"), ("triton",), ("triton", "urls"), ("redis", "url"),
    ("cameras", "cam1", "tracking", "lost_frames"), ("cameras", "cam1", "mode"),
]  # fmt: skip


def _set(doc: dict, path: tuple[str, ...], value: object) -> dict:
    import copy

    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values)
def test_config_fuzz_never_tracebacks(path: tuple[str, ...], value: object) -> None:
    try:
        cfg = parse_config(_set(BASE, path, value))
    except ConfigError as exc:
        assert "invalid configuration" in str(exc)
    else:
        assert isinstance(cfg, EdgeConfig)
        for cid in cfg.cameras:  # whatever got through is safe as a key, path and topic
            assert safe_name(cid) == cid and "/" not in cid


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_config_fuzz_whole_document(value: object) -> None:
    with contextlib.suppress(ConfigError):  # a validation error is fine; anything else fails
        parse_config(value)


@settings(max_examples=300, deadline=None)
@given(camera=st.text(max_size=40), plate=st.text(max_size=20))
def test_identifiers_sanitised_for_paths_keys_topics(camera: str, plate: str) -> None:
    from alpr_common.plate_text import normalize

    name = safe_name(camera)
    assert name and "/" not in name and not name.startswith(".") and "\x00" not in name
    assert set(normalize(plate)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    try:
        topic = mqtt_topic("alpr/{camera}/plate", camera)
    except ValueError:
        return
    assert "+" not in topic and "#" not in topic and topic.count("/") == 2
