"""Two streams per camera and corrupt input (issue 16).

``FrameMatcher`` and ``scale_box`` as tables; ``PairedSource`` on real files: the demo
rendered at 640x360 (detect) and 1920x1080 (read), each detect frame leaving with the
main-stream frame of the same instant, also behind a slow consumer, and unmatched frames
counted when the read file is shorter; ``VideoSource`` on an H.264 MPEG-TS file with bytes
flipped in its middle third: PyAV counts what it skipped or concealed, both decoders go on
to the end.
"""

from __future__ import annotations

import json
import queue
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from edge_client.contracts import Box, Frame
from edge_client.source import END, Decoder, SourceStats, VideoSource, VideoSourceFactory
from edge_client.streams import FrameMatcher, PairedSource, PairedSourceFactory, scale_box
from edge_client.tools.demo_video import DEFAULT_PLATES, generate

FPS = 15
DETECT = (640, 360)
READ = (1920, 1080)
MAX_DRIFT_S = 0.1


def image(tag: int) -> np.ndarray:
    """A 1x1 image that says which frame it is."""
    return np.full((1, 1, 1), tag, np.uint8)


# --- FrameMatcher ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchCase:
    name: str
    pushed: tuple[float, ...]  # read-frame times, in order (image i carries tag i)
    asked: tuple[float, ...]  # detect times matched in order
    want: tuple[int | None, ...]  # the tag matched for each, None: unmatched
    left: tuple[float, ...]  # read-frame times still buffered afterwards
    buffer: int = 8
    max_drift_s: float = MAX_DRIFT_S


MATCH_CASES = [
    MatchCase("closest frame wins", (0.0, 0.1, 0.2), (0.12,), (1,), (0.1, 0.2)),
    MatchCase("closest may be later", (0.0, 0.1, 0.2), (0.17,), (2,), (0.2,)),
    MatchCase("exact time", (0.0, 0.0667, 0.1333), (0.0667,), (1,), (0.0667, 0.1333)),
    MatchCase("drift bound inclusive", (0.0, 1.0), (0.1,), (0,), (0.0, 1.0)),
    MatchCase("beyond the drift bound", (0.0, 1.0), (0.5,), (None,), (0.0, 1.0)),
    MatchCase("nothing buffered", (), (0.0,), (None,), ()),
    MatchCase(
        "old frames dropped as time goes on", (0.0, 0.1, 0.2, 0.3), (0.1, 0.3), (1, 3), (0.3,)
    ),
    MatchCase("a frame may serve twice", (0.0, 0.1), (0.1, 0.15), (1, 1), (0.1,)),
    MatchCase(
        "the buffer keeps the newest",
        (0.0, 0.1, 0.2, 0.3, 0.4),
        (0.0,),
        (None,),
        (0.2, 0.3, 0.4),
        buffer=3,
    ),
    MatchCase(
        "zero drift: only the same time",
        (0.0, 0.1),
        (0.05, 0.1),
        (None, 1),
        (0.1,),
        max_drift_s=0.0,
    ),
    MatchCase("detect behind the read stream", (1.0, 1.1), (0.5, 1.05), (None, 0), (1.0, 1.1)),
]


@pytest.mark.parametrize("case", MATCH_CASES, ids=lambda c: c.name)
def test_frame_matcher(case: MatchCase) -> None:
    m = FrameMatcher(case.max_drift_s, case.buffer)
    for i, t in enumerate(case.pushed):
        m.push(t, image(i))
    got = [m.match(t) for t in case.asked]
    assert [None if g is None else int(g[0, 0, 0]) for g in got] == list(case.want)
    assert [t for t, _ in m.frames] == list(case.left)
    matched = sum(w is not None for w in case.want)
    assert (m.stats.matched, m.stats.unmatched) == (matched, len(case.want) - matched)
    drifts = [
        abs(case.pushed[w] - t) for w, t in zip(case.want, case.asked, strict=True) if w is not None
    ]
    assert m.stats.drift_max_s == pytest.approx(max(drifts, default=0.0))
    assert m.stats.drift_max_s <= case.max_drift_s + 1e-9


@pytest.mark.parametrize(("drift", "buffer"), [(-0.01, 8), (0.1, 0), (0.1, -1)])
def test_frame_matcher_rejects_bad_bounds(drift: float, buffer: int) -> None:
    with pytest.raises(ValueError, match=rf"{drift}, {buffer}"):
        FrameMatcher(drift, buffer)


# --- scale_box ------------------------------------------------------------------------------
SCALE_CASES: list[tuple[str, Box, tuple[int, ...], tuple[int, ...], Box]] = [
    ("sub to main (x3)", (10, 20, 110, 50), (360, 640, 3), (1080, 1920, 3), (30, 60, 330, 150)),
    ("same size", (1.5, 2.5, 3.5, 4.5), (360, 640), (360, 640), (1.5, 2.5, 3.5, 4.5)),
    ("main to sub", (30, 60, 330, 150), (1080, 1920), (360, 640), (10, 20, 110, 50)),
    ("4:3 sub to 16:9 main", (0, 0, 352, 288), (288, 352), (1080, 1920), (0, 0, 1920, 1080)),
    ("grey frames", (8, 4, 16, 8), (90, 160), (360, 640, 1), (32, 16, 64, 32)),
]


@pytest.mark.parametrize(
    ("name", "box", "src", "dst", "want"), SCALE_CASES, ids=[c[0] for c in SCALE_CASES]
)
def test_scale_box(
    name: str, box: Box, src: tuple[int, ...], dst: tuple[int, ...], want: Box
) -> None:
    assert scale_box(box, src, dst) == pytest.approx(want)


# --- PairedSource on two real files ---------------------------------------------------------
@pytest.fixture(scope="module")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The one-plate demo at the detect and the read size (the same scene and times), and
    the read rendering cut to its first 30 frames."""
    out = tmp_path_factory.mktemp("two-streams")
    plates = DEFAULT_PLATES[:1]
    files = {}
    for name, (w, h) in (("detect", DETECT), ("read", READ)):
        files[name], truth = generate(out, width=w, height=h, fps=FPS, plates=plates,
                                      name=name, font="hershey")  # fmt: skip
        files[f"{name}_truth"] = truth
    short = out / "read-short.mp4"
    cap = cv2.VideoCapture(str(files["read"]))
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter.fourcc(*"mp4v"), FPS, READ)
    for _ in range(30):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    cap.release()
    files["read_short"] = short
    return files


def drain(
    source: PairedSource, out: queue.Queue[Frame | None], delay_s: float = 0.0
) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        item = out.get(timeout=30)
        if item is END:
            return frames
        assert item is not None
        frames.append(item)
        time.sleep(delay_s)  # a slow camera loop (the detector takes its time)
    raise AssertionError("the paired source did not end")


def paired(files: dict[str, Path], read: str) -> tuple[PairedSource, queue.Queue[Frame | None]]:
    factory = PairedSourceFactory(
        VideoSourceFactory(str(files["detect"]), decoder=Decoder.PYAV),
        VideoSourceFactory(str(files[read]), decoder=Decoder.PYAV),
        max_drift_s=MAX_DRIFT_S,
    )
    out: queue.Queue[Frame | None] = queue.Queue(maxsize=2)
    source = factory("cam", out, 0)
    assert isinstance(source, PairedSource)
    return source.start(), out


def plate_centre(image: np.ndarray, box: list[int], scale: float) -> float:
    """Mean brightness of the plate's box (scaled) in ``image``: the plate is brighter
    than the road, so it tells a frame showing the plate there from one that does not."""
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    return float(image[y1:y2, x1:x2].mean())


@pytest.mark.parametrize("delay_s", [0.0, 0.03], ids=["fast loop", "slow loop"])
def test_every_detect_frame_gets_the_main_frame_of_its_instant(
    renderings: dict[str, Path], delay_s: float
) -> None:
    truth = json.loads(renderings["detect_truth"].read_text())
    source, out = paired(renderings, "read")
    frames = drain(source, out, delay_s)
    assert len(frames) == truth["frames"] == source.stats.decoded
    assert source.read_stats.decoded == truth["frames"]
    for f in frames:
        assert f.image.shape == (DETECT[1], DETECT[0], 3)
        assert f.read_image is not None, f"frame {f.index} has no main-stream frame"
        assert f.read_image.shape == (READ[1], READ[0], 3)
    m = source.matcher.stats
    assert (m.matched, m.unmatched, m.drift_max_s) == (truth["frames"], 0, 0.0)
    # the same instant, not a neighbour: where the moving plate is in the detect frame,
    # it is in the read frame too (boxes of the detect-size truth, scaled)
    plate = truth["plates"][0]
    first, last = plate["inside"]
    for f in frames[first : last + 1 : 4]:
        box = plate["boxes"][str(f.index)]
        assert f.read_image is not None
        small = cv2.resize(f.read_image, DETECT, interpolation=cv2.INTER_AREA)
        same = abs(plate_centre(small, box, 1.0) - plate_centre(f.image, box, 1.0))
        assert same < 12, (f.index, same)


def test_a_shorter_read_file_leaves_frames_unmatched(renderings: dict[str, Path]) -> None:
    truth = json.loads(renderings["detect_truth"].read_text())
    source, out = paired(renderings, "read_short")
    frames = drain(source, out)
    assert len(frames) == truth["frames"]
    # read frames end at index 29: a detect frame within the drift bound of it still
    # gets it, every later one is counted unmatched and keeps only its own image
    want = [(i - 29) / FPS <= MAX_DRIFT_S + 1e-9 for i in range(truth["frames"])]
    assert [f.read_image is not None for f in frames] == want
    m = source.matcher.stats
    assert (m.matched, m.unmatched) == (sum(want), len(want) - sum(want))
    assert m.read_ended and source.read_stats.decoded == 30


# --- VideoSource on a corrupt H.264 MPEG-TS file ---------------------------------------------
FLIPPED = 200


@pytest.fixture(scope="module")
def transport_streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The one-plate demo (320x180) as H.264 in MPEG-TS (keyframe every 30 frames, no
    B-frames), and a copy with 200 bytes XORed with 0xFF in its middle third."""
    out = tmp_path_factory.mktemp("corrupt")
    video, _ = generate(out, width=320, height=180, fps=FPS, plates=DEFAULT_PLATES[:1],
                        font="hershey")  # fmt: skip
    clean = out / "clean.ts"
    cap = cv2.VideoCapture(str(video))
    with av.open(str(clean), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"g": "30", "bf": "0", "preset": "veryfast"}
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            bgr = np.asarray(frame, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cap.release()
    data = bytearray(clean.read_bytes())
    n = len(data)
    rng = np.random.default_rng(0)
    for p in rng.choice(np.arange(n // 3, 2 * n // 3), FLIPPED, replace=False):
        data[int(p)] ^= 0xFF
    corrupt = out / "corrupt.ts"
    corrupt.write_bytes(bytes(data))
    return clean, corrupt


def run_source(path: Path, decoder: Decoder) -> tuple[SourceStats, list[Frame]]:
    out: queue.Queue[Frame | None] = queue.Queue(maxsize=4)
    source = VideoSource("cam", str(path), out, decoder=decoder).start()
    frames: list[Frame] = []
    while (item := out.get(timeout=60)) is not END:
        assert item is not None
        frames.append(item)
    source.thread.join(timeout=10)
    return source.stats, frames


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("decoder", [Decoder.PYAV, Decoder.OPENCV])
def test_corrupt_file_decodes_to_the_end(
    transport_streams: tuple[Path, Path], decoder: Decoder
) -> None:
    clean, corrupt = transport_streams
    clean_stats, clean_frames = run_source(clean, decoder)
    stats, frames = run_source(corrupt, decoder)
    assert clean_stats.open_error is None and stats.open_error is None
    assert clean_stats.decode.__dict__ == {
        "corrupt_packets": 0, "decode_errors": 0, "corrupt_frames": 0
    }  # fmt: skip
    assert stats.decoded == len(frames)
    # decoding went on past the damage to the end of the file
    assert len(frames) >= 0.9 * len(clean_frames), (len(frames), len(clean_frames))
    assert frames[-1].index >= 0.9 * clean_frames[-1].index
    d = stats.decode
    flagged = sum(f.corrupt for f in frames)
    if decoder is Decoder.PYAV:  # counted: what was skipped, what was concealed
        assert d.corrupt_packets + d.decode_errors + d.corrupt_frames > 0, d
        assert flagged == d.corrupt_frames
    else:  # OpenCV conceals silently: nothing counted, nothing flagged
        assert (d.corrupt_packets, d.decode_errors, d.corrupt_frames, flagged) == (0, 0, 0, 0)
