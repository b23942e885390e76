"""Access key on Triton's endpoints and failover between Triton URLs, against real servers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import TritonProcess, start_triton, stop_triton
from synth import jpeg, render_plate

from edge_client.triton_client import AlprClient, InferenceError, TritonEndpoint

pytestmark = pytest.mark.server


def test_access_key_required_except_health(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVR_ALPR_TRITON_KEY", "correct-horse")
    # the key guards the server's endpoints, whatever it serves: plate_ocr alone is enough
    only = ["--model-control-mode=explicit", "--load-model=plate_ocr"]
    server = start_triton(weights, tmp_path / "triton.log", extra_args=only)
    try:
        raw = grpcclient.InferenceServerClient(server.grpc_url)
        assert raw.is_server_ready()  # health stays open for probes
        inp = grpcclient.InferInput("PLATE_IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[jpeg(render_plate("AB123CD"))]], dtype=object))
        with pytest.raises(Exception, match="x-alpr-key"):
            raw.infer("plate_ocr", [inp])  # no header
        with pytest.raises(Exception, match="x-alpr-key"):
            raw.infer("plate_ocr", [inp], headers={"x-alpr-key": "wrong"})
        with pytest.raises(Exception, match="x-alpr-key"):
            raw.get_model_repository_index()
        client = AlprClient(server.grpc_url)  # reads the key from the environment
        assert client.read_plate_crops([jpeg(render_plate("AB123CD"))])[0][0] == "AB123CD"
        assert "correct-horse" not in server.log.read_text()  # never logged
    finally:
        stop_triton(server)


def test_failover_to_the_next_healthy_server(triton: TritonProcess) -> None:
    client = AlprClient(TritonEndpoint("127.0.0.1:9", timeout_s=5, fallbacks=(triton.grpc_url,)))
    assert client.read_plate_crops([jpeg(render_plate("XY99ZZQ"))])[0][0] == "XY99ZZQ"
    assert client.url == triton.grpc_url and client.failovers == 1


def test_no_healthy_server_is_a_clear_error() -> None:
    client = AlprClient(TritonEndpoint("127.0.0.1:9", timeout_s=2, fallbacks=("127.0.0.1:10",)))
    with pytest.raises(InferenceError, match=r"127\.0\.0\.1:9"):
        client.read_plate_crops([jpeg(render_plate("XY99ZZQ"))])
