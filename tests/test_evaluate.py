"""The accuracy evaluator: scoring tables, and a smoke test on real photographs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TritonProcess

from edge_client.cli.evaluate import main
from edge_client.plates.formats import load_formats, select
from edge_client.tools.evaluate import char_accuracy, confident, load_labels, score_video
from ensemble.contracts import Box, PlateRead


@pytest.mark.parametrize(
    ("expected", "read", "acc"),
    [("AB12CDE", "AB12CDE", 1.0), ("AB12CDE", "AB12CD", 6 / 7), ("AB12CDE", "", 0.0),
     ("AB12CDE", "XAB12CDE", 6 / 7), ("AB12", "ZZZZZZZZ", 0.0), ("", "X", 0.0)],
)  # fmt: skip
def test_char_accuracy(expected: str, read: str, acc: float) -> None:
    assert char_accuracy(expected, read) == pytest.approx(acc)


TRUTH = {"plates": [{"plate": "AB12CDE"}, {"plate": "7ABC123"}, {"plate": "RTX4E26"}]}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["AB12CDE", "7ABC123", "RTX4E26"],
         {"correct": 3, "wrong": 0, "missed": 0, "duplicated": 0}),
        (["AB12CDE", "AB12CDE", "7ABC123"],
         {"correct": 2, "wrong": 0, "missed": 1, "duplicated": 1}),
        (["AB12CDF", "7ABC123"], {"correct": 1, "wrong": 1, "missed": 2, "duplicated": 0}),
        ([], {"correct": 0, "wrong": 0, "missed": 3, "duplicated": 0}),
    ],
)  # fmt: skip
def test_score_video(events: list[str], expected: dict[str, int]) -> None:
    got = score_video([{"plate": p} for p in events], TRUTH)
    assert {k: got[k] for k in expected} == expected


def _read(
    text: str, conf: float, box: tuple[float, float, float, float], weakest: float = 1.0
) -> PlateRead:
    chars = (conf,) * (len(text) - 1) + (min(conf, weakest),)
    return PlateRead(Box(*box), 0.9, text, conf, chars)


@pytest.mark.parametrize(
    ("text", "conf", "box", "sure", "weakest"),
    [
        ("KV65BZR", 0.98, (50, 80, 150, 100), True, 1.0),  # sure, fits UK, inside its crop
        ("KV65BZR", 0.70, (50, 80, 150, 100), False, 1.0),  # not sure enough
        ("KV65BZR", 0.95, (50, 80, 150, 100), False, 0.6),  # one doubtful character
        ("KV65BZRX9Q", 0.98, (50, 80, 150, 100), False, 1.0),  # fits no format
        ("KV65BZR", 0.98, (1, 80, 150, 100), False, 1.0),  # touches the crop's left border
        ("KV65BZR", 0.98, (50, 80, 199, 100), False, 1.0),  # touches the right border
    ],
    ids=["sure", "unsure", "doubtful-char", "no-format", "cut-left", "cut-right"],
)
def test_cascade_stop_rule(
    text: str, conf: float, box: tuple[float, float, float, float], sure: bool, weakest: float
) -> None:
    formats = select(load_formats(), ["uk", "eu"])
    assert confident([_read(text, conf, box, weakest)], formats, [(0, 0, 200, 120)]) is sure
    assert confident([], formats) is False


def test_load_labels(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a.jpg\t10\t20\t100\t30\tab12cde\n")
    (tmp_path / "bad.txt").write_text("not a label\n")
    (labels,) = load_labels(tmp_path)
    assert labels.plate == "AB12CDE" and (labels.box.x2, labels.box.y2) == (110.0, 50.0)


def test_video_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("\n".join(json.dumps({"plate": p}) for p in ["AB12CDE", "7ABC123"]))
    truth = tmp_path / "t.json"
    truth.write_text(json.dumps(TRUTH))
    assert main(["video", "--events", str(events), "--truth", str(truth)]) == 0
    assert json.loads(capsys.readouterr().out)["missed"] == 1


@pytest.mark.server
@pytest.mark.data
def test_accuracy_smoke_openalpr_eu(
    triton: TritonProcess, openalpr_eu: Path, tmp_path: Path
) -> None:
    """Measured (default engine, cascade): exact 0.935, O/0-I/1 equal 1.00, detection
    recall 1.00, character accuracy 0.989 (bench/results/accuracy-openalpr-eu.json);
    floors a few points below."""
    rc = main(["photos", str(openalpr_eu), "--url", triton.grpc_url, "--out", str(tmp_path),
               "--summary", str(tmp_path / "s.json"), "--quiet"])  # fmt: skip
    assert rc == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["images"] == 108
    assert s["exact"] >= 0.91 and s["exact_o0_i1_equal"] >= 0.97
    assert s["detection_recall"] >= 0.97 and s["char_accuracy"] >= 0.96
    assert (tmp_path / "report.html").is_file() and (tmp_path / "chart.png").is_file()
