"""CTC decoding of the PP-OCR recogniser, constrained to a plate alphabet.

The recogniser scores ~18.7k symbols. Plates use a small alphabet, so its probabilities
are folded onto that alphabet before decoding: upper and lower case of a letter add up,
every symbol outside the alphabet (punctuation, spaces, other scripts) joins the CTC
blank, so separators and plate-frame marks vanish instead of becoming wrong letters.

Besides the best path, decoding reports for every output character its runner-up: the most
probable other character of the alphabet (never the blank) at the time step where that
character peaks, with its probability. Clients rescore plates with these (top-k
substitutions checked against regional formats, ``edge_client.plates.formats.rescore``).
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
    alternatives: str = ""  # per character, the runner-up character at its peak
    alt_confidences: tuple[float, ...] = ()  # ... and its probability there


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


def runner_up(folded_t: np.ndarray, chosen: int) -> tuple[int, float]:
    """The most probable alphabet column at one time step other than ``chosen`` and the
    blank (column 0): (column, probability); (chosen, 0.0) when there is none."""
    if folded_t.shape[0] < 3:
        return chosen, 0.0
    row = folded_t.astype(np.float64, copy=True)
    row[0] = row[chosen] = -1.0
    alt = int(row.argmax())
    return alt, float(folded_t[alt])


def greedy_decode(folded: np.ndarray, alphabet: str = PLATE_ALPHABET) -> list[CtcResult]:
    """Best-path CTC decoding of folded probabilities [N, T, 1 + |alphabet|].

    A character's confidence is its probability at the first step of its run (as before);
    its runner-up comes from the step of the run where the character is most probable."""
    best = folded.argmax(axis=2)
    prob = folded.max(axis=2)
    results = []
    for row, idx, p in zip(folded, best, prob, strict=True):
        keep = np.ones(len(idx), bool)
        keep[1:] = idx[1:] != idx[:-1]
        starts = np.flatnonzero(keep)
        ends = [*starts[1:], len(idx)]
        chars, confs, alts, alt_confs = [], [], [], []
        for start, end in zip(starts, ends, strict=True):
            col = int(idx[start])
            if col == 0:
                continue
            peak = start + int(p[start:end].argmax())
            alt, alt_p = runner_up(row[peak], col)
            chars.append(alphabet[col - 1])
            confs.append(float(p[start]))
            alts.append(alphabet[alt - 1])
            alt_confs.append(alt_p)
        conf = float(np.mean(confs)) if confs else 0.0
        results.append(
            CtcResult("".join(chars), conf, tuple(confs), "".join(alts), tuple(alt_confs))
        )
    return results
