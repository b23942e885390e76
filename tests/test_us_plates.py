"""US plates: formats by state family, the US digit prior (no O, I or Q on standard plates)
and the rule that a format never overrides a character the recogniser was sure of.

The four ``KEPT`` reads are right raw reads of real US photographs that the old format
correction broke (``2DA044`` -> ``2DAO44``, ``K179658`` -> ``KI79658``, ``R107555`` ->
``RIO7555``, ``ATGL04`` -> ``ATG104``); they must survive ``correct``, ``rescore`` with
plausible runner-ups, and ``choose`` followed by ``vote``. EU/UK corrections still happen.
Also: ``choose`` penalises and flags a candidate no format fits."""

from __future__ import annotations

import pytest

from edge_client.contracts import Read
from edge_client.plates import (
    PlateFormat,
    choose,
    correct,
    load_formats,
    rescore,
    select,
    vote,
)
from edge_client.plates.choose import NO_FIT_PENALTY
from edge_client.plates.voting import FORMAT_BONUS
from ensemble.contracts import Box, PlateRead
from ensemble.plates import ranked

ALL = load_formats()
SURE = 0.99

# A plausible runner-up for each character: its look-alike, else a neighbour in the font.
RUNNER_UP = dict(zip("0O1IL2Z5S8B6G4A7TDRKHMN9", "O01I1Z25S8B6G4A7T0PXNNM8", strict=True))


def fmts(*regions: str) -> list[PlateFormat]:
    return select(ALL, list(regions))


def confs(text: str, unsure: dict[int, float]) -> tuple[float, ...]:
    """``SURE`` everywhere but at the positions of ``unsure``."""
    return tuple(unsure.get(i, SURE) for i in range(len(text)))


def runner_ups(text: str, unsure: dict[int, float], alt_p: float) -> tuple[str, tuple[float, ...]]:
    """Each character's runner-up: ``alt_p`` at the ``unsure`` positions, 0.005 elsewhere."""
    alts = "".join(RUNNER_UP.get(c, "Q") for c in text)
    return alts, tuple(alt_p if i in unsure else 0.005 for i in range(len(text)))


def plate_read(
    text: str, chars: tuple[float, ...], alts: str = "", alt_p: tuple[float, ...] = (),
    det: float = 0.9, y: float = 0.0,
) -> PlateRead:  # fmt: skip
    conf = min(chars) if chars else 0.0
    return PlateRead(Box(0, y, 100, y + 20), det, text, conf, chars, alts, alt_p)


# --- the four right reads the old correction broke ---------------------------------------------
# (read, the position(s) of its twin-prone character: 0 or 1, or the L of ATGL04)
KEPT = [("2DA044", (3,)), ("K179658", (1,)), ("R107555", (1, 2)), ("ATGL04", (3,))]
TWIN_CONFIDENCES = [SURE, 0.9]  # all sure; the realistic case, the twin a little less sure


@pytest.mark.parametrize("twin_conf", TWIN_CONFIDENCES)
@pytest.mark.parametrize(("read", "twins"), KEPT)
@pytest.mark.parametrize("regions", [["us"], ["us", "eu"], ["eu", "us"]])
def test_correct_keeps_a_right_us_read(
    read: str, twins: tuple[int, ...], twin_conf: float, regions: list[str]
) -> None:
    chars = confs(read, dict.fromkeys(twins, twin_conf))
    plate, fmt, _ = correct(read, fmts(*regions), chars)
    assert plate == read and fmt is not None


@pytest.mark.parametrize(
    ("twin_conf", "alt_p"),
    [(SURE, 0.005), (0.9, 0.05), (0.6, 0.35)],  # the last: a close call between the twins
)
@pytest.mark.parametrize(("read", "twins"), KEPT)
def test_rescore_keeps_a_right_us_read(
    read: str, twins: tuple[int, ...], twin_conf: float, alt_p: float
) -> None:
    unsure = dict.fromkeys(twins, twin_conf)
    chars = confs(read, unsure)
    alts, alt_confs = runner_ups(read, unsure, alt_p)
    got = rescore(read, chars, alts, alt_confs, fmts("us"))
    assert (got.text, got.substituted, got.deleted) == (read, (), None)
    assert got.format is not None
    assert correct(got.text, fmts("us"), got.char_confidences)[0] == read


@pytest.mark.parametrize("top_k", [True, False])
@pytest.mark.parametrize(("twin_conf", "alt_p"), [(SURE, 0.005), (0.9, 0.05)])
@pytest.mark.parametrize(("read", "twins"), KEPT)
def test_choose_then_vote_keeps_a_right_us_read(
    read: str, twins: tuple[int, ...], twin_conf: float, alt_p: float, top_k: bool
) -> None:
    """The client's path for one image (``evaluate.decide``): choose, then vote."""
    unsure = dict.fromkeys(twins, twin_conf)
    chars = confs(read, unsure)
    candidate = plate_read(read, chars, *runner_ups(read, unsure, alt_p))
    choice = choose([candidate], fmts("us"), top_k=top_k)
    assert choice is not None and choice.text == read and choice.fits
    result = vote([Read(choice.text, candidate.confidence, choice.char_confidences)], fmts("us"))
    assert result is not None and result.plate == read and result.region == "us"


# --- the US prior, and EU/UK corrections that must still happen --------------------------------
@pytest.mark.parametrize(
    ("read", "unsure", "regions", "expected", "fmt"),
    [
        # the format requires a digit: an unsure I there is a 1 (California 1ABC234)
        ("7ABCI23", {4: 0.5}, ["us"], "7ABC123", "us_ca"),
        # ... and so is a sure O (glyph twin, toward the digit); Q is a 0 where unsure
        ("7ABC1O3", {}, ["us"], "7ABC103", "us_ca"),
        ("ABC12Q4", {5: 0.6}, ["us"], "ABC1204", "us_llldddd"),
        # where either kind may stand (a mixed serial), an unsure O is read as 0 ...
        ("X7O2K", {2: 0.6}, ["us"], "X702K", "us_generic5"),
        ("K4I7Q", {2: 0.6, 4: 0.5}, ["us"], "K4170", "us_generic5"),
        # ... at most MAX_SUBS of them, least sure first; never below the mask's one letter
        ("KOI7Q", {1: 0.7, 2: 0.6, 4: 0.5}, ["us"], "KO170", "us_generic5"),
        ("4I7Q5", {1: 0.6, 3: 0.5}, ["us"], "4I705", "us_generic5"),
        # ... but a sure O is kept: a prior does not override the pixels
        ("X7O2K", {}, ["us"], "X7O2K", "us_generic5"),
        # a read 0 never becomes O in the US, even where the state's mask wants a letter ...
        ("70BC123", {1: 0.6}, ["us"], "70BC123", "us_generic7"),
        # ... while in Europe the format still decides (Belgium 1-ABC-123)
        ("70BC123", {1: 0.6}, ["eu"], "7OBC123", "be"),
        # all-letter words (state names, slogans, dealers) fit no US format
        ("TEXAS", {}, ["us"], "TEXAS", None),
        ("FLORIDA", {2: 0.5, 4: 0.5}, ["us"], "FLORIDA", None),  # the prior makes no serial
        # UK: a doubtful 8 at a letter position is still a B; twins still follow the format
        ("A812CDE", {1: 0.5}, ["uk"], "AB12CDE", "uk_current"),
        ("0A12XYZ", {}, ["uk"], "OA12XYZ", "uk_current"),
        ("AB1ZCDE", {}, ["uk"], "AB1ZCDE", None),  # a sure Z is no 2
        # EU: look-alikes at the positions the format demands
        ("AB1Z3C0", {3: 0.5, 6: 0.9}, ["eu"], "AB123CO", "fr_it_sk"),
    ],
)  # fmt: skip
def test_correct_with_the_us_prior(
    read: str, unsure: dict[int, float], regions: list[str], expected: str, fmt: str | None
) -> None:
    plate, got, score = correct(read, fmts(*regions), confs(read, unsure))
    assert (plate, got.name if got else None) == (expected, fmt)
    assert (score > 0) is (got is not None)


def test_rescore_never_takes_a_twin_letter_over_a_us_digit() -> None:
    """A read 0 with the runner-up O where the state's mask wants a letter: O would fit
    California's 1ABC234 best, but the US issues no O, so the read stays."""
    read, unsure = "7A0C123", {2: 0.5}
    alts, alt_p = runner_ups(read, unsure, 0.45)
    us = rescore(read, confs(read, unsure), alts, alt_p, fmts("us"))
    assert (us.text, us.substituted) == (read, ())
    eu = rescore(read, confs(read, unsure), alts, alt_p, fmts("eu"))  # Belgium: O it is
    assert (eu.text, eu.substituted, eu.format and eu.format.name) == ("7AOC123", (2,), "be")


def test_us_formats_carry_the_prior_and_others_do_not() -> None:
    assert {f.prefer_digits for f in ALL["us"]} == {"OIQ"}
    assert {f.prefer_digits for r in ("uk", "eu", "br") for f in ALL[r]} == {""}


# --- a candidate no format fits is a reason to look again ---------------------------------------
def cand(text: str, conf: float, det: float = 0.9, y: float = 0.0) -> PlateRead:
    return plate_read(text, (conf,) * len(text), det=det, y=y)


@pytest.mark.parametrize(
    ("reads", "regions", "chosen", "fits"),
    [
        # a better read of a length no US format has loses to one that fits ...
        ([cand("8KRW2451", 0.9), cand("8KRW245", 0.6, 0.5, y=40)], ["us"], 1, True),
        # ... without formats, the better read wins as before
        ([cand("8KRW2451", 0.9), cand("8KRW245", 0.6, 0.5, y=40)], [], 0, True),
        # ... but a clearly better one still wins, flagged: read again
        ([cand("8KRW2451", 0.95), cand("8KRW245", 0.3, 0.2, y=40)], ["us"], 0, False),
        # nothing fits: the best candidate, flagged
        ([cand("8KRW2451", 0.9), cand("TEXAS", 0.95, y=40)], ["us"], 0, False),
        # a state name above the plate does not beat it (it fits no US format)
        ([cand("TEXAS", 0.99), cand("8KRW245", 0.5, y=40)], ["us"], 1, True),
        ([cand("TEXAS", 0.99), cand("8KRW245", 0.5, y=40)], [], 0, True),
    ],
)  # fmt: skip
def test_choose_prefers_a_fitting_candidate(
    reads: list[PlateRead], regions: list[str], chosen: int, fits: bool
) -> None:
    formats = fmts(*regions) if regions else []
    got = choose(reads, formats)
    assert got is not None and got.read is reads[chosen] and got.fits is fits
    if not formats:  # unchanged: best_plate's choice and ranked's score
        assert got.score == ranked(reads)[0][0]


@pytest.mark.parametrize("top_k", [True, False])
def test_choose_scores_a_miss_with_the_penalty(top_k: bool) -> None:
    miss, hit = cand("8KRW2451", 0.9), cand("8KRW245", 0.9, y=40)
    raw = {id(r): s for s, r in ranked([miss, hit])}
    got_miss = choose([miss], fmts("us"), top_k=top_k)
    got_hit = choose([hit], fmts("us"), top_k=top_k)
    assert got_miss is not None and got_hit is not None
    assert got_miss.score == pytest.approx(raw[id(miss)] * NO_FIT_PENALTY)
    assert got_hit.score == pytest.approx(raw[id(hit)] * (1 + FORMAT_BONUS))


def test_choose_fits_after_dropping_a_spurious_character() -> None:
    """A frame stroke read as an unsure leading character: the deletion hypothesis fits."""
    read, unsure = "X7ABC123", {0: 0.45}
    alts, alt_p = runner_ups(read, unsure, 0.12)
    got = choose([plate_read(read, confs(read, unsure), alts, alt_p)], fmts("us"))
    assert got is not None and (got.text, got.fits) == ("7ABC123", True)
