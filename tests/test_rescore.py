"""Top-k rescoring: runner-up characters from synthetic CTC outputs, substituted where the
recogniser was unsure and checked against the regional formats; the client path (`choose`:
format-aware choice among candidates and rescoring; `decide`: then voting) on PlateReads
with and without runner-ups; the optional server outputs."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import TritonProcess
from synth import jpeg, render_plate, render_vehicle

from edge_client.plates import PlateFormat, choose, load_formats, rescore, select
from edge_client.plates.formats import PROTECT
from edge_client.reader import alpr_batch_reader, plate_batch_reader
from edge_client.tools.evaluate import decide
from edge_client.triton_client import AlprClient
from ensemble.contracts import PLATE_ALPHABET, Box, PlateRead
from ensemble.ctc import CtcResult, greedy_decode
from ensemble.plates import best_plate

ALL = load_formats()


def fmts(*regions: str) -> list[PlateFormat]:
    return select(ALL, list(regions))


def ctc(read: str, unsure: dict[int, tuple[float, str, float]] | None = None) -> CtcResult:
    """Decode synthetic folded CTC probabilities spelling ``read``: each character on one
    time step (0.95, runner-up elsewhere) between blank steps; ``unsure`` maps a position
    to (its probability, runner-up character, runner-up probability)."""
    unsure = unsure or {}
    col = {ch: i + 1 for i, ch in enumerate(PLATE_ALPHABET)}
    probs = np.zeros((1, 2 * len(read) + 1, 1 + len(PLATE_ALPHABET)), np.float32)
    probs[0, :, 0] = 1.0
    for i, ch in enumerate(read):
        p, alt, q = unsure.get(i, (0.95, "Q" if ch != "Q" else "O", 0.01))
        step = probs[0, 2 * i + 1]
        step[:] = 0.0
        step[col[ch]], step[col[alt]] = p, q
        step[0] = 1.0 - p - q
    (result,) = greedy_decode(probs)
    assert result.text == read
    return result


def as_read(r: CtcResult, alternatives: bool = True) -> PlateRead:
    """The CTC result as the client receives it (with or without the runner-ups)."""
    alts = (r.alternatives, r.alt_confidences) if alternatives else ("", ())
    return PlateRead(Box(0, 0, 100, 20), 0.9, r.text, r.confidence, r.char_confidences, *alts)


@pytest.mark.parametrize(
    ("read", "unsure", "regions", "expected", "fmt"),
    [
        # a letter in a digit position that is no look-alike: its runner-up fits the format
        ("AB1ECDE", {3: (0.50, "2", 0.45)}, ["uk"], "AB12CDE", "uk_current"),
        ("FGH82HK", {2: (0.50, "4", 0.40)}, ["eu"], "FG482HK", "fr_it_sk"),  # beats a weaker
        ("7ABCP45", {4: (0.55, "9", 0.35)}, ["us"], "7ABC945", "us_ca"),  # ... or a fallback
        # a look-alike: correct() fixes it either way (the read keeps its own probability)
        ("RTX4E2G", {6: (0.60, "6", 0.30)}, ["br"], "RTX4E26", "br_mercosur"),
        # confident characters are never replaced, however well the runner-up would fit
        ("AB1ECDE", {3: (PROTECT, "2", 0.02)}, ["uk"], "AB1ECDE", None),
        # an improbable runner-up does not buy a better format
        ("FGH82HK", {2: (0.90, "4", 0.05)}, ["eu"], "FGH82HK", "pl_lllddll"),
        # the read already fits: a runner-up that breaks the format loses
        ("AB12CDE", {4: (0.60, "0", 0.35)}, ["uk"], "AB12CDE", "uk_current"),
        # two unsure positions, both needed
        ("AB1E7DE", {3: (0.5, "2", 0.4), 4: (0.5, "C", 0.45)}, ["uk"], "AB12CDE", "uk_current"),
        # no formats: the read as it is
        ("AB1ECDE", {3: (0.50, "2", 0.45)}, [], "AB1ECDE", None),
    ],
)  # fmt: skip
def test_rescore_table(
    read: str,
    unsure: dict[int, tuple[float, str, float]],
    regions: list[str],
    expected: str,
    fmt: str | None,
) -> None:
    r = ctc(read, unsure)
    formats = fmts(*regions) if regions else []
    got = rescore(r.text, r.char_confidences, r.alternatives, r.alt_confidences, formats)
    assert (got.format.name if got.format else None) == fmt
    result, _ = decide([as_read(r)], formats)
    assert result is not None and result.plate == expected
    assert len(got.char_confidences) == len(got.text) == len(read)
    for i in got.substituted:
        assert got.text[i] == r.alternatives[i] and r.char_confidences[i] < PROTECT


@pytest.mark.parametrize(
    ("read", "unsure", "regions", "expected", "dropped"),
    [
        # a plate's flag read as an unsure letter, nothing else there: dropped
        ("NBY649AG", {0: (0.45, "H", 0.12)}, ["eu"], "BY649AG", 0),
        # an emblem between district and number, read as a faint character
        ("RK3346AL", {2: (0.45, "S", 0.12)}, ["eu"], "RK346AL", 2),
        # ... but read fairly surely, and the whole read fits a format: kept
        ("RK3346AL", {2: (0.72, "S", 0.04)}, ["eu"], "RK3346AL", None),
        # torn between two characters (I or 1): something is there, kept
        ("RK776AI", {6: (0.42, "1", 0.36)}, ["eu"], "RK776AI", None),
        # no format is one character shorter: nothing to drop to
        ("ABCD12345", {8: (0.45, "K", 0.12)}, ["br"], "ABCD12345", None),
        # a sure character is never dropped
        ("XAB12CDE", {0: (PROTECT, "K", 0.0)}, ["uk"], "XAB12CDE", None),
        ("XAB12CDE", {0: (0.45, "K", 0.12)}, ["uk"], "AB12CDE", 0),
    ],
)  # fmt: skip
def test_rescore_drops_one_spurious_character(
    read: str,
    unsure: dict[int, tuple[float, str, float]],
    regions: list[str],
    expected: str,
    dropped: int | None,
) -> None:
    r = ctc(read, unsure)
    got = rescore(r.text, r.char_confidences, r.alternatives, r.alt_confidences, fmts(*regions))
    assert got.deleted == dropped
    assert len(got.char_confidences) == len(got.text)
    result, _ = decide([as_read(r)], fmts(*regions))
    assert result is not None and result.plate == expected


def many_unsure(needed_ratio: float) -> CtcResult:
    """'AB1ECDE' with five other unsure positions whose runner-ups are closer calls than
    the one needed at position 3 (its ratio ``needed_ratio``), none of them helpful."""
    unsure = {i: (0.5, alt, 0.49) for i, alt in zip((0, 1, 4, 5, 6), "HKXYW", strict=True)}
    unsure[3] = (0.5, "2", 0.5 * needed_ratio)
    return ctc("AB1ECDE", unsure)


@pytest.mark.parametrize(
    ("needed_ratio", "max_hypotheses", "expected"),
    [
        (0.9, 16, "AB1ECDE"),  # 4 closer calls fill the 16 hypotheses: position 3 not tried
        (0.99, 64, "AB12CDE"),  # room for 6 positions
        (0.99, 1, "AB1ECDE"),  # one hypothesis: the read itself
    ],
)
def test_rescore_is_bounded(needed_ratio: float, max_hypotheses: int, expected: str) -> None:
    r = many_unsure(needed_ratio)
    got = rescore(r.text, r.char_confidences, r.alternatives, r.alt_confidences, fmts("uk"),
                  max_hypotheses=max_hypotheses)  # fmt: skip
    assert got.text == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("AB1", (0.5, 0.5), "XYZ", (0.1, 0.1, 0.1)), "2 character confidences"),
        (("AB1", (0.5, 0.5, 0.5), "XY", (0.1, 0.1)), "alternatives"),
        (("AB1", (0.5, 0.5, 0.5), "XYZ", (0.1,)), "alternative confidences"),
    ],
)
def test_rescore_rejects_misaligned_inputs(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rescore(*args, fmts("uk"))


def test_rescore_without_alternatives_keeps_the_read() -> None:
    got = rescore("AB1ECDE", (0.5,) * 7, "", (), fmts("uk"))
    assert (got.text, got.substituted, got.format) == ("AB1ECDE", (), None)


@pytest.mark.parametrize("top_k", [True, False])
def test_decide_without_runner_ups_is_the_old_path(top_k: bool) -> None:
    """Reads from an old client (no alternatives) or with rescoring off: best plate, then
    voting and look-alike correction only."""
    r = ctc("AB1ECDE", {3: (0.50, "2", 0.45)})
    plain, _ = decide([as_read(r, alternatives=False)], fmts("uk"), top_k=top_k)
    assert plain is not None and plain.plate == "AB1ECDE"
    got, _ = decide([as_read(r)], fmts("uk"), top_k=top_k)
    assert got is not None and got.plate == ("AB12CDE" if top_k else "AB1ECDE")


# --- choosing among candidates ----------------------------------------------------------------
def cand(text: str, conf: float, det: float, y: float = 0.0, alts: str = "") -> PlateRead:
    return PlateRead(Box(0, y, 100, y + 20), det, text, conf, (conf,) * len(text),
                     alts, (0.4,) * len(alts))  # fmt: skip


@pytest.mark.parametrize(
    ("reads", "regions", "chosen", "text"),
    [
        # comparable candidates: the one the better format fits wins (fr_it_sk 1.0 beats the
        # 6-character hr_nl_lldddl 0.8 although its recogniser confidence is lower)
        ([cand("RK857A", 1.0, 0.71), cand("RK857AI", 0.94, 0.81, y=50)], ["eu"], 1, "RK857AI"),
        # ... but the format bonus (at most 10%) does not outweigh a clearly better read
        ([cand("RK857A", 1.0, 0.9), cand("RK857AI", 0.7, 0.6, y=50)], ["eu"], 0, "RK857A"),
        # no formats: best_plate's choice
        ([cand("RK857A", 1.0, 0.71), cand("RK857AI", 0.94, 0.81, y=50)], [], 0, "RK857A"),
        # the chosen read's best hypothesis is what it votes with
        ([cand("AB1ECDE", 0.5, 0.9, alts="QQQ2QQQ")], ["uk"], 0, "AB12CDE"),
        ([cand("AB", 1.0, 0.9)], ["uk"], None, None),  # nothing plate-like
    ],
)  # fmt: skip
def test_choose(
    reads: list[PlateRead], regions: list[str], chosen: int | None, text: str | None
) -> None:
    got = choose(reads, fmts(*regions) if regions else [])
    if chosen is None:
        assert got is None
        return
    assert got is not None and got.read is reads[chosen] and got.text == text


class FakeClient:
    """Stands in for AlprClient.read_plates: fixed candidates per image."""

    def __init__(self, reads: list[PlateRead]) -> None:
        self.reads = reads
        self.asked: list[bool] = []

    def read_plates(
        self, images: list[bytes], *, alternatives: bool = True
    ) -> list[list[PlateRead]]:
        self.asked.append(alternatives)
        return [self.reads for _ in images]


@pytest.mark.parametrize(("regions", "text"), [(["uk"], "AB12CDE"), ([], "AB1ECDE")])
def test_alpr_batch_reader_votes_with_the_chosen_hypothesis(regions: list[str], text: str) -> None:
    fake = FakeClient([cand("AB1ECDE", 0.5, 0.9, alts="QQQ2QQQ")])
    read = alpr_batch_reader(cast(AlprClient, fake), fmts(*regions) if regions else None)
    ((got, conf, chars),) = read([b"jpeg"])
    assert got == text and conf == 0.5 and len(chars) == 7
    assert fake.asked == [bool(regions)]  # runner-ups are asked for only when used


# --- through the real server -----------------------------------------------------------------
@pytest.mark.server
def test_runner_ups_come_back_only_when_requested(triton: TritonProcess) -> None:
    img, _ = render_vehicle("AB123CD")
    data = jpeg(img)
    client = AlprClient(triton.grpc_url)
    try:
        old = client.read_plates([data], alternatives=False)[0]
        new = client.read_plates([data])[0]
        crops = client.read_plate_crops([jpeg(render_plate("XY99ZZQ"))])  # never asks
    finally:
        client.close()
    assert [r.text for r in old] == [r.text for r in new] and crops[0][0] == "XY99ZZQ"
    assert all(r.alternatives == "" and r.alt_confidences == () for r in old)
    for r in new:
        assert len(r.alternatives) == len(r.text) == len(r.alt_confidences)
        assert all(0.0 <= p <= 1.0 for p in r.alt_confidences)
        assert all(a != t for a, t in zip(r.alternatives, r.text, strict=True))
    # an old client asking for the original outputs only gets exactly those
    raw = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=object))
    wanted = ["PLATE_COUNT", "PLATE_TEXT"]
    res = raw.infer("alpr", [inp], outputs=[grpcclient.InferRequestedOutput(o) for o in wanted])
    assert {o.name for o in res.get_response().outputs} == set(wanted)
    assert res.as_numpy("PLATE_TEXT")[0][0].decode() == best_plate(new).text  # type: ignore[union-attr]


@pytest.mark.server
@pytest.mark.parametrize(("plate", "regions"), [("KV65BZR", ["uk"]), ("FG482HK", ["eu"])])
def test_plate_camera_reader_rescores_through_plate_ocr(
    triton: TritonProcess, plate: str, regions: list[str]
) -> None:
    """Plates mode: crops straight to ``plate_ocr`` with runner-ups, rescored per read."""
    client = AlprClient(triton.grpc_url)
    try:
        data = jpeg(render_plate(plate))
        (r,) = client.read_plate_crop_reads([data])
        ((text, conf, chars),) = plate_batch_reader(client, fmts(*regions))([data])
        ((plain, _, _),) = plate_batch_reader(client)([data])  # no formats: as read
    finally:
        client.close()
    assert len(r.alternatives) == len(r.text) == len(r.alt_confidences)
    assert text == plain == plate and len(chars) == len(text) and 0 < conf <= 1
