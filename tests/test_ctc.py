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
