"""The three networks behind a small interface, run in-process with onnxruntime.

Triton's ``model.py`` files and the in-process benchmark ceiling both use these classes,
so the server and the ceiling run exactly the same code.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from . import ctc, plate_rec, text_det, yolo
from .contracts import (
    COCO_VEHICLE_CLASSES,
    DET_SIZE,
    MAX_DETECTIONS,
    MAX_PLATES,
    PLATE_ALPHABET,
    REC_HEIGHT,
    REC_WIDTH,
    InputError,
)
from .preprocess import Letterbox, letterbox, rec_crop, rec_crop_lines, rec_input

RawNet = Callable[[np.ndarray], np.ndarray]  # float32 [B, 3, S, S] -> [B, 4 + classes, anchors]


class ModelFileMissingError(FileNotFoundError):
    """Weights are not provisioned; tells the user which command provisions them."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"model weights not found at {path}; run `alpr-models fetch` first")


def session(path: Path, threads: int | None = None, arena: bool = True) -> ort.InferenceSession:
    """An onnxruntime CPU session: ``threads`` intra-op threads (None: the default),
    no spinning, ``arena``: onnxruntime's CPU memory arena (``OVR_ALPR_ORT_ARENA`` 0 / 1
    overrides)."""
    if not path.is_file():
        raise ModelFileMissingError(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or int(os.environ.get("OVR_ALPR_ORT_THREADS", "0")) or 0
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several models share the CPU in one server (each Python-backend model is its own
    # process): spinning worker threads would burn the cores the other models need.
    spin = os.environ.get("OVR_ALPR_ORT_SPIN", "0")
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    arena_env = os.environ.get("OVR_ALPR_ORT_ARENA", "")
    opts.enable_cpu_mem_arena = arena if arena_env not in ("0", "1") else arena_env == "1"
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class VehicleDetector:
    """YOLO (COCO) on fixed 640x640 letterboxed RGB frames; keeps vehicle classes."""

    def __init__(
        self,
        path: Path | None,
        *,
        threads: int | None = None,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        classes: Sequence[int] = tuple(COCO_VEHICLE_CLASSES),
        agnostic_nms: bool = True,
        net: RawNet | None = None,
        input_size: int = DET_SIZE,
        arena: bool = True,
    ) -> None:
        """Run the network from ``path`` with onnxruntime, or through ``net`` (e.g. a
        TensorRT engine served by Triton and called over BLS)."""
        self.input_size = input_size
        self.fixed_size = net is not None  # False: the ONNX network takes any input side
        if net is None:
            if path is None:
                raise ValueError("VehicleDetector needs an ONNX path or a net callable")
            sess = session(path, threads, arena)
            name = sess.get_inputs()[0].name
            shape = sess.get_inputs()[0].shape
            self.fixed_size = isinstance(shape[2], int)
            self.input_size = shape[2] if isinstance(shape[2], int) else input_size

            def net(x: np.ndarray) -> np.ndarray:
                out: np.ndarray = sess.run(None, {name: x})[0]
                return out

        self.net = net
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.classes = list(classes)
        self.agnostic_nms = agnostic_nms

    def raw(self, images_rgb: np.ndarray) -> np.ndarray:
        return self.net(yolo.yolo_input(images_rgb))

    def detect(
        self, images_rgb: np.ndarray, source_hw: Sequence[tuple[int, int] | None]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batch of letterboxed frames -> per frame (boxes xyxy in source px, scores, classes)."""
        raw = self.raw(images_rgb)
        size = images_rgb.shape[1]
        results = []
        for out, hw in zip(raw, source_hw, strict=True):
            boxes, scores, classes = yolo.yolo_postprocess(
                out,
                keep_classes=self.classes,
                score_threshold=self.score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=MAX_DETECTIONS,
                agnostic=self.agnostic_nms,
            )
            if hw is not None:
                boxes = Letterbox.for_size(hw[0], hw[1], size).to_source(boxes, hw[0], hw[1])
            results.append((boxes, scores, classes))
        return results


class Proposer(Protocol):
    """Plate candidates per image (what ``plate_detector`` serves)."""

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]: ...


class PlateProposer:
    """PP-OCR DB text detector proposing plate regions in a vehicle crop or frame."""

    def __init__(
        self, path: Path, *, threads: int | None = None, params: text_det.DBParams | None = None
    ) -> None:
        self.sess = session(path, threads)
        self.input_name = self.sess.get_inputs()[0].name
        self.params = params or text_det.DBParams()

    def with_params(self, params: text_det.DBParams) -> PlateProposer:
        """The same network (one session) with other post-processing knobs."""
        other = copy.copy(self)
        other.params = params
        return other

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        """Per image its plate candidates; images of equal resized shape share a run."""
        prepared = [text_det.det_resize(im, self.params) for im in images_bgr]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (resized, _, _) in enumerate(prepared):
            groups.setdefault(resized.shape, []).append(i)
        probs: list[np.ndarray | None] = [None] * len(images_bgr)
        for idxs in groups.values():
            batch = np.concatenate([text_det.det_input(prepared[i][0]) for i in idxs])
            out = self.sess.run(None, {self.input_name: batch})[0]
            for j, i in enumerate(idxs):
                probs[i] = out[j, 0]
        results = []
        for image, (_, sy, sx), prob in zip(images_bgr, prepared, probs, strict=True):
            assert prob is not None
            quads, scores = text_det.db_boxes(prob, self.params, sy, sx)
            results.append(
                text_det.plate_candidates(
                    quads, scores, self.params, (image.shape[0], image.shape[1]), MAX_PLATES
                )
            )
        return results


def yolo_size(height: int, width: int, min_size: int, max_size: int) -> int:
    """Square YOLO input side for an image: its long side rounded up to a multiple of 32,
    within [min_size, max_size] (a small vehicle crop is not blown up past ``min_size``,
    a large frame is not read above ``max_size``)."""
    side = -(-max(height, width) // 32) * 32
    return int(min(max_size, max(min_size, side)))


def expand_box(box: np.ndarray, hw: tuple[int, int], mx: float, my: float) -> np.ndarray:
    """xyxy ``box`` grown by ``mx`` of its width and ``my`` of its height on each side,
    clipped to the image (integers)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = mx * (x2 - x1), my * (y2 - y1)
    h, w = hw
    return np.array(
        [max(0, int(x1 - dx)), max(0, int(y1 - dy)), min(w, int(np.ceil(x2 + dx))),
         min(h, int(np.ceil(y2 + dy)))], np.int64,
    )  # fmt: skip


# The PP-OCR detector run inside a YOLO plate box: the crop is scaled to at least this
# short side (and at most this long side), so its text lines come out tight and level.
REFINE_PARAMS = text_det.DBParams(limit_side=480, min_side=96, min_height=6.0)


class YoloPlateProposer:
    """A YOLO licence-plate detector (single class) locating plates, optionally refined by
    the PP-OCR text detector inside each plate box.

    YOLO boxes are loose (they include the plate's frame and margins) and axis-aligned;
    a recogniser reads best from a tight, level text line. With ``refine`` (a
    :class:`PlateProposer`), each box, grown by ``margin``, is searched for text lines
    (fragments joined, two stacked rows paired, tilt kept) and those become the
    candidates, best first (with ``keep_box``, followed by the YOLO box itself; the box is
    read anyway when no line is found). A line that runs into the left or right side of
    its region (a YOLO box around only part of a long plate) is looked for again in the
    region grown by ``grow`` of its width on that side. Candidates of a better YOLO box
    come first; at most ``MAX_PLATES`` per image.

    With ``fallback`` (e.g. the PP-OCR proposer), an image in which YOLO finds no plate
    and whose long side is at most ``fallback_max_side`` (a vehicle crop or a photo sent
    to be read, not a camera frame scanned for plates, which is mostly empty) gets the
    fallback's candidates instead: a plate style the YOLO model never saw is still read.

    The network may have a dynamic input side (an Ultralytics export with
    ``dynamic=True``): each image is then letterboxed to :func:`yolo_size`; a fixed-size
    network (or a ``net`` callable, e.g. a TensorRT engine over BLS) gets its own size.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        threads: int | None = None,
        score_threshold: float = 0.25,
        refine: Proposer | None = None,
        net: RawNet | None = None,
        min_size: int = 320,
        max_size: int = DET_SIZE,
        margin: tuple[float, float] = (0.08, 0.25),
        lines_per_plate: int = 2,
        keep_box: bool = False,
        grow: float = 0.5,
        fallback: Proposer | None = None,
        fallback_max_side: int = 1024,
    ) -> None:
        self.detector = VehicleDetector(
            path, threads=threads, score_threshold=score_threshold, classes=(0,), net=net
        )
        self.refine = refine
        self.min_size, self.max_size = min_size, max_size
        self.margin = margin
        self.lines_per_plate = lines_per_plate
        self.keep_box = keep_box
        self.grow = grow
        self.fallback, self.fallback_max_side = fallback, fallback_max_side

    def locate(self, images_bgr: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image the YOLO plate boxes (xyxy, source px) and scores, best first; images
        of equal input side share a run."""
        det = self.detector
        sizes = [
            det.input_size if det.fixed_size
            else yolo_size(im.shape[0], im.shape[1], self.min_size, self.max_size)
            for im in images_bgr
        ]  # fmt: skip
        out: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
        ] * len(images_bgr)
        for size in sorted(set(sizes)):
            idxs = [i for i, s in enumerate(sizes) if s == size]
            boxed = np.stack([letterbox(images_bgr[i][..., ::-1], size)[0] for i in idxs])
            hws: list[tuple[int, int] | None] = [
                (images_bgr[i].shape[0], images_bgr[i].shape[1]) for i in idxs
            ]
            for i, (boxes, scores, _) in zip(idxs, self.detector.detect(boxed, hws), strict=True):
                out[i] = (boxes[:MAX_PLATES], scores[:MAX_PLATES])
        return out

    def _lines(
        self, images_bgr: Sequence[np.ndarray], regions: dict[tuple[int, int], np.ndarray]
    ) -> dict[tuple[int, int], text_det.Proposals]:
        """Text lines found by ``refine`` in each region (x1, y1, x2, y2) of image ``i``,
        keyed ``(i, k)``, in image coordinates; regions under 4 px are skipped."""
        keys = [key for key, (x1, y1, x2, y2) in regions.items() if x2 - x1 >= 4 and y2 - y1 >= 4]
        crops = []
        for i, k in keys:
            x1, y1, x2, y2 = regions[(i, k)]
            crops.append(images_bgr[i][y1:y2, x1:x2])
        assert self.refine is not None
        found = self.refine.propose_many(crops) if crops else []
        return {
            key: props.first(self.lines_per_plate).shifted(*regions[key][:2])
            for key, props in zip(keys, found, strict=True)
        }

    def _widened(
        self, lines: text_det.Proposals, region: np.ndarray, hw: tuple[int, int]
    ) -> np.ndarray | None:
        """``region`` grown by ``grow`` of its width on each side that a line runs into
        (a YOLO box may hold only part of a long plate), or None when no line touches a
        side that can grow."""
        x1, y1, x2, y2 = (int(v) for v in region)
        if not len(lines):
            return None
        left = float(lines.quads[..., 0].min()) <= x1 + 1 and x1 > 0
        right = float(lines.quads[..., 0].max()) >= x2 - 2 and x2 < hw[1]
        if not (left or right):
            return None
        d = round(self.grow * (x2 - x1))
        x1, x2 = (max(0, x1 - d) if left else x1), (min(hw[1], x2 + d) if right else x2)
        return np.array([x1, y1, x2, y2])

    def propose_many(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        out = self._propose(images_bgr)
        if self.fallback is not None:
            blind = [
                i for i, (props, im) in enumerate(zip(out, images_bgr, strict=True))
                if not len(props) and max(im.shape[:2]) <= self.fallback_max_side
            ]  # fmt: skip
            if blind:
                found = self.fallback.propose_many([images_bgr[i] for i in blind])
                for i, props in zip(blind, found, strict=True):
                    out[i] = props
        return out

    def _propose(self, images_bgr: Sequence[np.ndarray]) -> list[text_det.Proposals]:
        located = self.locate(images_bgr)
        if self.refine is None:
            return [text_det.Proposals.single(text_det.box_quads(b), s) for b, s in located]
        hws = [(im.shape[0], im.shape[1]) for im in images_bgr]
        regions = {
            (i, k): expand_box(box, hws[i], *self.margin)
            for i, (boxes, _) in enumerate(located)
            for k, box in enumerate(boxes)
        }
        lines = self._lines(images_bgr, regions)
        wider = {
            key: self._widened(found, regions[key], hws[key[0]]) for key, found in lines.items()
        }
        retry = {key: region for key, region in wider.items() if region is not None}
        lines.update({k: v for k, v in self._lines(images_bgr, retry).items() if len(v)})
        none = text_det.Proposals.concat([])
        out = []
        for i, (boxes, scores) in enumerate(located):
            parts = []
            for k in range(len(boxes)):
                inner = lines.get((i, k), none)
                if len(inner):
                    parts.append(inner.rescored(float(scores[k])))
                if not len(inner) or self.keep_box:  # the YOLO box itself
                    parts.append(
                        text_det.Proposals.single(text_det.box_quads(boxes[k]), scores[k : k + 1])
                    )
            out.append(text_det.Proposals.concat(parts).first(MAX_PLATES))
        return out


class PlateReader:
    """PP-OCR recogniser with CTC decoding folded onto the plate alphabet."""

    def __init__(
        self, path: Path, *, threads: int | None = None, alphabet: str = PLATE_ALPHABET
    ) -> None:
        self.sess = session(path, threads)
        self.input_name = self.sess.get_inputs()[0].name
        meta = self.sess.get_modelmeta().custom_metadata_map.get("character")
        if not meta:
            raise ValueError(f"{path} has no 'character' metadata; not a PP-OCR recogniser")
        self.alphabet = alphabet
        self.fold_matrix = ctc.folding_matrix(ctc.recogniser_symbols(meta), alphabet)

    def read(self, crops: np.ndarray, batch: int = 16) -> list[ctc.CtcResult]:
        """uint8 [N, 48, 320, 3] BGR crops -> one CtcResult per crop."""
        results: list[ctc.CtcResult] = []
        for start in range(0, len(crops), batch):
            x = rec_input(crops[start : start + batch])
            probs = self.sess.run(None, {self.input_name: x})[0]
            results += ctc.greedy_decode(ctc.fold(probs, self.fold_matrix), self.alphabet)
        return results


def crops_for(
    image_bgr: np.ndarray, quads: np.ndarray, lines: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rectified recogniser crops ([K', 48, 320, 3]) and the indices of the quads kept.

    ``lines``: per quad its text lines [L, 4, 2] (top first); a two-line candidate's crop
    shows its lines side by side (:func:`ensemble.preprocess.rec_crop_lines`)."""
    crops, kept = [], []
    for i, q in enumerate(quads):
        try:
            if lines is not None and len(lines[i]) > 1:
                crops.append(rec_crop_lines(image_bgr, lines[i]))
            else:
                crops.append(rec_crop(image_bgr, q))
            kept.append(i)
        except InputError:
            continue
    if not crops:
        return np.zeros((0, REC_HEIGHT, REC_WIDTH, 3), np.uint8), np.zeros((0,), np.int64)
    return np.stack(crops), np.asarray(kept, np.int64)


class Reader(Protocol):
    """A plate recogniser: uint8 [N, 48, 320, 3] BGR crops -> one CtcResult per crop."""

    alphabet: str

    def read(self, crops: np.ndarray, batch: int = 16) -> list[ctc.CtcResult]: ...


class PlateCtcReader:
    """OVR-ALPR's own plate-trained CTC recogniser (``alpr-train ocr``; see
    :mod:`ensemble.plate_rec`). The ONNX file names its alphabet and input size in its
    metadata; its output is already blank + alphabet probabilities [N, T, 1 + |alphabet|],
    so decoding (confidences, runner-ups) is the same as the folded PP-OCR output."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.sess = session(path, threads)
        self.input_name = self.sess.get_inputs()[0].name
        meta = self.sess.get_modelmeta().custom_metadata_map
        if meta.get(plate_rec.METADATA_FORMAT) != plate_rec.FORMAT_TAG:
            raise ValueError(
                f"{path} is not an OVR-ALPR plate recogniser (metadata "
                f"{plate_rec.METADATA_FORMAT}={meta.get(plate_rec.METADATA_FORMAT)!r}, "
                f"expected {plate_rec.FORMAT_TAG!r}); train one with `alpr-train ocr`"
            )
        self.alphabet = meta.get(plate_rec.METADATA_ALPHABET, "")
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"{path}: metadata alphabet {self.alphabet!r} is empty or repeats")
        self.size = (int(meta[plate_rec.METADATA_HEIGHT]), int(meta[plate_rec.METADATA_WIDTH]))
        classes = self.sess.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.alphabet) + 1:
            raise ValueError(
                f"{path}: {classes} output classes for an alphabet of {len(self.alphabet)}"
            )

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Plate images (padded recogniser crops or bare plate images) -> [N, T, C]."""
        x = plate_rec.to_input([plate_rec.content(c) for c in crops], *self.size)
        out: np.ndarray = self.sess.run(None, {self.input_name: x})[0]
        return out

    def read(self, crops: np.ndarray, batch: int = 16) -> list[ctc.CtcResult]:
        results: list[ctc.CtcResult] = []
        for start in range(0, len(crops), batch):
            probs = self.probabilities(list(crops[start : start + batch]))
            results += ctc.greedy_decode(probs, self.alphabet)
        return results


def _geo_mean(confs: Sequence[float]) -> float:
    if not confs:
        return 0.0
    return float(np.exp(np.mean(np.log(np.clip(np.asarray(confs, np.float64), 1e-6, 1.0)))))


def fuse(a: ctc.CtcResult, b: ctc.CtcResult, b_weight: float = 1.0) -> ctc.CtcResult:
    """One read from two recognisers' reads of the same crop.

    Agreement: the text, each character at the higher of the two confidences. Otherwise
    the read whose characters are surer (geometric mean; ``b``'s scaled by ``b_weight``)
    wins, and where both have the same length the loser's differing characters become the
    winner's runner-ups at those positions (with the loser's confidence), so the client's
    top-k rescoring with regional formats can still choose between them."""
    if a.text == b.text:
        chars = tuple(max(x, y) for x, y in zip(a.char_confidences, b.char_confidences,
                                                strict=True))  # fmt: skip
        return ctc.CtcResult(a.text, float(np.mean(chars)) if chars else 0.0, chars,
                             a.alternatives, a.alt_confidences)  # fmt: skip
    sa, sb = _geo_mean(a.char_confidences), _geo_mean(b.char_confidences) * b_weight
    win, lose = (a, b) if sa >= sb else (b, a)
    if len(win.text) != len(lose.text) or not win.text:
        return win
    alts = list(win.alternatives or win.text)
    alt_p = list(win.alt_confidences or (0.0,) * len(win.text))
    for i, (x, y) in enumerate(zip(win.text, lose.text, strict=True)):
        if x != y:
            alts[i], alt_p[i] = y, lose.char_confidences[i]
    return ctc.CtcResult(win.text, win.confidence, win.char_confidences, "".join(alts),
                         tuple(alt_p))  # fmt: skip


class FusedReader:
    """Both recognisers on every crop, fused per crop (:func:`fuse`)."""

    def __init__(self, primary: Reader, secondary: Reader, secondary_weight: float = 1.0) -> None:
        if primary.alphabet != secondary.alphabet:
            raise ValueError("fused recognisers must share one alphabet")
        self.primary, self.secondary = primary, secondary
        self.alphabet = primary.alphabet
        self.secondary_weight = secondary_weight

    def read(self, crops: np.ndarray, batch: int = 16) -> list[ctc.CtcResult]:
        a = self.primary.read(crops, batch)
        b = self.secondary.read(crops, batch)
        return [fuse(x, y, self.secondary_weight) for x, y in zip(a, b, strict=True)]
