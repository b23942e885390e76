"""``alpr-api``: CodeProject.AI's and Plate Recognizer's plate-reading endpoints in front of a
real tritonserver, served by a real uvicorn on a free port and called as their clients call
them (Blue Iris: multipart ``upload`` + ``min_confidence``; Plate Recognizer's documented
``requests.post(url, data=dict(regions=[...]), files=dict(upload=fp), headers=...)``), with
frames of the synthetic demo video whose plates (text, box, region) are known.
Also: bad uploads, size limit, tokens, an unreachable Triton, the config and the CLI, and
the grouping of one photo's candidates into plates (unit)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import requests
from conftest import TritonProcess, free_port
from gate_browser import start_app_server
from synth import jpeg, png, render_vehicle

from alpr_api.app import MISSING_TOKEN, WRONG_TOKEN, token_problem
from alpr_api.cli import build, main
from alpr_api.config import ApiConfig, ConfigError, load_api_config
from alpr_api.reader import find_plates, vehicle_of
from alpr_api.regions import plate_recognizer_code, project_regions
from edge_client.plates.formats import load_formats, select
from edge_client.tools.demo_video import DEFAULT_PLATES
from edge_client.tools.evaluate import decide, load_labels, read_photo
from edge_client.triton_client import AlprClient
from ensemble.contracts import Box, Detection, PlateRead

TOKEN = "s3cret-token"
TOKEN_ENV = "ALPR_API_TEST_TOKEN"
LIMIT = 1024 * 1024  # the locked server's http.max_upload_bytes
CPAI_KEYS = {"success", "message", "count", "predictions", "processMs", "inferenceMs",
             "analysisRoundTripMs", "moduleId", "moduleName", "command", "code",
             "inferenceDevice", "processedBy", "timestampUTC"}  # fmt: skip
PREDICTION_KEYS = {"confidence", "label", "plate", "x_min", "y_min", "x_max", "y_max"}
PR_KEYS = {"processing_time", "results", "filename", "version", "camera_id", "timestamp"}
RESULT_KEYS = {"box", "plate", "region", "score", "candidates", "dscore", "vehicle"}
# The demo plate's style -> the region code a Plate Recognizer client would send (and get).
STYLE_CODE = {"uk_rear": "gb", "uk_front": "gb", "fr": "fr", "nl": "nl", "us": "us-ca",
              "br_old": "br", "mercosur": "br"}  # fmt: skip
DEMO_PLATES = [text for text, _ in DEFAULT_PLATES]


# --- fixtures: demo photos, servers -----------------------------------------------------------
@pytest.fixture(scope="module")
def demo_photos(demo: tuple[Path, dict]) -> dict[str, tuple[dict, bytes]]:
    """Per demo plate: its truth entry and a JPEG of the frame halfway through the span
    in which the whole plate is in view (the plate's box: ``truth["boxes"][frame]``)."""
    video, truth = demo
    wanted = {}
    for p in truth["plates"]:
        first, last = p["inside"]
        wanted[(first + last) // 2] = p
    out: dict[str, tuple[dict, bytes]] = {}
    cap = cv2.VideoCapture(str(video))
    index = 0
    while len(out) < len(wanted):
        ok, frame = cap.read()
        assert ok, f"the demo video ended at frame {index}"
        if index in wanted:
            p = wanted[index]
            out[p["plate"]] = ({**p, "box": p["boxes"][str(index)]}, jpeg(frame))
        index += 1
    cap.release()
    return out


@contextlib.contextmanager
def _serve(cfg: ApiConfig, env: dict[str, str] | None = None) -> Iterator[str]:
    """``cfg``'s app on a real uvicorn (free port), the token read from ``env``."""
    app, reader = build(cfg, environ=env or {})
    url, stop = start_app_server(app)
    try:
        yield url
    finally:
        stop()
        reader.close()


@pytest.fixture(scope="module")
def open_api(triton: TritonProcess) -> Iterator[str]:
    """The shipped defaults (no token: what Blue Iris expects) on a real uvicorn."""
    with _serve(ApiConfig.model_validate({"triton": {"urls": [triton.grpc_url]}})) as url:
        yield url


@pytest.fixture(scope="module")
def locked_api(triton: TritonProcess) -> Iterator[str]:
    """A token from the environment variable the config names, and a 1 MiB body limit."""
    cfg = {"triton": {"urls": [triton.grpc_url]},
           "http": {"token_env": TOKEN_ENV, "max_upload_bytes": LIMIT}}  # fmt: skip
    with _serve(ApiConfig.model_validate(cfg), {TOKEN_ENV: TOKEN}) as url:
        yield url


def _iou(box: dict[str, int], truth: list[int]) -> float:
    got = Box(box["xmin"], box["ymin"], box["xmax"], box["ymax"])
    return got.iou(Box(*map(float, truth)))


# --- CodeProject.AI: what Blue Iris sends --------------------------------------------------
@pytest.mark.parametrize("plate", DEMO_PLATES)
def test_blue_iris_request_reads_the_demo_plate(
    open_api: str, demo_photos: dict[str, tuple[dict, bytes]], plate: str
) -> None:
    truth, photo = demo_photos[plate]
    r = httpx.post(
        f"{open_api}/v1/vision/alpr",
        files={"upload": ("image.jpg", photo, "image/jpeg")},
        data={"min_confidence": "0.4"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == CPAI_KEYS and body["success"] is True
    assert [p["plate"] for p in body["predictions"]] == [plate]
    (pred,) = body["predictions"]
    assert set(pred) == PREDICTION_KEYS and pred["label"] == f"Plate: {plate}"
    assert 0.4 <= pred["confidence"] <= 1.0
    box = {k: pred[f"{k[:1]}_{k[1:]}"] for k in ("xmin", "ymin", "xmax", "ymax")}
    assert _iou(box, truth["box"]) > 0.5
    assert body["count"] == 1 and body["message"] == f"Found Plate: {plate}"
    assert 0 <= body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"]


def test_two_plates_in_one_photo_are_two_predictions(open_api: str) -> None:
    """Two synthetic vehicles side by side, sent as PNG: one prediction each, left to
    right in their own places."""
    (left, lbox), (right, rbox) = render_vehicle("AB123CD"), render_vehicle("XY99ZZQ")
    photo = np.hstack([left, right])
    r = httpx.post(
        f"{open_api}/v1/vision/alpr", files={"upload": ("two.png", png(photo), "image/png")},
        timeout=60,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    preds = sorted(r.json()["predictions"], key=lambda p: p["x_min"])
    assert [p["plate"] for p in preds] == ["AB123CD", "XY99ZZQ"]
    x_offsets = [0, left.shape[1]]
    for pred, (x, y, w, h), ox in zip(preds, (lbox, rbox), x_offsets, strict=True):
        got = Box(pred["x_min"], pred["y_min"], pred["x_max"], pred["y_max"])
        assert got.iou(Box(x + ox, y, x + ox + w, y + h)) > 0.5
    message = r.json()["message"]
    assert message.startswith("Found ") and {"Plate: AB123CD", "Plate: XY99ZZQ"} == set(
        message.removeprefix("Found ").split(", ")
    )


# --- Plate Recognizer: their documented Python example -------------------------------------
@pytest.mark.parametrize("plate", DEMO_PLATES)
def test_plate_recognizer_example_reads_plate_and_region(
    locked_api: str, demo_photos: dict[str, tuple[dict, bytes]], plate: str, tmp_path: Path
) -> None:
    truth, photo = demo_photos[plate]
    code = STYLE_CODE[truth["style"]]
    path = tmp_path / "car.jpg"
    path.write_bytes(photo)
    with open(path, "rb") as fp:
        response = requests.post(
            f"{locked_api}/v1/plate-reader/",
            data=dict(regions=[code], camera_id="gate-1"),
            files=dict(upload=fp),
            headers={"Authorization": f"Token {TOKEN}"},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PR_KEYS
    assert body["filename"] == "car.jpg" and body["camera_id"] == "gate-1"
    assert body["version"] == 1 and body["processing_time"] > 0
    (result,) = body["results"]
    assert set(result) == RESULT_KEYS
    assert result["plate"] == plate.lower() and result["candidates"][0]["plate"] == plate.lower()
    assert result["region"]["code"] == code and 0 < result["region"]["score"] <= 1
    assert 0 < result["score"] <= 1 and 0 < result["dscore"] <= 1
    assert _iou(result["box"], truth["box"]) > 0.5
    assert set(result["vehicle"]) == {"score", "type", "box"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


UPLOAD_FORMS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "multipart-file": lambda d: {"files": {"upload": ("car.jpg", d, "image/jpeg")}},
    "base64-urlencoded": lambda d: {"data": {"upload": _b64(d), "regions": "gb"}},
    "base64-in-multipart": lambda d: {
        "data": {"upload": _b64(d), "regions": "gb"},
        "files": {"other": ("x", b"", "text/plain")},
    },
    "data-url": lambda d: {"data": {"upload": "data:image/jpeg;base64," + _b64(d)}},
}


@pytest.mark.parametrize("how", UPLOAD_FORMS)
def test_plate_recognizer_upload_as_file_or_base64(
    locked_api: str, demo_photos: dict[str, tuple[dict, bytes]], how: str
) -> None:
    _, photo = demo_photos["KV65BZR"]
    r = httpx.post(
        f"{locked_api}/v1/plate-reader", headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60, **UPLOAD_FORMS[how](photo),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert [x["plate"] for x in r.json()["results"]] == ["kv65bzr"]


# --- failures: the client's dialect, a 4xx, never a 500 --------------------------------------
GOOD = jpeg(render_vehicle("AB123CD")[0])
AUTH = {"Authorization": f"Token {TOKEN}"}
CPAI, PR = "/v1/vision/alpr", "/v1/plate-reader/"
FAILURES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (id, path, httpx.post arguments, status, a fragment of the message)
    ("no-token", CPAI, {"files": {"upload": ("a.jpg", GOOD)}}, 401, MISSING_TOKEN),
    ("wrong-token", CPAI, {"files": {"upload": ("a.jpg", GOOD)},
                           "headers": {"Authorization": "Token nope"}}, 401, WRONG_TOKEN),
    ("basic-auth", PR, {"files": {"upload": ("a.jpg", GOOD)},
                        "headers": {"Authorization": f"Basic {TOKEN}"}}, 401, WRONG_TOKEN),
    ("pr-no-token", PR, {"files": {"upload": ("a.jpg", GOOD)}}, 401, MISSING_TOKEN),
    ("missing-field", CPAI, {"data": {"min_confidence": "0.5"}, "headers": AUTH}, 400,
     "no image"),
    ("pr-missing-field", PR, {"data": {"regions": "gb"}, "headers": AUTH}, 400, "no image"),
    ("text-file", CPAI, {"files": {"upload": ("a.txt", b"hello, plates" * 10)}, "headers": AUTH},
     415, "not an image"),
    ("pr-text-file", PR, {"files": {"upload": ("a.txt", b"%PDF-1.4 ...")}, "headers": AUTH}, 415,
     "not an image"),
    ("truncated-jpeg", CPAI, {"files": {"upload": ("a.jpg", GOOD[: len(GOOD) // 2])},
                              "headers": AUTH}, 422, "truncated JPEG"),
    ("empty-file", CPAI, {"files": {"upload": ("a.jpg", b"")}, "headers": AUTH}, 400,
     "0 bytes"),
    ("json-body", CPAI, {"json": {"upload": "x"}, "headers": AUTH}, 415,
     "expected a form upload"),
    ("pr-json-body", PR, {"json": {"upload": _b64(GOOD)}, "headers": AUTH}, 415,
     "expected a form upload"),
    ("bad-min-confidence", CPAI, {"files": {"upload": ("a.jpg", GOOD)},
                                  "data": {"min_confidence": "lots"}, "headers": AUTH}, 400,
     "min_confidence must be a number"),
    ("bad-base64", PR, {"data": {"upload": "this is no image!"}, "headers": AUTH}, 422,
     "not base64"),
    ("upload-url", PR, {"data": {"upload_url": "http://example.com/car.jpg"}, "headers": AUTH},
     400, "upload_url is not supported"),
    ("too-large", CPAI, {"files": {"upload": ("a.jpg", b"\xff" * (LIMIT + 1))},
                         "headers": AUTH}, 413, "too large"),
    ("pr-too-large", PR, {"data": {"upload": "A" * (LIMIT + 1)}, "headers": AUTH}, 413,
     "too large"),
]  # fmt: skip


def assert_failure(r: httpx.Response, path: str, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    if path == PR:
        assert set(body) == {"detail"} and fragment in body["detail"]
    else:
        assert body["success"] is False and body["code"] == status and fragment in body["error"]


@pytest.mark.parametrize(("path", "kwargs", "status", "fragment"),
                         [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])  # fmt: skip
def test_bad_requests_get_a_clear_4xx(
    locked_api: str, path: str, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    r = httpx.post(f"{locked_api}{path}", timeout=60, **kwargs)
    assert_failure(r, path, status, fragment)
    if status == 401:
        assert r.headers["www-authenticate"] == "Token"


def test_body_without_length_over_the_limit_is_refused(locked_api: str) -> None:
    """A chunked upload (no Content-Length) is counted as it arrives."""

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"\0" * (LIMIT // 2)

    r = httpx.post(
        f"{locked_api}{CPAI}", content=chunks(), timeout=60,
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert_failure(r, CPAI, 413, "too large")


def test_health_ping_and_openapi(locked_api: str) -> None:
    assert httpx.get(f"{locked_api}/api/health").json() == {"status": "ok", "triton": "ready"}
    spec = httpx.get(f"{locked_api}/openapi.json").json()
    for path in (CPAI, PR):
        form = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert "upload" in form["schema"]["required"]
    assert httpx.get(f"{locked_api}/docs").status_code == 200
    assert httpx.get(f"{locked_api}/v1/server/status/ping").json() == {"success": True}
    # CodeProject.AI's older route answers as the current one
    r = httpx.post(f"{locked_api}/v1/image/alpr", files={"upload": ("a.jpg", GOOD)})
    assert_failure(r, CPAI, 401, MISSING_TOKEN)


# --- Triton unreachable: 503, the service stays up ------------------------------------------
@pytest.mark.parametrize("path", [CPAI, PR])
def test_triton_unreachable_is_503_and_the_service_stays_up(path: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    cfg = ApiConfig.model_validate({"triton": {"urls": [down], "timeout_s": 2}})
    with _serve(cfg) as url:
        for _ in range(2):  # the failure does not take the service down
            r = httpx.post(f"{url}{path}", files={"upload": ("a.jpg", GOOD, "image/jpeg")})
            assert_failure(r, path, 503, "not reachable")
            assert down in r.text
        assert httpx.get(f"{url}/api/health").json() == {"status": "ok", "triton": "unreachable"}


# --- real photographs: the API reads a photo as alpr-evaluate does --------------------------
def test_real_photos_read_as_alpr_evaluate_reads_them(
    open_api: str, triton: TritonProcess, openalpr_eu: Path
) -> None:
    """Each photo's plate as the evaluator decides it (``read_photo`` + ``decide``, the
    shipped regions eu + uk) is among the API's plates for that photo."""
    formats = select(load_formats(), ["eu", "uk"])
    client = AlprClient(triton.grpc_url)
    labels = load_labels(openalpr_eu)[:8]
    matched_label = 0
    for label in labels:
        data = (openalpr_eu / label.image).read_bytes()
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        reads = read_photo(client, data, frame, formats=formats, cascade=True)
        result, _ = decide(reads, formats)
        r = httpx.post(
            f"{open_api}{CPAI}", files={"upload": (label.image, data, "image/jpeg")},
            data={"min_confidence": "0"}, timeout=60,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        plates = [p["plate"] for p in r.json()["predictions"]]
        if result is not None:
            assert result.plate in plates, label.image
        matched_label += label.plate in plates
    client.close()
    assert matched_label > 0, "no labelled plate read in any photo"


# --- config and CLI ------------------------------------------------------------------------
BAD_CONFIGS = [
    ("http:\n  prot: 1\n", "http.prot"),
    ("triton:\n  urls: ['http://triton:8001']\n", "is not host:port"),
    ("triton:\n  urls: []\n", "triton.urls"),
    ("reading:\n  regions: [eu, mars]\n", "unknown plate region(s) mars"),
    ("http:\n  max_upload_bytes: 10\n", "http.max_upload_bytes"),
    ("reading:\n  min_confidence: 2\n", "reading.min_confidence"),
    ("- a list\n", "expected a mapping"),
    ("triton: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_CONFIGS)
def test_bad_config_is_named_and_exits_2(
    tmp_path: Path, text: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_api_config(path)
    assert fragment in str(err.value)
    assert main(["--config", str(path)]) == 2
    assert fragment in capsys.readouterr().err


def test_shipped_config_loads_and_unset_token_variable_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = Path(__file__).resolve().parent.parent / "config" / "api.yaml"
    assert load_api_config(shipped) == ApiConfig()
    path = tmp_path / "api.yaml"
    path.write_text(f"http:\n  token_env: {TOKEN_ENV}\n")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["--config", str(path)]) == 2
    assert TOKEN_ENV in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- units: tokens, regions, grouping --------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "problem"),
    [(None, MISSING_TOKEN), ("", MISSING_TOKEN), (f"Token {TOKEN}", None),
     (f"Bearer {TOKEN}", None), (f"token  {TOKEN} ", None), ("Token nope", WRONG_TOKEN),
     (f"Basic {TOKEN}", WRONG_TOKEN), (TOKEN, WRONG_TOKEN), ("Token é", WRONG_TOKEN)],
)  # fmt: skip
def test_token_header(header: str | None, problem: str | None) -> None:
    assert token_problem(header, TOKEN) == problem


@pytest.mark.parametrize(
    ("codes", "regions"),
    [(["gb"], ["uk"]), (["fr", "de", "it"], ["eu"]), (["us-ca", "us-ny"], ["us"]),
     (["BR"], ["br"]), (["au", "th"], []), (["gb", "fr", "us"], ["uk", "eu", "us"]),
     (["eu", "uk"], ["eu", "uk"])],
)  # fmt: skip
def test_plate_recognizer_codes_to_regions(codes: list[str], regions: list[str]) -> None:
    assert project_regions(codes, load_formats()) == regions


@pytest.mark.parametrize(
    ("region", "fmt", "requested", "code"),
    [("uk", "uk_current", [], "gb"), ("us", "us_ca", [], "us-ca"),
     ("us", "us_llldddd", ["us-ny"], "us"), ("eu", "fr_it_sk", [], "fr"),
     ("eu", "fr_it_sk", ["it"], "it"), ("eu", "es", [], "es"), ("eu", "eu_generic5", [], "eu"),
     ("br", "br_mercosur", [], "br"), (None, None, ["gb"], "")],
)  # fmt: skip
def test_region_code_of_a_plate(
    region: str | None, fmt: str | None, requested: list[str], code: str
) -> None:
    assert plate_recognizer_code(region, fmt, requested) == code


def _read(text: str, box: tuple[float, float, float, float], conf: float = 0.95) -> PlateRead:
    return PlateRead(Box(*box), 0.8, text, conf, (conf,) * len(text))


CROP = (100, 100, 200, 130)  # a plate as read in its vehicle crop (photo pixels)
WHOLE = (102, 99, 201, 131)  # the same plate read in the whole photo
FAR = (400, 300, 500, 330)
GROUPS = [
    ("read-twice", [_read("KV65BZR", CROP), _read("KV65BZR", WHOLE, 0.9)], ["KV65BZR"]),
    ("two-plates", [_read("KV65BZR", CROP), _read("FG482HK", FAR)], ["KV65BZR", "FG482HK"]),
    ("misread-is-a-candidate", [_read("KV65BZR", CROP), _read("KV658ZR", WHOLE, 0.6)],
     ["KV65BZR"]),
    ("too-short", [_read("AB", CROP)], []),
    ("same-text-twice-apart", [_read("KV65BZR", CROP, 0.7), _read("KV65BZR", FAR)],
     ["KV65BZR"]),
    ("nothing", [], []),
]  # fmt: skip


@pytest.mark.parametrize(("reads", "plates"), [g[1:] for g in GROUPS], ids=[g[0] for g in GROUPS])
def test_candidates_grouped_into_plates(reads: list[PlateRead], plates: list[str]) -> None:
    formats = select(load_formats(), ["uk", "eu"])
    found = find_plates(reads, formats)
    assert sorted(p.plate for p in found) == sorted(plates)
    for p in found:
        assert p.candidates[0] == (p.plate, p.confidence)
        assert p.region is not None and p.format_weight > 0
    if len(reads) == 2 and len(found) == 1:  # the other read is listed or was the same text
        texts = [t for t, _ in found[0].candidates]
        assert all(r.text in texts for r in reads)


def test_require_format_drops_plates_no_format_fits() -> None:
    formats = select(load_formats(), ["uk"])
    reads = [_read("KV65BZR", CROP), _read("123456789", FAR)]
    assert [p.plate for p in find_plates(reads, formats)] == ["KV65BZR", "123456789"]
    assert [p.plate for p in find_plates(reads, formats, require_format=True)] == ["KV65BZR"]


def test_plate_belongs_to_the_smallest_vehicle_around_it() -> None:
    big = Detection(Box(0, 0, 1000, 800), 0.9, 7, "truck")
    car = Detection(Box(50, 50, 300, 200), 0.8, 2, "car")
    assert vehicle_of(Box(100, 100, 200, 130), [big, car]) == car
    assert vehicle_of(Box(600, 500, 700, 530), [big, car]) == big
    assert vehicle_of(Box(1100, 900, 1200, 930), [big, car]) is None
