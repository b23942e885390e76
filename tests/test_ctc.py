"""CTC decoding folded onto the plate alphabet."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.contracts import InputError
from ensemble.ctc import fold, folding_matrix, greedy_decode, recogniser_symbols

SYMBOLS = recogniser_symbols("\n".join(["-", "0", "1", "A", "B", "a", "b", "中"]))
MATRIX = folding_matrix(SYMBOLS, "01AB")


def probs_for(path: str) -> np.ndarray:
    """One-hot [1, T, C] probabilities spelling ``path`` (``_`` = blank, ``~`` = space)."""
    p = np.zeros((1, len(path), len(SYMBOLS)), np.float32)
    for t, ch in enumerate(path):
        sym = "<blank>" if ch == "_" else " " if ch == "~" else ch
        p[0, t, SYMBOLS.index(sym)] = 1.0
    return p


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("AA_B", "AB"),  # repeats collapse
        ("A_A", "AA"),  # blank separates a real double letter
        ("aB", "AB"),  # lower case folds to upper case
        ("A-B", "AB"),  # separators vanish
        ("A~1", "A1"),  # spaces vanish
        ("中01", "01"),  # other scripts vanish
        ("1-1", "11"),  # a separator between equal chars does not merge them
        ("____", ""),
    ],
)
def test_decode_table(path: str, text: str) -> None:
    (result,) = greedy_decode(fold(probs_for(path), MATRIX), "01AB")
    assert result.text == text
    assert len(result.char_confidences) == len(text)
    assert 0.0 <= result.confidence <= 1.0


def test_case_probabilities_add_up() -> None:
    p = np.zeros((1, 1, len(SYMBOLS)), np.float32)
    p[0, 0, SYMBOLS.index("a")] = 0.3
    p[0, 0, SYMBOLS.index("A")] = 0.3
    p[0, 0, SYMBOLS.index("1")] = 0.4
    (result,) = greedy_decode(fold(p, MATRIX), "01AB")
    assert result.text == "A" and result.confidence == pytest.approx(0.6)


def test_fold_rejects_wrong_width() -> None:
    with pytest.raises(InputError, match="probabilities"):
        fold(np.zeros((1, 3, 5), np.float32), MATRIX)


def test_alphabet_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        folding_matrix(SYMBOLS, "AA")


def steps(*dists: dict[str, float]) -> np.ndarray:
    """Folded probabilities [1, T, 1 + 4] over "01AB"; ``_`` is the blank, the rest of
    each step's mass goes to the blank."""
    cols = {"_": 0, "0": 1, "1": 2, "A": 3, "B": 4}
    p = np.zeros((1, len(dists), 5), np.float32)
    for t, d in enumerate(dists):
        for ch, v in d.items():
            p[0, t, cols[ch]] = v
        p[0, t, 0] += 1.0 - sum(d.values())
    return p


@pytest.mark.parametrize(
    ("folded", "text", "alts", "alt_confs"),
    [
        (steps({"A": 0.6, "1": 0.3}), "A", "1", (0.3,)),
        (steps({"A": 0.6, "B": 0.05}), "A", "B", (0.05,)),  # the blank (0.35) is never one
        # a run of two steps: the runner-up is taken where A peaks (step 2), not step 1
        (steps({"A": 0.5, "B": 0.4}, {"A": 0.8, "1": 0.15}), "A", "1", (0.15,)),
        (steps({"A": 0.9, "0": 0.05}, {"_": 1.0}, {"B": 0.7, "0": 0.2}), "AB", "00", (0.05, 0.2)),
        (steps({"_": 1.0}), "", "", ()),
    ],
)  # fmt: skip
def test_decode_reports_runner_up_at_peak(
    folded: np.ndarray, text: str, alts: str, alt_confs: tuple[float, ...]
) -> None:
    (result,) = greedy_decode(folded, "01AB")
    assert result.text == text and result.alternatives == alts
    assert result.alt_confidences == pytest.approx(alt_confs)
    assert len(result.char_confidences) == len(result.alt_confidences) == len(text)


def test_runner_up_with_a_one_symbol_alphabet() -> None:
    folded = np.array([[[0.1, 0.9]]], np.float32)
    (result,) = greedy_decode(folded, "A")
    assert (result.text, result.alternatives, result.alt_confidences) == ("A", "A", (0.0,))
