"""The best crop of each track that ends without a read, kept for debugging and labelling.

``UnreadCropStore.save`` writes ``output_dir/<folder>/<camera>/<YYYY-MM-DD>/<track>_<reason>``
``.jpg`` (through ``edge_client.crops.save_crop``: safe names, atomic write) and a JSON
sidecar next to it (``.json``: camera, track key, reason, timestamp, box). Both files get
the event's ``timestamp`` as their modification time, which is what their age is counted
from. The store stays bounded: every ``save`` drops the oldest crops beyond ``max_count``
and those older than ``max_age_s`` (images, sidecars and date folders left empty), and
``prune`` does the same after rescanning the folder (at start-up, or now and then).

``save`` never raises on an I/O error (full disk, read-only or missing folder): it logs a
warning, counts it in ``failed`` and returns ``None``, so the camera loop never stops for a
debugging aid. A bad argument (unknown reason, empty crop, bad box) still raises
``ValueError``. One store per camera, used from one thread.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from pydantic import Field, field_validator

from alpr_common.config import Strict
from alpr_common.files import safe_name
from edge_client.crops import save_crop, write_atomic

log = logging.getLogger(__name__)

UnreadReason = Literal["no_plate", "unread"]
"""``no_plate``: the crop was read but gave nothing plausible; ``unread``: it was never
read (track too short, cut by the border, server down)."""
REASONS: tuple[str, ...] = get_args(UnreadReason)

FOLDER = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"  # one path component, never "." or ".."
TRACK_KEY_LEN = 96  # room for "_<reason>.jpg" within safe_name's limit
STALE_TMP_S = 60.0  # a temporary file this old was left by a crash


class UnreadCrops(Strict):
    """Saving the best crop of tracks that end without a read (off by default)."""

    enabled: bool = Field(
        False,
        description=(
            "save the best crop of each track that ends without a read, with a JSON "
            "sidecar, to see what the reader misses"
        ),
    )
    max_count: int = Field(
        500, ge=1, le=100_000,
        description=(
            "most crops kept per camera (the oldest go first); raising it keeps a longer "
            "history, lowering it bounds the disk use (a crop is a few tens of kB)"
        ),
    )  # fmt: skip
    max_age_s: float = Field(
        7 * 86400, gt=0, le=366 * 86400,
        description=(
            "crops older than this are deleted; raising it keeps rare misses longer, "
            "lowering it keeps only recent ones"
        ),
    )  # fmt: skip
    folder: str = Field(
        "unread", pattern=FOLDER,
        description=(
            "folder under the edge's output_dir, one plain name (no `/`, no leading dot, "
            "not `crops`, where event crops live)"
        ),
    )  # fmt: skip

    @field_validator("folder")
    @classmethod
    def _not_event_crops(cls, value: str) -> str:
        if value.lower() == "crops":
            raise ValueError("folder must not be 'crops' (event crops live there)")
        return value


def _box_list(box: Sequence[float] | None) -> list[float] | None:
    if box is None:
        return None
    values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {box!r}")
    return values


class UnreadCropStore:
    """The unread crops of one camera, bounded in count and age (see the module doc)."""

    def __init__(
        self, output_dir: Path, camera: str, cfg: UnreadCrops,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.output_dir = Path(output_dir)
        self.camera = camera
        self.cfg = cfg
        self.clock = clock
        self.root = self.output_dir / cfg.folder / safe_name(camera)
        self.saved = 0  # crops written
        self.failed = 0  # saves given up on an I/O error
        self.removed = 0  # crops deleted by the bounds
        self._index: list[tuple[float, str]] | None = None  # (time, stem), oldest first
        self._when: dict[str, float] = {}  # stem -> time

    # --- saving ----------------------------------------------------------------------
    def save(
        self, track_key: str, crop: np.ndarray, *, reason: str, timestamp: float,
        box: Sequence[float] | None = None,
    ) -> Path | None:  # fmt: skip
        """Save ``crop`` for the track ``track_key`` that ended for ``reason`` at
        ``timestamp`` (epoch seconds, the clock's time base); return the image's path, or
        ``None`` when disabled or on an I/O error."""
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, got {reason!r}")
        if not (math.isfinite(timestamp) and timestamp >= 0):
            raise ValueError(f"timestamp must be finite epoch seconds, got {timestamp!r}")
        box_list = _box_list(box)
        if not self.cfg.enabled:
            return None
        name = f"{safe_name(track_key, TRACK_KEY_LEN)}_{reason}"
        try:
            path = save_crop(
                self.output_dir, self.camera, name, crop, timestamp=timestamp,
                folder=self.cfg.folder,
            )  # fmt: skip
        except OSError as exc:
            self._failed(track_key, exc)
            return None
        sidecar = path.with_suffix(".json")
        meta = {
            "camera": self.camera, "track_key": track_key, "reason": reason,
            "timestamp": timestamp, "box": box_list, "image": path.name,
        }  # fmt: skip
        try:
            write_atomic(sidecar, json.dumps(meta, allow_nan=False).encode())
            for p in (path, sidecar):
                os.utime(p, (timestamp, timestamp))
        except OSError as exc:
            self._unlink(path)
            self._failed(track_key, exc)
            return None
        self.saved += 1
        self._add(timestamp, str(path.with_suffix("")))
        self._enforce()
        return path

    def _failed(self, track_key: str, exc: OSError) -> None:
        self.failed += 1
        log.warning("unread crop of %s/%s not saved: %s", self.camera, track_key, exc)

    # --- bounds ----------------------------------------------------------------------
    def prune(self) -> int:
        """Rescan the camera's folder and delete what is beyond the bounds; return how
        many crops were deleted. Never raises on an I/O error."""
        self._index = None
        before = self.removed
        self._enforce()
        return self.removed - before

    def count(self) -> int:
        """Crops currently kept (after a scan of the folder when none was done yet)."""
        return len(self._load())

    def _load(self) -> list[tuple[float, str]]:
        if self._index is None:
            self._when = self._scan()
            self._index = sorted((t, s) for s, t in self._when.items())
        return self._index

    def _scan(self) -> dict[str, float]:
        found: dict[str, float] = {}
        now = self.clock()
        try:
            days = [d for d in self.root.iterdir() if d.is_dir()]
        except OSError:  # no folder yet, or unreadable: nothing to bound
            return found
        for day in days:
            try:
                entries = list(day.iterdir())
            except OSError as exc:
                log.warning("cannot list %s: %s", day, exc)
                continue
            for f in entries:
                try:
                    mtime = f.stat().st_mtime
                except OSError:
                    continue
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    if mtime < now - STALE_TMP_S:
                        self._unlink(f)
                elif f.suffix in (".jpg", ".json"):
                    stem = str(f.with_suffix(""))
                    if f.suffix == ".jpg" or stem not in found:  # the image's time wins
                        found[stem] = mtime
            self._rmdir_if_empty(day)
        return found

    def _add(self, when: float, stem: str) -> None:
        index = self._load()
        old = self._when.get(stem)
        if old is not None:  # the same track saved again: it replaced the files
            del index[bisect.bisect_left(index, (old, stem))]
        self._when[stem] = when
        bisect.insort(index, (when, stem))

    def _enforce(self) -> None:
        index = self._load()
        oldest_kept = self.clock() - self.cfg.max_age_s
        while index and (len(index) > self.cfg.max_count or index[0][0] < oldest_kept):
            _, stem = index.pop(0)
            del self._when[stem]
            self._delete(stem)

    def _delete(self, stem: str) -> None:
        for suffix in (".jpg", ".json"):  # not with_suffix: a safe name may contain dots
            self._unlink(Path(stem + suffix))
        self.removed += 1
        self._rmdir_if_empty(Path(stem).parent)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", path, exc)

    @staticmethod
    def _rmdir_if_empty(folder: Path) -> None:
        with contextlib.suppress(OSError):  # fails, harmlessly, while anything is left
            folder.rmdir()
