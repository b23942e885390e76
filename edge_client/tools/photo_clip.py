"""A camera clip made of real photographs, for the edge benchmark's real-plate accuracy.

Each labelled photo (OpenALPR benchmark format, ``edge_client.tools.evaluate.load_labels``)
is shown for ``frames_per_photo`` frames of a ``width`` x ``height`` video, fitted into
the frame and slowly zooming toward its plate (a vehicle approaching a gate camera),
followed by ``gap`` empty frames (the lane empties between vehicles; 1 s by default,
longer than a tracker keeps a lost track, so consecutive photos never continue one track).
The truth file has the demo video's shape (``plates``: text, first and last frame), so the
same scoring applies. Photos stay where they are: only the rendered clip is written, to ``out_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .evaluate import load_labels


def _view(
    photo: np.ndarray, plate_xyxy: tuple[float, float, float, float], zoom: float,
    width: int, height: int,
) -> np.ndarray:  # fmt: skip
    """``photo`` fitted into the frame, scaled by ``zoom`` about its plate's centre."""
    h, w = photo.shape[:2]
    fit = min(width / w, height / h) * zoom
    px, py = (plate_xyxy[0] + plate_xyxy[2]) / 2, (plate_xyxy[1] + plate_xyxy[3]) / 2
    # keep the plate where the un-zoomed fit puts it, so the zoom reads as an approach
    base = min(width / w, height / h)
    ox0, oy0 = (width - w * base) / 2, (height - h * base) / 2
    tx, ty = ox0 + px * base, oy0 + py * base
    m = np.array([[fit, 0, tx - px * fit], [0, fit, ty - py * fit]], np.float32)
    return cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_AREA, borderValue=(60, 60, 60))


def photo_clip(
    folder: Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    frames_per_photo: int = 18,
    gap: int = 15,
    width: int = 1280,
    height: int = 720,
    fps: float = 15,
    zoom: tuple[float, float] = (0.9, 1.15),
    name: str = "photos",
) -> tuple[Path, Path]:
    """Write ``out_dir/<name>.mp4`` and ``<name>.truth.json`` from the labelled photos in
    ``folder`` (first ``limit`` by name); returns their paths. Raises ``ValueError`` when
    no labelled photo can be read."""
    labels = load_labels(folder)[:limit] if limit else load_labels(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{name}.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open an mp4v VideoWriter for {video}")
    plates: list[dict[str, object]] = []
    frame_no = 0
    blank = np.full((height, width, 3), 60, np.uint8)
    try:
        for lab in labels:
            photo = cv2.imread(str(folder / lab.image))
            if photo is None:
                continue
            box = (lab.box.x1, lab.box.y1, lab.box.x2, lab.box.y2)
            first = frame_no
            for k in range(frames_per_photo):
                z = zoom[0] + (zoom[1] - zoom[0]) * k / max(1, frames_per_photo - 1)
                writer.write(_view(photo, box, z, width, height))
                frame_no += 1
            plates.append({"plate": lab.plate, "photo": lab.image, "first_frame": first,
                           "last_frame": frame_no - 1})  # fmt: skip
            for _ in range(gap):
                writer.write(blank)
                frame_no += 1
    finally:
        writer.release()
    if not plates:
        raise ValueError(f"no readable labelled photo in {folder}")
    truth = out_dir / f"{name}.truth.json"
    doc = {"video": video.name, "fps": fps, "frames": frame_no, "width": width,
           "height": height, "source": str(folder), "plates": plates}  # fmt: skip
    truth.write_text(json.dumps(doc, indent=2) + "\n")
    return video, truth
