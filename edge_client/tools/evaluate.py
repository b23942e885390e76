"""Accuracy evaluation: labelled photographs through the running server, and video runs.

Photographs (OpenALPR benchmark format: ``NAME.jpg`` + ``NAME.txt`` holding
``NAME.jpg<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE``) take the edge client's path: the vehicle
detector on the photo, the ``alpr`` ensemble on each vehicle crop (the whole photo when
no vehicle is found), the most plate-like read, then the same voting and regional-format
correction as ``edge-client``. Each photo's miss gets a category (``categorise``), misreads
give a confusion table of character pairs (``char_errors``), and the figures are given per
set of photos (``summarise_sets``) and, for two recognisers, side by side
(``differences``). Videos: the events of an ``edge-client`` run (JSONL) are scored against
the demo video's ground truth (correct, wrong, missed, duplicated).
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_client.contracts import PlateResult, Read
from edge_client.plates.choose import choose
from edge_client.plates.formats import PlateFormat, correct
from edge_client.plates.voting import vote
from edge_client.triton_client import AlprClient
from ensemble.contracts import Box, PlateRead
from ensemble.image_io import encode_jpeg


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
    dataset: str = ""  # the set (folder) the photo belongs to
    category: str = ""  # see ``categorise``
    on_plate: tuple[str, ...] = ()  # raw texts of the candidates lying on the true plate


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
    dataset: str = "",
) -> tuple[ImageResult, np.ndarray | None]:
    data = (folder / label.image).read_bytes()
    t0 = time.perf_counter()
    frame = decode(data)
    reads = read_photo(client, data, frame, formats=formats, cascade=cascade)
    result, best = decide(reads, formats)
    ms = 1000 * (time.perf_counter() - t0)
    text = result.plate if result else (best.text if best else "")
    found = any(r.box.iou(label.box) >= 0.5 for r in reads)
    candidates = [Candidate(r.text, r.box) for r in reads]
    chosen = Candidate(best.text, best.box) if best else None
    crop = None
    if best is not None and frame is not None:
        b = best.box
        crop = frame[int(b.y1) : int(b.y2) + 1, int(b.x1) : int(b.x2) + 1]
    res = ImageResult(
        label.image, label.plate, text, best.text if best else "",
        best.confidence if best else 0.0, found, text == label.plate,
        char_accuracy(label.plate, text), ms,
        (best.box.x1, best.box.y1, best.box.x2, best.box.y2) if best else None,
        dataset, categorise(label.plate, label.box, text, chosen, candidates),
        tuple(c.text for c in candidates if on_plate(c.box, label.box)),
    )  # fmt: skip
    return res, crop


# Miss categories ------------------------------------------------------------------------

CATEGORIES = ("exact", "not_found", "other_text", "o0_i1", "length", "substitution")
READER_ERRORS = ("o0_i1", "length", "substitution")  # misreads of the plate itself
ON_PLATE_IOU = 0.1  # a candidate box this close to the labelled box is on the plate
LOOK_ALIKES = str.maketrans("OI", "01")


@dataclass(frozen=True)
class Candidate:
    """One plate candidate as the ensemble read it: raw text, box in photo pixels."""

    text: str
    box: Box


def fold(text: str) -> str:
    """``text`` with the look-alikes O/0 and I/1 made equal."""
    return text.translate(LOOK_ALIKES)


def _inside(x: float, y: float, b: Box) -> bool:
    return b.x1 <= x <= b.x2 and b.y1 <= y <= b.y2


def on_plate(box: Box, plate: Box) -> bool:
    """``box`` lies on the labelled ``plate``: IoU at least ``ON_PLATE_IOU``, or the
    centre of either box inside the other (one text row of a two-row or stacked plate
    overlaps the whole plate's box little, and a loose box holds the plate's centre)."""
    if box.iou(plate) >= ON_PLATE_IOU:
        return True
    centre = ((box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2)
    plate_centre = ((plate.x1 + plate.x2) / 2, (plate.y1 + plate.y2) / 2)
    return _inside(*centre, plate) or _inside(*plate_centre, box)


def categorise(
    truth: str, plate: Box, read: str, chosen: Candidate | None, candidates: Sequence[Candidate]
) -> str:
    """What went wrong for one photo: its label (``truth``, ``plate`` box), the text the
    client emitted (``read``, after voting and format correction), the candidate it came
    from (``chosen``: raw text and box; None when none was plate-like) and every
    candidate. The first rule that holds wins:

    1. ``exact``: ``read == truth`` (whatever the boxes say).
    2. ``not_found``: no candidate lies on the plate (``on_plate``).
    3. ``other_text``: the choice missed while the plate was read: nothing was chosen, or
       the chosen box is off the plate (another plate, a dealer frame...), or another
       candidate on the plate read the truth within one edit (O/0 and I/1 equal) and
       closer than ``read``.
    4. ``o0_i1``: ``read`` equals the truth once O/0 and I/1 are equal.
    5. ``length``: a different length.
    6. ``substitution``: same length, other characters replaced.
    """
    if read == truth:
        return "exact"
    here = [c for c in candidates if on_plate(c.box, plate)]
    if not here:
        return "not_found"
    if chosen is None or not on_plate(chosen.box, plate):
        return "other_text"
    miss = levenshtein(fold(read), fold(truth))
    for c in here:
        if c != chosen and (d := levenshtein(fold(c.text), fold(truth))) <= 1 and d < miss:
            return "other_text"
    if fold(read) == fold(truth):
        return "o0_i1"
    return "length" if len(read) != len(truth) else "substitution"


# Confusion pairs ------------------------------------------------------------------------

Pair = tuple[str, str]  # (true character, read character); "" is a gap
GAP = ""


def alignment(truth: str, read: str) -> list[Pair]:
    """A minimal-edit alignment of ``read`` against ``truth`` (Levenshtein backtrace):
    one pair per column, matches included; ``(c, GAP)`` a deleted (missed) character,
    ``(GAP, c)`` an inserted one. Ties go to substitution, then deletion."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(read) + 1)] for i in range(len(truth) + 1)]
    for i, t in enumerate(truth, 1):
        for j, r in enumerate(read, 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (t != r))
    pairs: list[Pair] = []
    i, j = len(truth), len(read)
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]):
            i, j = i - 1, j - 1
            pairs.append((truth[i], read[j]))
        elif i and d[i][j] == d[i - 1][j] + 1:
            i -= 1
            pairs.append((truth[i], GAP))
        else:
            j -= 1
            pairs.append((GAP, read[j]))
    return pairs[::-1]


def char_errors(truth: str, read: str) -> list[Pair]:
    """The character errors of one misread: position by position when the lengths agree,
    else along ``alignment`` (substitutions, insertions, deletions)."""
    pairs = zip(truth, read, strict=True) if len(truth) == len(read) else alignment(truth, read)
    return [(t, r) for t, r in pairs if t != r]


def confusions(results: Iterable[ImageResult]) -> Counter[Pair]:
    """Character pairs over the misreads of the plate itself (``READER_ERRORS``; a plate
    not found or another text chosen says nothing about the recogniser's characters)."""
    counts: Counter[Pair] = Counter()
    for r in results:
        if r.category in READER_ERRORS:
            counts.update(char_errors(r.expected, r.read))
    return counts


def top_pairs(counts: Counter[Pair], n: int | None = 10) -> list[dict[str, Any]]:
    """The ``n`` most frequent pairs (all with None), most frequent first, for JSON."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"true": t, "read": r, "count": k} for (t, r), k in ranked]


# Summaries ------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def summarise(results: Sequence[ImageResult]) -> dict[str, Any]:
    """The headline figures of ``results`` (rates over photos, ms per photo), the count
    per miss category and the most frequent character confusions."""
    n = max(len(results), 1)
    ms = [r.ms for r in results]
    counts = Counter(r.category for r in results)
    return {
        "images": len(results),
        "exact": sum(r.exact for r in results) / n,
        "exact_o0_i1_equal": sum(fold(r.read) == fold(r.expected) for r in results) / n,
        "detection_recall": sum(r.found for r in results) / n,
        "char_accuracy": _mean([r.char_accuracy for r in results]),
        "ms_per_image": _mean(ms),
        "ms_per_image_p95": float(np.percentile(ms, 95)) if ms else 0.0,
        "categories": {c: counts[c] for c in CATEGORIES},
        "top_confusions": top_pairs(confusions(results)),
    }  # fmt: skip


def summarise_sets(results: Sequence[ImageResult]) -> dict[str, dict[str, Any]]:
    """``summarise`` for each set (``ImageResult.dataset``), in the order sets appear."""
    sets: dict[str, list[ImageResult]] = {}
    for r in results:
        sets.setdefault(r.dataset, []).append(r)
    return {name: summarise(rs) for name, rs in sets.items()}


def set_names(folders: Sequence[Path]) -> list[str]:
    """A unique name per folder: its own name, ``-2``, ``-3``... on a repeat."""
    names: list[str] = []
    for folder in folders:
        base = folder.resolve().name or str(folder)
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


@dataclass(frozen=True)
class Difference:
    """One photo two runs read differently (``reads`` / ``categories``: run A's, run B's;
    None / ``"missing"`` where a run has no result for it)."""

    dataset: str
    image: str
    truth: str
    reads: tuple[str | None, str | None]
    categories: tuple[str, str]

    def as_json(self, names: tuple[str, str]) -> dict[str, Any]:
        return {
            "set": self.dataset, "image": self.image, "truth": self.truth,
            "read": dict(zip(names, self.reads, strict=True)),
            "category": dict(zip(names, self.categories, strict=True)),
        }  # fmt: skip


def differences(a: Sequence[ImageResult], b: Sequence[ImageResult]) -> list[Difference]:
    """The photos (matched by set and image) whose read or category differs between run
    ``a`` and run ``b``, in ``a``'s order then ``b``'s extras."""
    by_a = {(r.dataset, r.image): r for r in a}
    by_b = {(r.dataset, r.image): r for r in b}
    out = []
    for key in [*by_a, *(k for k in by_b if k not in by_a)]:
        ra, rb = by_a.get(key), by_b.get(key)
        pair = (ra.read if ra else None, rb.read if rb else None)
        cats = (ra.category if ra else "missing", rb.category if rb else "missing")
        if pair[0] != pair[1] or cats[0] != cats[1]:
            truth = ra.expected if ra else by_b[key].expected
            out.append(Difference(key[0], key[1], truth, pair, cats))
    return out


# Tables (one set of rows, rendered as markdown or HTML) ---------------------------------

Table = tuple[list[str], list[list[str]]]  # header, rows


def _pct(v: float) -> str:
    return f"{v:.3f}"


def _char(c: str) -> str:
    return c if c else "∅"


def sets_table(sets: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per set: rates, ms per photo and the count per miss category."""
    head = ["set", "photos", "exact", "O/0 I/1 equal", "plate found", "char acc", "ms/photo"]
    rows = []
    for name, s in sets.items():
        cats = [str(s["categories"][c]) for c in CATEGORIES[1:]]
        rows.append([
            name, str(s["images"]), _pct(s["exact"]), _pct(s["exact_o0_i1_equal"]),
            _pct(s["detection_recall"]), _pct(s["char_accuracy"]),
            f"{s['ms_per_image']:.0f}", *cats,
        ])  # fmt: skip
    return [*head, *CATEGORIES[1:]], rows


def pairs_table(pairs: Sequence[Mapping[str, Any]]) -> Table:
    """Character confusions (``top_pairs``' rows); ∅ marks an inserted/deleted one."""
    rows = [[_char(p["true"]), _char(p["read"]), str(p["count"])] for p in pairs]
    return ["true", "read", "count"], rows


def compare_table(names: tuple[str, str], a: Mapping[str, Any], b: Mapping[str, Any]) -> Table:
    """Per set, run A's and run B's exact rates and ms per photo, side by side."""
    x, y = names
    head = ["set", "photos", f"exact {x}", f"exact {y}", f"O/0 I/1 equal {x}",
            f"O/0 I/1 equal {y}", f"ms/photo {x}", f"ms/photo {y}"]  # fmt: skip
    rows = []
    for name, sa in a.items():
        sb = b.get(name, {})
        rows.append([
            name, str(sa["images"]), _pct(sa["exact"]), _pct(sb.get("exact", 0.0)),
            _pct(sa["exact_o0_i1_equal"]), _pct(sb.get("exact_o0_i1_equal", 0.0)),
            f"{sa['ms_per_image']:.0f}", f"{sb.get('ms_per_image', 0.0):.0f}",
        ])  # fmt: skip
    return head, rows


def differ_table(names: tuple[str, str], diffs: Sequence[Difference]) -> Table:
    x, y = names
    head = ["set", "image", "truth", x, y, f"category {x}", f"category {y}"]
    rows = [
        [d.dataset, d.image, d.truth, d.reads[0] or "", d.reads[1] or "", *d.categories]
        for d in diffs
    ]
    return head, rows


def markdown(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    head, rows = table
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table border=1 cellpadding=4><tr>{th}</tr>{body}</table>"


def summary_markdown(sets: Mapping[str, Mapping[str, Any]], pooled: Mapping[str, Any]) -> str:
    """The per-set table (and the pooled row when there are several sets) and the most
    frequent character confusions."""
    rows = {**sets, "all": pooled} if len(sets) > 1 else dict(sets)
    pairs = pooled["top_confusions"]
    return (
        "## Accuracy per set\n\n" + markdown(sets_table(rows))
        + "\n## Most frequent character confusions\n\n"
        + (markdown(pairs_table(pairs)) if pairs else "none (no misread of a found plate)\n")
    )  # fmt: skip


def compare_markdown(
    names: tuple[str, str], a: Mapping[str, Any], b: Mapping[str, Any], diffs: Sequence[Difference]
) -> str:
    """Two runs side by side (``a``/``b``: their per-set summaries) and where they differ."""
    return (
        f"## {names[0]} vs {names[1]}\n\n" + markdown(compare_table(names, a, b))
        + f"\n## Photos read differently ({len(diffs)})\n\n" + markdown(differ_table(names, diffs))
    )  # fmt: skip


def chart(summary: Mapping[str, Any], out: Path) -> None:
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
    summary: Mapping[str, Any],
    results: Sequence[ImageResult],
    crops: Mapping[str, np.ndarray | None],
) -> Path:
    """``results.json``, ``summary.md`` (``summary_markdown``), the chart and an HTML page:
    the headline figures, the per-set table, the confusion table and the misses with
    their crops (``crops`` keyed by ``dataset/image``). ``summary`` holds the pooled
    figures and ``sets``, the per-set ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "misses").mkdir(exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps({"summary": summary, "results": [asdict(r) for r in results]}, indent=2) + "\n"
    )
    sets = summary.get("sets") or {"all": summary}
    (out_dir / "summary.md").write_text(summary_markdown(sets, summary))
    chart(summary, out_dir / "chart.png")
    rows = []
    for r in results:
        if r.exact:
            continue
        img = ""
        crop = crops.get(f"{r.dataset}/{r.image}")
        if crop is not None and crop.size:
            name = "-".join(filter(None, [r.dataset, Path(r.image).stem])) + ".jpg"
            cv2.imwrite(str(out_dir / "misses" / name), crop)
            img = f'<img src="misses/{html.escape(name)}" height="40">'
        cells = [r.dataset, r.image, r.expected, r.read, f"{r.confidence:.2f}",
                 "yes" if r.found else "no", r.category, " ".join(r.on_plate)]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells))
        rows[-1] += f"<td>{img}</td></tr>"
    scalars = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    shown = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in scalars.items()}
    stats = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in shown.items())
    all_pairs = top_pairs(confusions(results), None)
    page = (
        "<!doctype html><meta charset=utf-8><title>OVR-ALPR accuracy</title>"
        f"<h1>OVR-ALPR accuracy</h1><ul>{stats}</ul><img src=chart.png>"
        f"<h2>Per set</h2>{html_table(sets_table(sets))}"
        f"<h2>Character confusions (misreads of the plate, ∅ = inserted/deleted)</h2>"
        f"{html_table(pairs_table(all_pairs))}"
        f"<h2>Misses ({len(rows)})</h2><table border=1 cellpadding=4><tr><th>set</th>"
        "<th>image</th><th>expected</th><th>read</th><th>conf</th><th>plate found</th>"
        "<th>category</th><th>candidates on the plate</th><th>crop</th></tr>"
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
