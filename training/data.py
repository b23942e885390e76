"""Labelled plate crops for training: loading, validation, a fixed split.

A data set is a folder of plate images plus a CSV (``labels.csv`` by default) with a
``file`` column and a ``plate`` column (other columns, e.g. ``state``, are kept as
metadata). Every row is checked before any training starts, and a bad row is an error
that names the file and the line: a missing or undecodable image, an empty label, a
character outside the alphabet. Separators (spaces, dashes, dots) are dropped and letters
upper-cased first, since plates are read without them.

The validation split is fixed by the plate text, not by the file: ``is_validation`` hashes
the normalised plate (sha1), so every crop of one plate falls on the same side, on every
machine, whatever order the files are listed in.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SEPARATORS = re.compile(r"[\s\-_.·]+")


class DataError(ValueError):
    """Unusable training data; the message names the file (and line) to fix."""


@dataclass(frozen=True)
class Sample:
    path: Path
    text: str
    source: str  # data set name
    meta: dict[str, str] = field(default_factory=dict)


def normalise_label(raw: str) -> str:
    return SEPARATORS.sub("", raw).upper()


def is_validation(text: str, percent: int) -> bool:
    """Whether the plate ``text`` belongs to the validation split (``percent`` of plates)."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100 < percent


def read_image(path: Path) -> np.ndarray:
    """BGR pixels of ``path``, or DataError naming it (missing, empty, undecodable)."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    data = np.fromfile(str(path), np.uint8)
    if data.size == 0:
        raise DataError(f"{path}: image file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise DataError(f"{path}: not a decodable image (corrupt or unknown format)")
    if min(img.shape[:2]) < 4:
        raise DataError(f"{path}: image too small ({img.shape[1]}x{img.shape[0]} px)")
    return img


def load_dataset(
    folder: Path,
    alphabet: str,
    *,
    labels: str = "labels.csv",
    name: str | None = None,
    check_images: bool = True,
    max_length: int = 16,
) -> list[Sample]:
    """Every labelled crop of ``folder`` (see the module docstring), validated."""
    csv_path = folder / labels
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: label file not found")
    name = name or folder.name
    allowed = set(alphabet)
    out: list[Sample] = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "file" not in cols or "plate" not in cols:
            raise DataError(
                f"{csv_path}: needs a header with 'file' and 'plate' columns, "
                f"got {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            file = (row.get(cols["file"]) or "").strip()
            where = f"{csv_path}:{line} ({file or 'no file name'})"
            if not file:
                raise DataError(f"{where}: empty file name")
            text = normalise_label(row.get(cols["plate"]) or "")
            if not text:
                raise DataError(f"{where}: empty plate label")
            bad = sorted({c for c in text if c not in allowed})
            if bad:
                raise DataError(
                    f"{where}: label {text!r} has characters outside the alphabet: {bad}"
                )
            if len(text) > max_length:
                raise DataError(f"{where}: label {text!r} longer than {max_length} characters")
            path = folder / file
            if check_images:
                try:
                    read_image(path)
                except DataError as exc:
                    reason = str(exc).removeprefix(f"{path}: ")
                    raise DataError(f"{where}: {reason}") from None
            meta = {k: str(v) for k, v in row.items() if k not in (cols["file"], cols["plate"])}
            out.append(Sample(path, text, name, meta))
    if not out:
        raise DataError(f"{csv_path}: no labelled rows")
    return out


def split(samples: Iterable[Sample], percent: int) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) by :func:`is_validation` of each sample's plate text."""
    train: list[Sample] = []
    val: list[Sample] = []
    for s in samples:
        (val if is_validation(s.text, percent) else train).append(s)
    return train, val
