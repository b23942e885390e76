"""Engines chosen by a typed parameter's literal: one registry per choice, no if/elif.

Each registry maps a literal of :mod:`ensemble.params` (``ReaderName``, ``PlateEngine``,
``Refiner``) to the function that builds that engine; adding an engine is registering
it here and adding its name to the literal (``tests/test_model_params.py`` checks that
the two agree).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from .contracts import PLATE_OCR
from .engines import (
    REFINE_PARAMS,
    FusedReader,
    PlateCtcReader,
    PlateProposer,
    PlateReader,
    Proposer,
    Reader,
    YoloPlateProposer,
)
from .params import (
    PlateDetectorParams,
    PlateEngine,
    PlateOcrParams,
    ReaderName,
    Refiner,
    parse_params,
)

log = logging.getLogger("ovr_alpr.registry")

# --- plate_ocr: the recogniser ------------------------------------------------------
ReaderBuilder = Callable[[Path, PlateOcrParams], Reader]


def ppocr_reader(vdir: Path, p: PlateOcrParams) -> PlateReader:
    """PP-OCRv6 rec (``rec_file``) with CTC decoding folded onto the plate alphabet."""
    return PlateReader(vdir / p.rec_file, threads=p.threads, alphabet=p.alphabet)


def plate_reader(vdir: Path, p: PlateOcrParams) -> PlateCtcReader:
    """OVR-ALPR's plate-trained CTC model (``plate_file``); its alphabet must be the config's."""
    path = vdir / p.plate_file
    plate = PlateCtcReader(path, threads=p.threads)
    if plate.alphabet != p.alphabet:
        raise ValueError(
            f"plate_ocr: {path.name} reads the alphabet {plate.alphabet!r}, the config "
            f"asks for {p.alphabet!r}; retrain with that alphabet or change the config"
        )
    return plate


def fused_reader(vdir: Path, p: PlateOcrParams) -> FusedReader | PlateReader:
    """Both on every crop, fused per crop (:func:`ensemble.engines.fuse`); PP-OCR alone,
    with a warning, while the plate model is not provisioned."""
    plate_path = vdir / p.plate_file
    if not plate_path.is_file():
        log.warning("plate_ocr: %s missing (run `alpr-models fetch`); serving PP-OCR", plate_path)
        return ppocr_reader(vdir, p)
    ppocr = ppocr_reader(vdir, p)
    return FusedReader(plate_reader(vdir, p), ppocr, p.fuse_ppocr_weight)


READERS: dict[ReaderName, ReaderBuilder] = {
    "fused": fused_reader,
    "plate": plate_reader,
    "ppocr": ppocr_reader,
}


def build_reader(
    vdir: Path, params: PlateOcrParams | Mapping[str, str], threads: int | None = None
) -> Reader:
    """The recogniser ``params.reader`` names, its files in ``vdir``. String parameters
    are validated first (with ``OVR_ALPR_PLATE_READER`` applied); ``threads`` overrides
    ``intra_op_threads``."""
    if not isinstance(params, PlateOcrParams):
        params = parse_params(PlateOcrParams, PLATE_OCR, params)
    if threads is not None:
        params = params.model_copy(update={"intra_op_threads": threads})
    return READERS[params.reader](vdir, params)


# --- plate_detector: the plate proposer ----------------------------------------------
ProposerBuilder = Callable[[Path, PlateDetectorParams], PlateProposer | YoloPlateProposer]
RefinerBuilder = Callable[[PlateProposer], Proposer | None]

REFINERS: dict[Refiner, RefinerBuilder] = {
    "ppocr": lambda text: text.with_params(REFINE_PARAMS),
    "none": lambda text: None,
}


def ppocr_proposer(vdir: Path, p: PlateDetectorParams) -> PlateProposer:
    """The PP-OCR text detector (``det_file``) alone proposes plate regions."""
    return PlateProposer(vdir / p.det_file, threads=p.threads)


def yolo_proposer(vdir: Path, p: PlateDetectorParams) -> YoloPlateProposer:
    """The YOLO plate model (``yolo_file``), refined by ``refine``, with the PP-OCR
    proposer as the fallback up to ``fallback_max_side`` (one PP-OCR session, two uses)."""
    text = ppocr_proposer(vdir, p)
    return YoloPlateProposer(
        vdir / p.yolo_file,
        threads=p.threads,
        score_threshold=p.score_threshold,
        refine=REFINERS[p.refine](text),
        min_size=p.yolo_min_size,
        max_size=p.yolo_max_size,
        fallback=text if p.fallback_max_side else None,
        fallback_max_side=p.fallback_max_side,
        keep_box=p.keep_box,
    )


PLATE_ENGINES: dict[PlateEngine, ProposerBuilder] = {
    "yolo": yolo_proposer,
    "ppocr": ppocr_proposer,
}


def plate_engine(vdir: Path, p: PlateDetectorParams) -> PlateEngine:
    """``engine``, with ``auto`` resolved: yolo when ``yolo_file`` is provisioned."""
    if p.engine != "auto":
        return p.engine
    return "yolo" if (vdir / p.yolo_file).is_file() else "ppocr"


def build_proposer(vdir: Path, p: PlateDetectorParams) -> PlateProposer | YoloPlateProposer:
    return PLATE_ENGINES[plate_engine(vdir, p)](vdir, p)
