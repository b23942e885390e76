"""Reading the plates of a whole photo through Triton, as ``alpr-evaluate`` does.

``read_photo`` (edge_client.tools.evaluate) gives every plate candidate: vehicle crops
first, the whole photo when no crop gave a sure plate (``cascade``). ``find_plates`` then
groups the candidates by place (a plate read in its vehicle crop and in the whole photo is
one plate; ``on_plate``: overlapping boxes, or one box's centre inside the other) and
decides each group as the evaluator decides a photo (``decide``: the edge client's choice,
top-k rescoring, voting and regional-format correction). Nothing here reads characters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

import numpy as np

from alpr_common.plate_text import normalize
from edge_client.plates.formats import PlateFormat, select
from edge_client.tools.evaluate import decide, on_plate, read_photo
from edge_client.triton_client import AlprClient, InferenceError, TritonEndpoint
from ensemble.contracts import Box, Detection, PlateRead
from ensemble.plates import ranked

from .config import Reading, TritonSection
from .contracts import FoundPlate, PhotoReading, TritonFailed, TritonUnavailable

__all__ = ["MAX_CANDIDATES", "TritonPhotoReader", "find_plates", "group_reads", "vehicle_of"]

MAX_CANDIDATES = 5  # texts listed per plate (Plate Recognizer's ``candidates``)


def group_reads(reads: Sequence[PlateRead]) -> list[list[PlateRead]]:
    """The plate-like candidates (``ranked``) grouped by place, best first: a candidate
    joins the first group whose best read lies on it (``on_plate``)."""
    groups: list[list[PlateRead]] = []
    for _, read in ranked(reads):
        home = next((g for g in groups if on_plate(read.box, g[0].box)), None)
        if home is None:
            groups.append([read])
        else:
            home.append(read)
    return groups


def vehicle_of(box: Box, vehicles: Sequence[Detection]) -> Detection | None:
    """The smallest vehicle box holding ``box``'s centre (None: none does)."""
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    holding = [v for v in vehicles if v.box.x1 <= cx <= v.box.x2 and v.box.y1 <= cy <= v.box.y2]
    return min(holding, key=lambda v: v.box.width * v.box.height, default=None)


def find_plates(
    reads: Sequence[PlateRead],
    formats: Sequence[PlateFormat],
    *,
    require_format: bool = False,
    vehicles: Sequence[Detection] = (),
) -> list[FoundPlate]:
    """The plates among one photo's candidates (see the module docstring), most confident
    first; one per text (the surer one). A group whose decision is no plate (nothing
    plate-like, shorter than 4 characters) or, with ``require_format``, that fits no
    format, is left out."""
    weights: dict[tuple[str | None, str | None], float] = {
        (f.region, f.name): f.weight for f in formats
    }
    found: dict[str, FoundPlate] = {}
    for group in group_reads(reads):
        result, best = decide(group, formats)
        if result is None or best is None:
            continue
        if require_format and result.format is None:
            continue
        texts = [(result.plate, result.confidence)]
        for r in sorted(group, key=lambda r: -r.confidence):
            text = normalize(r.text)
            if text and all(text != t for t, _ in texts):
                texts.append((text, r.confidence))
        plate = FoundPlate(
            result.plate, result.raw_text, result.confidence, best.box, best.det_score,
            result.region, result.format, weights.get((result.region, result.format), 0.0),
            tuple(texts[:MAX_CANDIDATES]), vehicle_of(best.box, vehicles),
        )  # fmt: skip
        if plate.plate not in found or found[plate.plate].confidence < plate.confidence:
            found[plate.plate] = plate
    return sorted(found.values(), key=lambda p: -p.confidence)


class _Watched:
    """Passes ``read_photo``'s two calls to the client, keeping the vehicles it detected
    and the time spent waiting for Triton (one per request: no shared state)."""

    def __init__(self, client: AlprClient) -> None:
        self.client = client
        self.vehicles: list[Detection] = []
        self.seconds = 0.0

    def detect_vehicles(self, frames_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        t0 = time.perf_counter()
        try:
            out = self.client.detect_vehicles(frames_bgr)
        finally:
            self.seconds += time.perf_counter() - t0
        self.vehicles = out[0] if out else []
        return out

    def read_plates(self, images: Sequence[bytes]) -> list[list[PlateRead]]:
        t0 = time.perf_counter()
        try:
            return self.client.read_plates(images)
        finally:
            self.seconds += time.perf_counter() - t0


class TritonPhotoReader:
    """``PhotoReader`` over a Triton server (or several, in failover order)."""

    def __init__(
        self, triton: TritonSection, reading: Reading, formats: dict[str, list[PlateFormat]]
    ) -> None:
        endpoint = TritonEndpoint(triton.urls[0], triton.timeout_s, tuple(triton.urls[1:]))
        self.client = AlprClient(endpoint)
        self.reading = reading
        self.formats = formats

    def close(self) -> None:
        self.client.close()

    def ready(self) -> bool:
        return self.client.ready()

    def read(self, data: bytes, frame: np.ndarray, regions: Sequence[str]) -> PhotoReading:
        formats = select(self.formats, regions)
        cfg = self.reading
        watched = _Watched(self.client)
        try:
            reads = read_photo(
                cast(AlprClient, watched), data, frame, cfg.max_vehicles, formats, cfg.cascade
            )
        except InferenceError as exc:
            if not self.client.ready():
                raise TritonUnavailable(
                    f"the inference server (Triton at {', '.join(self.client.urls)}) is not "
                    "reachable; try again later"
                ) from exc
            raise TritonFailed(f"the inference server failed the request: {exc}") from exc
        plates = find_plates(
            reads, formats, require_format=cfg.require_format,
            vehicles=watched.vehicles[: cfg.max_vehicles],
        )  # fmt: skip
        return PhotoReading(tuple(plates), 1000 * watched.seconds)
