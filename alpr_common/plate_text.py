"""Text normalisation for plate reads: upper-case ASCII letters and digits only.

Plates are compared and stored without separators, so ``"ab-12 cde"`` and ``"AB12CDE"`` are
the same plate. Compatibility forms are folded first (NFKC: full-width ``"Ａ１"`` becomes
``"A1"``), Cyrillic and Greek capitals that are drawn like Latin ones are mapped to them
(recognisers trained on mixed data emit them for the same glyph), and everything else
outside A-Z0-9 is dropped: separators, accented letters (``"ö"``), symbols.
"""

from __future__ import annotations

import unicodedata

__all__ = ["fold_lookalikes", "normalize"]

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

# Cyrillic and Greek capitals with a Latin twin of the same shape on plates.
_HOMOGLYPHS = {
    **dict(zip("АВЕКМНОРСТУХ", "ABEKMHOPCTYX", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
}

# Letters and digits a recogniser confuses, folded to one symbol (used for similarity).
_FOLD = str.maketrans("OQDILSBZGAT", "00011582647")


def normalize(text: str) -> str:
    """Upper-case ``text`` and keep only A-Z and 0-9 (see the module docstring)."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        up = ch.upper()
        if len(up) != 1:  # "ß" -> "SS": not a plate character, drop it
            continue
        up = _HOMOGLYPHS.get(up, up)
        if up in _ALNUM:
            out.append(up)
    return "".join(out)


def fold_lookalikes(text: str) -> str:
    """Map look-alike letters to their digit (O/Q/D->0, I/L->1, S->5, B->8, Z->2, G->6,
    A->4, T->7) so reads that differ only by such confusions compare equal."""
    return text.translate(_FOLD)
