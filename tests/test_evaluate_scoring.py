"""The evaluator's scoring: miss categories, character confusions, per-set summaries, the
two-reader comparison and the ``photos`` options (pure functions over fake results)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_client.cli import evaluate as evaluate_cli
from edge_client.cli.evaluate import main, parser, server_env
from edge_client.tools.evaluate import (
    CATEGORIES,
    Candidate,
    ImageResult,
    alignment,
    categorise,
    char_errors,
    confusions,
    differences,
    markdown,
    on_plate,
    set_names,
    sets_table,
    summarise,
    summarise_sets,
    top_pairs,
)
from ensemble.contracts import Box

PLATE = Box(100, 100, 200, 130)
ON = Box(102, 101, 198, 129)  # the plate, read
OFF = Box(400, 100, 500, 130)  # another plate or a dealer frame
ROW = Box(140, 110, 160, 116)  # small box inside the plate: IoU 0.04, centre inside
LOOSE = Box(0, 0, 600, 400)  # a loose box around the plate: IoU 0.0125, holds its centre


@pytest.mark.parametrize(
    ("box", "on"),
    [(ON, True), (OFF, False), (ROW, True), (LOOSE, True),
     (Box(170, 100, 270, 130), True),  # IoU 0.18, neither centre inside the other
     (Box(185, 100, 285, 130), False)],  # IoU 0.08, neither centre inside
    ids=["same", "elsewhere", "row-inside", "loose-around", "iou-0.18", "iou-0.08"],
)  # fmt: skip
def test_on_plate(box: Box, on: bool) -> None:
    assert on_plate(box, PLATE) is on


T = "7ABC123"


@pytest.mark.parametrize(
    ("truth", "read", "chosen", "others", "category"),
    [
        (T, T, Candidate(T, ON), [], "exact"),
        # exact wins even when the label's box is elsewhere
        (T, T, Candidate(T, OFF), [], "exact"),
        (T, "", None, [], "not_found"),
        # nothing on the plate: not_found before other_text
        (T, "HONDA", Candidate("HONDA", OFF), [], "not_found"),
        (T, "DEALER1", Candidate("DEALER1", OFF), [Candidate(T, ON)], "other_text"),
        # nothing chosen although the plate was read
        (T, "", None, [Candidate("7ABC12", ON)], "other_text"),
        # a slogan on the plate chosen; another candidate read the plate within one edit
        (T, "CALIFORNIA", Candidate("CALIFORNIA", ROW), [Candidate("7ABC128", ON)],
         "other_text"),
        # another candidate as far from the truth as the read: the reader's own error
        (T, "7ABC12", Candidate("7ABC12", ON), [Candidate("7ABC12X", ROW)], "length"),
        # a candidate with the truth but O/0-I/1 equal to the read: not a better choice
        ("2DA044", "2DAO44", Candidate("2DAO44", ON), [Candidate("2DA044", ROW)], "o0_i1"),
        # the format correction broke a right raw read: the chosen raw is not "other"
        ("2DA044", "2DAO44", Candidate("2DA044", ON), [], "o0_i1"),
        ("K179658", "KI79658", Candidate("KI79658", LOOSE), [], "o0_i1"),
        (T, "7ABC12B", Candidate(T, ON), [], "substitution"),
        (T, "7ABC1234", Candidate("7ABC1234", ON), [], "length"),
        (T, "ABC123", Candidate("ABC123", ON), [], "length"),
        (T, "7A8C123", Candidate("7A8C123", ON), [], "substitution"),
        # O/0 plus a real substitution
        ("2DA044", "2DAO4A", Candidate("2DAO4A", ON), [], "substitution"),
    ],
    ids=["exact", "exact-box-elsewhere", "nothing", "not-found-before-other",
         "other-plate-chosen", "none-chosen", "slogan-chosen", "other-not-closer",
         "o0-not-other", "o0-correction-broke", "i1", "correction-broke-subst",
         "length-insert", "length-delete", "substitution", "o0-plus-subst"],
)  # fmt: skip
def test_categorise(
    truth: str, read: str, chosen: Candidate | None, others: list[Candidate], category: str
) -> None:
    candidates = ([chosen] if chosen else []) + others
    assert categorise(truth, PLATE, read, chosen, candidates) == category


@pytest.mark.parametrize(
    ("truth", "read", "errors"),
    [
        ("7ABC123", "7ABC123", []),
        ("7ABC123", "7A8C123", [("B", "8")]),
        ("2DA044", "2DAO44", [("0", "O")]),
        ("AB12CDE", "AB12CD", [("E", "")]),  # deletion
        ("AB12CDE", "XAB12CDE", [("", "X")]),  # insertion
        ("7ABC123", "7A8C12", [("B", "8"), ("3", "")]),  # substitution + deletion
        ("ABC", "", [("A", ""), ("B", ""), ("C", "")]),
        ("ABCD", "BADC", [("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")]),  # same length
    ],
    ids=["equal", "subst", "o0", "delete", "insert", "subst-delete", "empty", "positional"],
)
def test_char_errors(truth: str, read: str, errors: list[tuple[str, str]]) -> None:
    assert char_errors(truth, read) == errors


def test_alignment_keeps_matches() -> None:
    assert alignment("AB1", "AXB1") == [("A", "A"), ("", "X"), ("B", "B"), ("1", "1")]


def result(
    image: str, expected: str, read: str, category: str, dataset: str = "eu",
    ms: float = 100.0, found: bool = True,
) -> ImageResult:  # fmt: skip
    return ImageResult(
        image, expected, read, read, 0.9, found, read == expected, 1.0, ms,
        dataset=dataset, category=category,
    )  # fmt: skip


RESULTS = [
    result("a.jpg", "7ABC123", "7ABC123", "exact", "us", 100),
    result("b.jpg", "7ABC123", "7A8C123", "substitution", "us", 200),
    result("c.jpg", "2DA044", "2DAO44", "o0_i1", "us", 300),
    result("d.jpg", "AB12CDE", "AB12CD", "length", "us", 400),
    result("e.jpg", "AB12CDE", "HONDA", "other_text", "us", 500),
    result("a.jpg", "KV65BZR", "KV65BZR", "exact", "eu", 50),
    result("b.jpg", "KV65BZR", "", "not_found", "eu", 70, found=False),
]


def test_confusions_count_only_misreads_of_the_plate() -> None:
    counts = confusions(RESULTS)
    assert counts == Counter({("B", "8"): 1, ("0", "O"): 1, ("E", ""): 1})
    assert top_pairs(Counter({("B", "8"): 1, ("0", "O"): 3, ("6", "G"): 1}), 2) == [
        {"true": "0", "read": "O", "count": 3},
        {"true": "6", "read": "G", "count": 1},
    ]


def test_summarise_sets() -> None:
    sets = summarise_sets(RESULTS)
    assert list(sets) == ["us", "eu"]
    us, eu = sets["us"], sets["eu"]
    assert (us["images"], eu["images"]) == (5, 2)
    assert us["exact"] == pytest.approx(0.2) and eu["exact"] == pytest.approx(0.5)
    assert us["exact_o0_i1_equal"] == pytest.approx(0.4)
    assert us["ms_per_image"] == pytest.approx(300) and eu["detection_recall"] == 0.5
    assert us["categories"] == {"exact": 1, "not_found": 0, "other_text": 1, "o0_i1": 1,
                                "length": 1, "substitution": 1}  # fmt: skip
    assert eu["categories"]["not_found"] == 1 and eu["top_confusions"] == []
    pooled = summarise(RESULTS)
    assert pooled["images"] == 7 and pooled["exact"] == pytest.approx(2 / 7)
    head, rows = sets_table(sets)
    assert head[:3] == ["set", "photos", "exact"] and head[-5:] == list(CATEGORIES[1:])
    assert [r[0] for r in rows] == ["us", "eu"] and rows[0][2] == "0.200"
    assert markdown((head, rows)).count("\n") == 4  # header, rule, two rows


def test_summarise_nothing() -> None:
    s = summarise([])
    assert s["images"] == 0 and s["exact"] == 0.0 and s["ms_per_image"] == 0.0


def test_set_names() -> None:
    assert set_names([Path("a/eu"), Path("b/eu"), Path("us")]) == ["eu", "eu-2", "us"]


def test_differences() -> None:
    a = [result("x.jpg", T, T, "exact"), result("y.jpg", T, "7A8C123", "substitution"),
         result("z.jpg", T, T, "exact")]  # fmt: skip
    b = [result("x.jpg", T, T, "exact"), result("y.jpg", T, T, "exact"),
         result("x.jpg", T, "", "not_found", dataset="us")]  # fmt: skip
    diffs = differences(a, b)
    assert [(d.dataset, d.image) for d in diffs] == [("eu", "y.jpg"), ("eu", "z.jpg"),
                                                     ("us", "x.jpg")]  # fmt: skip
    assert diffs[0].reads == ("7A8C123", T) and diffs[0].categories == ("substitution", "exact")
    assert diffs[1].reads == (T, None) and diffs[1].categories == ("exact", "missing")
    assert diffs[2].as_json(("plate", "ppocr")) == {
        "set": "us", "image": "x.jpg", "truth": T,
        "read": {"plate": None, "ppocr": ""},
        "category": {"plate": "missing", "ppocr": "not_found"},
    }  # fmt: skip


def test_compare_and_plate_reader_parse() -> None:
    args = parser().parse_args(
        ["photos", "eu", "us", "--start-server", "--compare", "plate", "ppocr", "--limit", "5"]
    )
    assert args.folders == [Path("eu"), Path("us")] and args.compare == ["plate", "ppocr"]
    assert args.limit == 5 and args.plate_reader is None and args.regions == ["eu", "uk"]
    args = parser().parse_args(["photos", "eu", "--plate-reader", "fused", "--plate-engine",
                                "yolo", "--start-server"])  # fmt: skip
    assert (args.plate_reader, args.plate_engine) == ("fused", "yolo")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plate-reader", "plate"], "--plate-reader needs --start-server"),
        (["--plate-engine", "yolo"], "--plate-engine needs --start-server"),
        (["--compare", "plate", "ppocr"], "--compare needs --start-server"),
        (["--start-server", "--compare", "plate", "ppocr", "--plate-reader", "plate"],
         "drop --plate-reader"),
        (["--start-server", "--compare", "plate", "plate"], "two different readers"),
        (["--start-server", "--plate-reader", "tesseract"], "invalid choice"),
        (["--limit", "0"], "must be at least 1"),
    ],
    ids=["reader-no-server", "engine-no-server", "compare-no-server", "compare-and-reader",
         "compare-same", "unknown-reader", "limit-0"],
)  # fmt: skip
def test_bad_photo_options_exit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["photos", "somewhere", *argv])
    assert exc.value.code != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("engine", "reader", "env"),
    [(None, None, None), ("yolo", None, {"OVR_ALPR_PLATE_ENGINE": "yolo"}),
     (None, "ppocr", {"OVR_ALPR_PLATE_READER": "ppocr"}),
     ("auto", "fused", {"OVR_ALPR_PLATE_ENGINE": "auto", "OVR_ALPR_PLATE_READER": "fused"})],
)  # fmt: skip
def test_server_env(engine: str | None, reader: str | None, env: dict[str, str] | None) -> None:
    assert server_env(engine, reader) == env


@pytest.fixture
def two_sets(tmp_path: Path) -> list[Path]:
    folders = []
    for name, plates in [("eu", ["KV65BZR", "AB12CDE", "RTX4E26"]), ("us", ["7ABC123"])]:
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i, plate in enumerate(plates):
            (folder / f"{i}.txt").write_text(f"{i}.jpg\t10\t20\t100\t30\t{plate}\n")
        folders.append(folder)
    return folders


def fake_run(
    args: argparse.Namespace, sets: Any, formats: Any, plate_reader: str | None, out: Path
) -> tuple[list[ImageResult], dict[str, np.ndarray | None]]:
    """Reader ``ppocr`` misreads the first photo of each set; the others read them all."""
    results = []
    for s in sets:
        for k, label in enumerate(s.labels):
            wrong = plate_reader == "ppocr" and k == 0
            read = label.plate[:-1] if wrong else label.plate
            category = "length" if wrong else "exact"
            results.append(result(label.image, label.plate, read, category, s.name))
    return results, {}


def test_photos_per_set_summary(
    two_sets: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate_cli, "run_photos", fake_run)
    out = tmp_path / "out"
    argv = ["photos", *map(str, two_sets), "--out", str(out), "--quiet", "--limit", "2",
            "--summary", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["images"] == 3 and s["exact"] == 1.0 and "ms_per_image" in s
    assert {k: v["images"] for k, v in s["sets"].items()} == {"eu": 2, "us": 1}
    assert "| eu | 2 | 1.000 |" in (out / "summary.md").read_text()
    assert (out / "report.html").is_file()


def test_photos_compare(
    two_sets: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate_cli, "run_photos", fake_run)
    out = tmp_path / "out"
    argv = ["photos", *map(str, two_sets), "--out", str(out), "--quiet", "--start-server",
            "--compare", "plate", "ppocr", "--summary", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    c = json.loads((tmp_path / "s.json").read_text())["compare"]
    assert c["plate"]["sets"]["eu"]["exact"] == 1.0
    assert c["ppocr"]["sets"]["eu"]["exact"] == pytest.approx(2 / 3)
    assert c["ppocr"]["plate_reader"] == "ppocr"
    assert [(d["set"], d["read"]["ppocr"]) for d in c["differ"]] == [("eu", "KV65BZ"),
                                                                      ("us", "7ABC12")]  # fmt: skip
    table = (out / "summary.md").read_text()
    assert "| eu | 3 | 1.000 | 0.667 |" in table and "Photos read differently (2)" in table
    assert (out / "plate" / "report.html").is_file() and (out / "ppocr" / "summary.md").is_file()
