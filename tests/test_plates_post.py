"""Plate post-processing: normalisation, regional formats (YAML), look-alike correction and
voting across a track's reads. Table-driven; error cases sit in the same tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_client.contracts import PlateResult, Read
from edge_client.plates import (
    DEFAULT_FORMATS_PATH,
    PlateFormat,
    correct,
    fold_lookalikes,
    is_plausible,
    load_formats,
    normalize,
    select,
    vote,
)

REPO = Path(__file__).resolve().parent.parent
ALL = load_formats()


def fmts(*regions: str) -> list[PlateFormat]:
    return select(ALL, list(regions))


# --- normalisation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AB12CDE", "AB12CDE"),
        ("ab 12 cde", "AB12CDE"),
        ("AB-123-CD", "AB123CD"),
        ("B·AB.123", "BAB123"),  # middle dot, dot
        ("M\u2011AB\u2013123", "MAB123"),  # non-breaking hyphen, en dash
        ("\tA\nB_1/2|", "AB12"),
        ("Köln 12", "KLN12"),  # accented letters are dropped, not transliterated
        ("straße 1", "STRAE1"),  # "ß".upper() is "SS": dropped too
        ("ＡＢ－１２", "AB12"),  # full-width forms (NFKC)
        ("АВ12СЕ", "AB12CE"),  # Cyrillic look-alike capitals
        ("ΑΒ 1234", "AB1234"),  # Greek look-alike capitals
        ("", ""),
        ("--- .. ·", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected
    assert normalize(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("0A12XYZ", "OA12XYZ", True), ("AB1ZCDE", "A812CDE", True), ("AB12CDE", "AB12CDF", False)],
)
def test_fold_lookalikes(a: str, b: str, same: bool) -> None:
    assert (fold_lookalikes(a) == fold_lookalikes(b)) is same


# --- formats file ---------------------------------------------------------------------------
def test_default_formats_file() -> None:
    # package data next to the code, so a wheel install finds it too; one copy only
    assert DEFAULT_FORMATS_PATH == REPO / "edge_client" / "plates" / "plate_formats.yaml"
    assert not (REPO / "config" / "plate_formats.yaml").exists()
    assert {"eu", "uk", "us", "br"} <= set(ALL)
    for region, formats in ALL.items():
        assert formats and all(f.region == region for f in formats)


@pytest.mark.parametrize(
    "fmt", [f for fs in ALL.values() for f in fs], ids=lambda f: f"{f.region}-{f.name}"
)
def test_every_format_is_reachable(fmt: PlateFormat) -> None:
    """A text of exactly this mask (no look-alike characters) picks this format in its
    region: no entry is shadowed by a heavier one."""
    example = "".join({"L": "K", "D": "3"}.get(k, "K3"[i % 2]) for i, k in enumerate(fmt.pattern))
    assert correct(example, ALL[fmt.region]) == (example, fmt, pytest.approx(fmt.weight))


GOOD = "regions:\n  xx:\n    - {name: a, pattern: LLDD}\n"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (GOOD, None),
        ("version: 1\n" + GOOD.replace("LLDD}", "LLDD, weight: 2.5, min_digits: 1}"), None),
        ("- just\n- a list\n", "expected a mapping with a 'regions' key, got list"),
        ("", "got NoneType"),
        ("regions: [\n", "is not valid YAML"),
        ("version: 2\n" + GOOD, "version"),
        ("regions: {}\n", "regions: Dictionary should have at least 1 item"),
        ("regions:\n  xx: []\n", "regions.xx: a region needs at least one format"),
        ("regions:\n  xx: LLDD\n", "regions.xx: Input should be a valid list"),
        ("regions:\n  XX:\n    - {name: a, pattern: LLDD}\n", "regions.XX: region names"),
        (GOOD.replace("LLDD", "LLXD"), "regions.xx[0] (name 'a').pattern: String should match"),
        (GOOD.replace("LLDD", "L"), "regions.xx[0] (name 'a').pattern: String should have at"),
        (GOOD.replace("name: a, ", ""), "regions.xx[0].name: Field required"),
        (GOOD.replace("name: a", "name: A b"), "regions.xx[0] (name 'A b').name"),
        (GOOD.replace("LLDD}", "LLDD, weight: 0}"), "(name 'a').weight: Input should be greater"),
        (GOOD.replace("LLDD}", "LLDD, colour: red}"), "(name 'a').colour: Extra inputs"),
        (GOOD.replace("LLDD}", "LLDD, min_digits: 3}"), "cannot both hold for pattern LLDD"),
        (
            GOOD + "    - {name: b, pattern: LLDD}\n",
            "xx[1] (name 'b'): pattern LLDD is already 'a'",
        ),
        (GOOD + "    - {name: a, pattern: DDLL}\n", "xx[1]: duplicate format name 'a'"),
        # region options
        (GOOD + "region_options:\n  xx: {prefer_digits: OIQ, description: d}\n", None),
        (
            GOOD + "region_options:\n  yy: {prefer_digits: OI}\n",
            "region_options.yy: no such region in regions (xx)",
        ),
        (
            GOOD + "region_options:\n  xx: {prefer_digits: OX}\n",
            "region_options.xx: Value error, prefer_digits: X has no digit look-alike",
        ),
        (GOOD + "region_options:\n  xx: {prefer_digits: OIO}\n", "'OIO' repeats a letter"),
        (
            GOOD + "region_options:\n  xx: {prefer_digits: oi}\n",
            "region_options.xx.prefer_digits: String should match",
        ),
        (GOOD + "region_options:\n  xx: {prefer: OI}\n", "region_options.xx.prefer: Extra inputs"),
    ],
)
def test_load_formats_validation(tmp_path: Path, content: str, error: str | None) -> None:
    path = tmp_path / "formats.yaml"
    path.write_text(content)
    if error is None:
        assert [f.name for f in load_formats(path)["xx"]] == ["a"]
        return
    with pytest.raises(ValueError, match=r"plate formats|not valid YAML") as exc:
        load_formats(path)
    assert error in str(exc.value)


def test_load_formats_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read plate formats"):
        load_formats(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        (["uk"], ["uk"]),
        (["eu", "uk"], ["eu", "uk"]),
        (["UK", " uk", "br"], ["uk", "br"]),  # case-insensitive, duplicates ignored
        (["eu", "mars"], ValueError("unknown plate region(s) mars; available: br, eu, uk, us")),
        ([], ValueError("no plate regions given; available: br, eu, uk, us")),
        ("eu", ValueError("regions must be a list")),
    ],
)
def test_select(regions: list[str], expected: list[str] | ValueError) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError) as exc:
            select(ALL, regions)
        assert str(expected) in str(exc.value)
        return
    got = select(ALL, regions)
    assert got == [f for r in expected for f in ALL[r]]


# --- correction ---------------------------------------------------------------------------
LOW_POS1 = [1.0, 0.1, 0.9, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("text", "regions", "confs", "expected"),
    [
        # uk
        ("AB12CDE", ["uk"], None, ("AB12CDE", "uk_current", 1.0)),
        ("AB1ZCDE", ["uk"], None, ("AB12CDE", "uk_current", 0.8)),
        ("0A12XYZ", ["uk"], None, ("OA12XYZ", "uk_current", 0.8)),
        ("A123BCD", ["uk"], None, ("A123BCD", "uk_prefix", 0.8)),
        ("ABC123D", ["uk"], None, ("ABC123D", "uk_suffix", 0.7)),
        # tie (0.64): uk_current needs 8->B and I->1, uk_prefix (weight 0.8) only I->1:
        # fewer substitutions win; a doubtful '8' makes uk_current cheaper.
        ("A8I2CDE", ["uk"], None, ("A812CDE", "uk_prefix", 0.64)),
        ("A8I2CDE", ["uk"], LOW_POS1, ("AB12CDE", "uk_current", 0.8**1.0)),
        # a character read with confidence >= 0.97 is never substituted (Z->2 blocked) ...
        ("AB1ZCDE", ["uk"], [1, 1, 1, 0.99, 1, 1, 1], ("AB1ZCDE", None, 0.0)),
        # ... except the glyph twins O/0 and I/1, which the format decides
        ("A8I2CDE", ["uk"], [1.0, 0.1, 0.99, 1, 1, 1, 1], ("AB12CDE", "uk_current", 0.8**1.09)),
        ("BS47040", ["eu"], [0.999] * 7, ("BS47040", "pl_dk_llddddd", 0.8)),
        # per-character confidence scales the penalty: none at all at confidence 0
        ("AB1ZCDE", ["uk"], [1, 1, 1, 0.5, 1, 1, 1], ("AB12CDE", "uk_current", 0.8**0.5)),
        ("AB1ZCDE", ["uk"], [1, 1, 1, 0.0, 1, 1, 1], ("AB12CDE", "uk_current", 1.0)),
        ("AB1ZCDE", ["uk"], [1, 1, 1, -3, 1, 1, 9], ("AB12CDE", "uk_current", 1.0)),  # clamped
        ("AB1ZCDE", ["uk"], [1.0] * 6, ValueError("6 character confidences for 7")),
        # br
        ("ABC1D23", ["br"], None, ("ABC1D23", "br_mercosur", 1.0)),
        ("ABC1234", ["br"], None, ("ABC1234", "br_old", 1.0)),
        ("A8C1D23", ["br"], None, ("ABC1D23", "br_mercosur", 0.8)),
        ("ABCI234", ["br"], None, ("ABC1234", "br_old", 0.8)),
        # us
        ("7ABC123", ["us"], None, ("7ABC123", "us_ca", 1.0)),
        ("7A8C1Z3", ["us"], None, ("7ABC123", "us_ca", 0.64)),
        ("ABC1234", ["us"], None, ("ABC1234", "us_llldddd", 1.0)),
        ("K9CAT", ["us"], None, ("K9CAT", "us_generic5", 0.3)),
        # US generics need a letter and a digit: an all-letter word on a US car is mostly a
        # state name, slogan or dealer frame (was: HELLO fitted us_generic5)
        ("HELLO", ["us"], None, ("HELLO", None, 0.0)),
        # same mask in two regions: the region listed first wins
        ("ABC1234", ["us", "br"], None, ("ABC1234", "us_llldddd", 1.0)),
        ("ABC1234", ["br", "us"], None, ("ABC1234", "br_old", 1.0)),
        # eu
        ("AB123CD", ["eu"], None, ("AB123CD", "fr_it_sk", 1.0)),
        ("AB1Z3C0", ["eu"], None, ("AB123CO", "fr_it_sk", 0.64)),
        ("1234BCD", ["eu"], None, ("1234BCD", "es", 1.0)),
        ("1AB2345", ["eu"], None, ("1AB2345", "cz", 1.0)),
        ("1A23456", ["eu"], None, ("1A23456", "cz", 1.0)),
        ("1ABC234", ["eu"], None, ("1ABC234", "be", 1.0)),
        ("MAB1234", ["eu"], None, ("MAB1234", "de_gr_llldddd", 0.8)),
        ("X9Y8", ["eu"], None, ("X9Y8", "eu_generic4", 0.3)),
        # no fit: returned unchanged with no format
        ("ABCDEFG", ["eu"], None, ("ABCDEFG", None, 0.0)),  # fallback needs a digit
        ("ZZZZZZZZZZ", ["uk"], None, ("ZZZZZZZZZZ", None, 0.0)),  # no format that long
        ("A812CDX", ["br"], None, ("A812CDX", None, 0.0)),  # 'X' has no digit look-alike
        ("", ["eu"], None, ("", None, 0.0)),
        ("ab12cde", ["uk"], None, ("ab12cde", None, 0.0)),  # expects normalised text
        # at most two substitutions (MAX_SUBS): 0->O, I->1, Z->2 is one too many
        ("0BIZCDE", ["uk"], None, ("0BIZCDE", None, 0.0)),
    ],
)
def test_correct(
    text: str,
    regions: list[str],
    confs: list[float] | None,
    expected: tuple[str, str | None, float] | ValueError,
) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError, match=str(expected)):
            correct(text, fmts(*regions), confs)
        return
    plate, fmt, score = correct(text, fmts(*regions), confs)
    assert (plate, fmt.name if fmt else None, score) == (
        expected[0],
        expected[1],
        pytest.approx(expected[2]),
    )
    if fmt is not None:
        assert fmt.region in regions


@pytest.mark.parametrize(
    ("text", "max_subs", "expected"),
    [("0BIZCDE", 3, "OB12CDE"), ("AB1ZCDE", 0, None), ("AB12CDE", 0, "AB12CDE")],
)
def test_correct_max_subs(text: str, max_subs: int, expected: str | None) -> None:
    plate, fmt, _ = correct(text, fmts("uk"), max_subs=max_subs)
    assert (plate if fmt else None) == expected


# --- voting -----------------------------------------------------------------------------------
def reads(*specs: tuple[str, float] | tuple[str, float, tuple[float, ...]]) -> list[Read]:
    return [Read(s[0], s[1], s[2] if len(s) > 2 else ()) for s in specs]


E7 = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1)  # last character doubtful


@pytest.mark.parametrize(
    ("regions", "votes", "kwargs", "expected"),
    [
        # unanimous: weighted mean 0.9, share 1, format bonus x1.1
        (["uk"], reads(*[("AB12CDE", 0.9)] * 3), {}, ("AB12CDE", "AB12CDE", "uk_current", 3, 0.99)),
        # one outlier in its own cluster: share 2.4/3.35 lowers the confidence
        (
            ["uk"],
            reads(*[("AB12CDE", 0.8)] * 3, ("HELLO", 0.95)),
            {},
            ("AB12CDE", "AB12CDE", "uk_current", 3, 0.8 * (0.5 + 0.5 * 2.4 / 3.35) * 1.1),
        ),
        # one misread character inside the cluster is outvoted per position
        (
            ["uk"],
            reads(("AB12CDF", 0.9), *[("AB12CDE", 0.8)] * 2),
            {},
            ("AB12CDE", "AB12CDF", "uk_current", 3, None),
        ),
        # O/0 confusion: majority says '0', the letter position says 'O'
        (
            ["uk"],
            reads(("0A12XYZ", 0.9), ("OA12XYZ", 0.7), ("0A12XYZ", 0.8)),
            {},
            ("OA12XYZ", "0A12XYZ", "uk_current", 3, None),
        ),
        # majority fixes a Z/2 confusion without needing the format
        (
            ["uk"],
            reads(("AB1ZCDE", 0.9), *[("AB12CDE", 0.8)] * 2),
            {},
            ("AB12CDE", "AB1ZCDE", "uk_current", 3, None),
        ),
        # the majority is wrong ('8'), the format fixes it
        (
            ["us"],
            reads(("7A8C123", 0.9), ("7ABC123", 0.6)),
            {},
            ("7ABC123", "7A8C123", "us_ca", 2, None),
        ),
        # confidence outweighs count: 0.95 > 3 x 0.2 ...
        (
            ["uk"],
            reads(("AB12CDE", 0.95), *[("XY34ZZZ", 0.2)] * 3),
            {},
            ("AB12CDE", "AB12CDE", "uk_current", 1, None),
        ),
        # ... and count outweighs confidence: 2 x 0.6 > 0.9
        (
            ["uk"],
            reads(("AB12CDE", 0.9), *[("XY34ZZZ", 0.6)] * 2),
            {},
            ("XY34ZZZ", "XY34ZZZ", "uk_current", 2, None),
        ),
        # modal length (by confidence) votes; raw_text is the cluster's most confident read
        (
            ["uk"],
            reads(("AB12CD", 0.9), *[("AB12CDE", 0.6)] * 2),
            {},
            ("AB12CDE", "AB12CD", "uk_current", 3, None),
        ),
        # character confidences weigh the per-position vote (0.9 x 0.1 < 0.6)
        (
            ["uk"],
            reads(("AB12CDE", 0.9, E7), ("AB12CDF", 0.6)),
            {},
            ("AB12CDF", "AB12CDE", "uk_current", 2, None),
        ),
        # reads as the recogniser gave them are normalised before voting
        (
            ["uk"],
            reads(("ab-12 cde", 0.9), ("AB12CDE", 0.8)),
            {},
            ("AB12CDE", "ab-12 cde", "uk_current", 2, None),
        ),
        # no format fits: still a result, without region/format/bonus ...
        (["eu"], reads(("ABCDEFG", 0.9)), {}, ("ABCDEFG", "ABCDEFG", None, 1, 0.9)),
        # ... unless a format is required
        (["eu"], reads(("ABCDEFG", 0.9)), {"require_format": True}, None),
        # confidences are clamped to 0..1; all-zero confidences still vote by count
        (["uk"], reads(("AB12CDE", 1.5)), {}, ("AB12CDE", "AB12CDE", "uk_current", 1, 1.0)),
        (
            ["uk"],
            reads(*[("AB12CDE", 0.0)] * 2, ("XY34ZZZ", 0.0)),
            {},
            ("AB12CDE", "AB12CDE", "uk_current", 2, 0.0),
        ),
        # the length filter applies to the winner: short reads win, so no plate
        (["uk"], reads(*[("AB1", 0.9)] * 3, ("AB12CDE", 0.5)), {}, None),
        (
            ["uk"],
            reads(*[("AB1", 0.9)] * 3, ("AB12CDE", 0.5)),
            {"min_len": 3},
            ("AB1", "AB1", None, 3, None),
        ),
        # ... not to each read: a short outlier does not block the winner
        (
            ["uk"],
            reads(*[("AB12CDE", 0.9)] * 2, ("AB", 0.99)),
            {},
            ("AB12CDE", "AB12CDE", "uk_current", 2, None),
        ),
        # nothing to vote on
        (["uk"], [], {}, None),
        (["uk"], reads(("--", 0.9), ("", 0.8)), {}, None),
        # bad arguments
        (["uk"], reads(("AB12CDE", 0.9)), {"similarity": 0.0}, ValueError("similarity")),
        (["uk"], reads(("AB12CDE", 0.9)), {"min_len": 0}, ValueError("min_len")),
    ],
)
def test_vote(
    regions: list[str],
    votes: list[Read],
    kwargs: dict[str, Any],
    expected: tuple[str, str, str | None, int, float | None] | ValueError | None,
) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError, match=str(expected)):
            vote(votes, fmts(*regions), **kwargs)
        return
    result = vote(votes, fmts(*regions), **kwargs)
    if expected is None:
        assert result is None
        return
    assert isinstance(result, PlateResult)
    plate, raw, fmt_name, n, conf = expected
    assert (result.plate, result.raw_text, result.format, result.votes) == (plate, raw, fmt_name, n)
    assert result.region == (regions[0] if fmt_name else None)
    assert 0.0 <= result.confidence <= 1.0
    if conf is not None:
        assert result.confidence == pytest.approx(conf)


@pytest.mark.parametrize(
    ("similarity", "n_votes"),
    [(0.8, 3), (0.9, 2), (0.7, 4)],  # similarities to AB12CDE: 0.857, 0.714
)
def test_vote_similarity(similarity: float, n_votes: int) -> None:
    votes = reads(*[("AB12CDE", 0.9)] * 2, ("AB12CDF", 0.5), ("AB13CDX", 0.4))
    result = vote(votes, fmts("uk"), similarity=similarity)
    assert result is not None and result.votes == n_votes and result.plate == "AB12CDE"


@pytest.mark.parametrize(
    ("text", "regions", "min_len", "expected"),
    [
        ("AB12CDE", ["uk"], 4, True),
        ("ab-1z cde", ["uk"], 4, True),  # normalised and corrected
        ("AB1", ["uk"], 4, False),
        ("AB1", ["eu"], 3, False),  # long enough, but no 3-character format
        ("ABCDEFG", ["eu"], 4, False),
        ("ABCDEFG", [], 4, True),  # no formats: length only
        ("K9CAT", ["us"], 4, True),
        ("K9CAT", ["us"], 6, False),
        ("HELLO", ["us"], 4, False),  # all letters: no US format (was True, us_generic5)
    ],
)
def test_is_plausible(text: str, regions: list[str], min_len: int, expected: bool) -> None:
    assert is_plausible(text, fmts(*regions) if regions else [], min_len) is expected


@pytest.mark.parametrize(
    ("text", "chars", "expected"),
    [
        ("AB1ZCDE", (), True),  # no confidences: Z may be a 2
        ("AB1ZCDE", (0.99, 0.99, 0.99, 0.5, 0.99, 0.99, 0.99), True),  # an unsure Z too
        ("AB1ZCDE", (0.99,) * 7, False),  # a sure Z is no 2: read again
        ("AB1ZCDE", (0.99,) * 3, True),  # misaligned confidences are ignored
        ("A8I2CDE", (0.99, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99), True),  # twin I/1: format decides
    ],
)
def test_is_plausible_keeps_sure_characters(
    text: str, chars: tuple[float, ...], expected: bool
) -> None:
    assert is_plausible(text, fmts("uk"), char_confidences=chars) is expected
