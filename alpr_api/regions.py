"""Plate Recognizer's region codes <-> this project's plate-format regions.

Plate Recognizer names a region by ISO 3166 country code, a US state after a dash
(``us-ca``); ``plate_formats.yaml`` has four regions: ``uk``, ``us``, ``br`` and ``eu``
(European countries together, each format named after the countries that issue it, e.g.
``fr_it_sk``). A requested code maps to the region holding its formats; a code with none
(``au``, ``th``...) is a guide the reader cannot follow and is ignored, as Plate
Recognizer ignores a template the plate does not fit. Back the other way, a plate's code
comes from its format: ``uk`` -> ``gb``, ``us_ca`` -> ``us-ca``, a European format -> the
country it names (the requested one when it names several), a region-wide generic
format -> the region's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["EUROPE", "plate_recognizer_code", "project_regions"]

EUROPE = frozenset(
    ["ad", "al", "at", "ba", "be", "bg", "by", "ch", "cy", "cz", "de", "dk", "ee", "es", "fi",
     "fr", "gr", "hr", "hu", "ie", "is", "it", "li", "lt", "lu", "lv", "mc", "md", "me", "mk",
     "mt", "nl", "no", "pl", "pt", "ro", "rs", "se", "si", "sk", "sm", "ua", "va", "xk"]
)  # fmt: skip
"""European country codes: their plates are the ``eu`` region's formats."""

_REGION_OF = {"gb": "uk", "uk": "uk", "us": "us", "br": "br", "eu": "eu"}
_CODE_OF = {"uk": "gb"}  # project region -> Plate Recognizer code, where they differ
_STATE_FORMATS = {"us_ca": "us-ca"}  # formats of one US state


def _country(code: str) -> str:
    return code.strip().lower().split("-", 1)[0]


def project_regions(codes: Iterable[str], available: Iterable[str]) -> list[str]:
    """The project regions of Plate Recognizer ``codes`` (``gb``, ``fr``, ``us-ca``; the
    project's own names too), in order, without repeats; codes of regions not in
    ``available`` are dropped."""
    have = set(available)
    out: list[str] = []
    for code in codes:
        country = _country(code)
        region = _REGION_OF.get(country) or ("eu" if country in EUROPE else country)
        if region in have and region not in out:
            out.append(region)
    return out


def plate_recognizer_code(
    region: str | None, format_name: str | None, requested: Sequence[str] = ()
) -> str:
    """The Plate Recognizer code of a plate that fits ``format_name`` of ``region``
    (``""`` when no format fits). ``requested``: the request's codes, preferred among
    the countries a shared European format names."""
    if region is None:
        return ""
    if format_name in _STATE_FORMATS:
        return _STATE_FORMATS[format_name]
    if region == "eu" and format_name:
        named = [t for t in format_name.split("_") if t in EUROPE]
        wanted = [c for c in map(_country, requested) if c in named]
        if wanted or named:
            return (wanted or named)[0]
    return _CODE_OF.get(region, region)
