"""CTC decoding of the PP-OCR recogniser, constrained to a plate alphabet.

The recogniser scores ~18.7k symbols. Plates use a small alphabet, so its probabilities
are folded onto that alphabet before decoding: upper and lower case of a letter add up,
every symbol outside the alphabet (punctuation, spaces, other scripts) joins the CTC
blank, so separators and plate-frame marks vanish instead of becoming wrong letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .contracts import PLATE_ALPHABET, InputError


@dataclass(frozen=True)
class CtcResult:
    text: str
    confidence: float
    char_confidences: tuple[float, ...]


def recogniser_symbols(character_metadata: str) -> list[str]:
    """PaddleOCR's symbol list: blank, the dictionary, then the space symbol."""
    return ["<blank>", *character_metadata.split("\n"), " "]


def folding_matrix(symbols: Sequence[str], alphabet: str = PLATE_ALPHABET) -> np.ndarray:
    """[len(symbols), 1 + len(alphabet)] 0/1 matrix; column 0 is the blank."""
    if len(set(alphabet)) != len(alphabet) or not alphabet:
        raise ValueError(f"alphabet must be non-empty with unique symbols, got {alphabet!r}")
    col = {ch: i + 1 for i, ch in enumerate(alphabet)}
    m = np.zeros((len(symbols), 1 + len(alphabet)), np.float32)
    for i, sym in enumerate(symbols):
        target = col.get(sym)
        if target is None and len(sym) == 1:
            target = col.get(sym.upper())
        m[i, target if target is not None else 0] = 1.0
    return m


def fold(probs: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[N, T, C] symbol probabilities -> [N, T, 1 + |alphabet|]."""
    if probs.ndim != 3 or probs.shape[2] != matrix.shape[0]:
        raise InputError(f"expected [N, T, {matrix.shape[0]}] probabilities, got {probs.shape}")
    return probs @ matrix


def greedy_decode(folded: np.ndarray, alphabet: str = PLATE_ALPHABET) -> list[CtcResult]:
    """Best-path CTC decoding of folded probabilities [N, T, 1 + |alphabet|]."""
    best = folded.argmax(axis=2)
    prob = folded.max(axis=2)
    results = []
    for idx, p in zip(best, prob, strict=True):
        keep = np.ones(len(idx), bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        chars = "".join(alphabet[i - 1] for i in idx[keep])
        confs = tuple(float(c) for c in p[keep])
        conf = float(np.mean(confs)) if confs else 0.0
        results.append(CtcResult(chars, conf, confs))
    return results
