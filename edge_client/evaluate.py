"""Accuracy evaluation: labelled photographs through the running server, and video runs.

Photographs (OpenALPR benchmark format: ``NAME.jpg`` + ``NAME.txt`` holding
``NAME.jpg<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE``) take the edge client's path: the vehicle
detector on the photo, the ``alpr`` ensemble on each vehicle crop (the whole photo when
no vehicle is found), the most plate-like read, then the same voting and regional-format
correction as ``edge-client``. Videos: the events of an ``edge-client`` run (JSONL) are
scored against the demo video's ground truth (correct, wrong, missed, duplicated).
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ensemble.contracts import Box, PlateRead
from ensemble.image_io import encode_jpeg

from .contracts import PlateResult, Read
from .plates.choose import choose
from .plates.formats import PlateFormat, correct
from .plates.voting import vote
from .triton_client import AlprClient


@dataclass(frozen=True)
class Label:
    image: str
    box: Box
    plate: str


@dataclass
class ImageResult:
    image: str
    expected: str
    read: str
    raw: str
    confidence: float
    found: bool  # a plate box with IoU >= 0.5 against the label
    exact: bool
    char_accuracy: float
    ms: float
    box: tuple[float, float, float, float] | None = None


def load_labels(folder: Path) -> list[Label]:
    labels = []
    for txt in sorted(folder.glob("*.txt")):
        parts = txt.read_text().strip().split("\t")
        if len(parts) < 6 or txt.name.lower() == "readme.txt":
            continue
        name, x, y, w, h, plate = parts[:6]
        x0, y0 = float(x), float(y)
        labels.append(Label(name, Box(x0, y0, x0 + float(w), y0 + float(h)), plate.strip().upper()))
    return labels


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(expected: str, read: str) -> float:
    if not expected:
        return 0.0
    return max(0.0, 1.0 - levenshtein(expected, read) / len(expected))


def decode(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in photo pixels
CASCADE_CONFIDENCE = 0.9  # a vehicle-crop read this sure that fits a format ends the search
CASCADE_MIN_CHAR = 0.75  # ... with no character less sure than this


def _shifted(reads: Sequence[PlateRead], ox: int, oy: int) -> list[PlateRead]:
    return [
        replace(r, box=Box(r.box.x1 + ox, r.box.y1 + oy, r.box.x2 + ox, r.box.y2 + oy))
        for r in reads
    ]


def confident(
    reads: Sequence[PlateRead], formats: Sequence[PlateFormat],
    regions: Sequence[Region] = (),
) -> bool:  # fmt: skip
    """The cascade's stop rule: a sure, format-fitting plate among ``reads``, not cut by
    the border of the vehicle crop it came from (``regions[i]`` is ``reads[i]``'s crop
    rectangle in photo pixels; a plate touching it may be truncated). Sure: confidence
    ``CASCADE_CONFIDENCE`` overall and no character under ``CASCADE_MIN_CHAR`` (one
    doubtful character may be a spurious one, e.g. an emblem)."""
    choice = choose(reads, formats) if formats else None
    if choice is None or choice.read.confidence < CASCADE_CONFIDENCE:
        return False
    if min(choice.char_confidences, default=0.0) < CASCADE_MIN_CHAR:
        return False
    if correct(choice.text, formats, choice.char_confidences)[2] <= 0:
        return False
    for read, (x1, y1, x2, y2) in zip(reads, regions, strict=False):
        if read is choice.read:
            b = read.box
            return min(b.x1 - x1, b.y1 - y1, x2 - b.x2, y2 - b.y2) > 2
    return True


def read_photo(
    client: AlprClient, data: bytes, frame: np.ndarray | None, max_vehicles: int = 4,
    formats: Sequence[PlateFormat] = (), cascade: bool = False,
) -> list[PlateRead]:  # fmt: skip
    """Every plate candidate in the photo (``data``, decoded as ``frame``), in photo
    coordinates (vehicles first). Vehicle crops are read first, as the edge client does;
    the whole photo is read too (a plate may sit outside every vehicle box) unless
    ``cascade`` is on and a vehicle crop already gave a sure, format-fitting plate."""
    crops: list[bytes] = []
    rects: list[Region] = []  # each crop's rectangle in the photo
    if frame is not None:
        for v in client.detect_vehicles([frame])[0][:max_vehicles]:
            x1, y1 = int(v.box.x1), int(v.box.y1)
            crop = frame[y1 : int(v.box.y2), x1 : int(v.box.x2)]
            if crop.size:
                crops.append(encode_jpeg(crop, 90))
                rects.append((x1, y1, x1 + crop.shape[1], y1 + crop.shape[0]))
    out: list[PlateRead] = []
    regions: list[Region] = []  # the rectangle each read came from

    def read(images: list[bytes], where: list[Region]) -> None:
        for reads, rect in zip(client.read_plates(images), where, strict=True):
            out.extend(_shifted(reads, rect[0], rect[1]))
            regions.extend([rect] * len(reads))

    if crops and cascade:
        read(crops, rects)
        if confident(out, formats, regions):
            return out
        crops, rects = [], []
    h, w = frame.shape[:2] if frame is not None else (0, 0)
    read([*crops, data], [*rects, (0, 0, w, h)])
    return out


def decide(
    reads: Sequence[PlateRead], formats: Sequence[PlateFormat], *, top_k: bool = True
) -> tuple[PlateResult | None, PlateRead | None]:
    """The client's post-processing of one image's candidates: the plate among them and
    its best hypothesis (``choose``: plate-likeness, format fit, top-k rescoring with
    ``top_k``), then voting and regional-format correction. Returns (the result, the read
    it came from); (None, None) when no candidate is plate-like."""
    choice = choose(reads, formats, top_k=top_k)
    if choice is None:
        return None, None
    read = Read(choice.text, choice.read.confidence, choice.char_confidences)
    return vote([read], formats), choice.read


def evaluate_photo(
    client: AlprClient,
    folder: Path,
    label: Label,
    formats: Sequence[PlateFormat],
    cascade: bool = False,
) -> tuple[ImageResult, np.ndarray | None]:
    data = (folder / label.image).read_bytes()
    t0 = time.perf_counter()
    frame = decode(data)
    reads = read_photo(client, data, frame, formats=formats, cascade=cascade)
    result, best = decide(reads, formats)
    ms = 1000 * (time.perf_counter() - t0)
    text = result.plate if result else (best.text if best else "")
    found = any(r.box.iou(label.box) >= 0.5 for r in reads)
    crop = None
    if best is not None and frame is not None:
        b = best.box
        crop = frame[int(b.y1) : int(b.y2) + 1, int(b.x1) : int(b.x2) + 1]
    res = ImageResult(
        label.image, label.plate, text, best.text if best else "",
        best.confidence if best else 0.0, found, text == label.plate,
        char_accuracy(label.plate, text), ms,
        (best.box.x1, best.box.y1, best.box.x2, best.box.y2) if best else None,
    )  # fmt: skip
    return res, crop


def summarise(results: Sequence[ImageResult]) -> dict[str, float | int]:
    n = len(results)
    loose = str.maketrans("OI", "01")
    return {
        "images": n,
        "exact": sum(r.exact for r in results) / n,
        "exact_o0_i1_equal": sum(
            r.read.translate(loose) == r.expected.translate(loose) for r in results
        ) / n,
        "detection_recall": sum(r.found for r in results) / n,
        "char_accuracy": float(np.mean([r.char_accuracy for r in results])),
        "ms_per_image": float(np.mean([r.ms for r in results])),
        "ms_per_image_p95": float(np.percentile([r.ms for r in results], 95)),
    }  # fmt: skip


def chart(summary: dict[str, float | int], out: Path) -> None:
    """A small bar chart of the headline rates (OpenCV only)."""
    keys = ["exact", "exact_o0_i1_equal", "detection_recall", "char_accuracy"]
    img = np.full((260, 640, 3), 255, np.uint8)
    for i, k in enumerate(keys):
        v = float(summary[k])
        y = 30 + i * 55
        cv2.rectangle(img, (200, y), (200 + int(400 * v), y + 32), (60, 140, 40), -1)
        cv2.putText(img, k, (10, y + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        inside = v >= 0.85
        colour = (255, 255, 255) if inside else (0, 0, 0)
        x = 530 if inside else 205 + int(400 * v)
        cv2.putText(img, f"{100 * v:.1f}%", (x, y + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    cv2.imwrite(str(out), img)


def write_report(
    out_dir: Path,
    summary: dict,
    results: Sequence[ImageResult],
    crops: dict[str, np.ndarray | None],
) -> Path:
    """JSON plus an HTML page listing the misses with their crops, and the chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "misses").mkdir(exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps({"summary": summary, "results": [asdict(r) for r in results]}, indent=2) + "\n"
    )
    chart(summary, out_dir / "chart.png")
    rows = []
    for r in results:
        if r.exact:
            continue
        img = ""
        crop = crops.get(r.image)
        if crop is not None and crop.size:
            name = Path(r.image).stem + ".jpg"
            cv2.imwrite(str(out_dir / "misses" / name), crop)
            img = f'<img src="misses/{html.escape(name)}" height="40">'
        rows.append(
            f"<tr><td>{html.escape(r.image)}</td><td>{html.escape(r.expected)}</td>"
            f"<td>{html.escape(r.read)}</td><td>{r.confidence:.2f}</td>"
            f"<td>{'yes' if r.found else 'no'}</td><td>{img}</td></tr>"
        )
    shown = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in summary.items()}
    stats = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in shown.items())
    page = (
        "<!doctype html><meta charset=utf-8><title>OVR-ALPR accuracy</title>"
        f"<h1>OVR-ALPR accuracy</h1><ul>{stats}</ul><img src=chart.png>"
        f"<h2>Misses ({len(rows)})</h2><table border=1 cellpadding=4><tr><th>image</th>"
        "<th>expected</th><th>read</th><th>conf</th><th>plate found</th><th>crop</th></tr>"
        + "".join(rows) + "</table>"
    )  # fmt: skip
    (out_dir / "report.html").write_text(page)
    return out_dir / "report.html"


def score_video(events: Sequence[dict], truth: dict) -> dict[str, int | float]:
    """Events of one run vs the demo ground truth: correct, wrong, missed, duplicated."""
    expected = Counter(p["plate"] for p in truth["plates"])
    got = Counter(e["plate"] for e in events)
    correct = sum(min(got[p], n) for p, n in expected.items())
    duplicated = sum(max(0, got[p] - n) for p, n in expected.items())
    wrong = sum(n for p, n in got.items() if p not in expected)
    missed = sum(max(0, n - got[p]) for p, n in expected.items())
    total = sum(expected.values())
    return {"plates": total, "events": sum(got.values()), "correct": correct, "wrong": wrong,
            "missed": missed, "duplicated": duplicated,
            "accuracy": correct / max(total, sum(got.values())) if total else 0.0}  # fmt: skip
