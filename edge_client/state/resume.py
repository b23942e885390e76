"""Surviving restarts: where to resume a file, and which new tracks were already reported.

Keys (next to the track cache's, same namespace, same TTL):

- ``alpr:{camera}:cursor:{source_id}`` (string): the frame a restarted client resumes a
  file from: the first frame of the oldest track still unreported, or the last frame
  processed when none is pending, so nothing in flight at a crash is lost.
- ``alpr:{camera}:reported:{source_id}`` (sorted set, score = last_seen): one JSON member
  per reported vehicle with its plate, time span and first/last boxes. A new track whose
  box matches one reported *before this run* (interpolated at the same time) is adopted
  as already read: no OCR, no second event. Vehicles this run reported are written for
  the next run but never matched in this one: within a run the tracker tells vehicles
  apart and the plate dedup window catches a split track, while a box match would
  swallow the next car stopping where the last one stood (a queue at a gate).

Redis being down never raises here: the client then simply resumes from the start and
relies on the plate dedup window.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis

from alpr_common.geometry import Box, iou

log = logging.getLogger("ovr_alpr.resume")
ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def source_id(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Reported:
    plate: str
    t0: float
    t1: float
    box0: Box
    box1: Box
    event_id: str

    def box_at(self, t: float) -> Box:
        if self.t1 <= self.t0:
            return self.box1
        a = min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0)))
        return tuple(p + a * (q - p) for p, q in zip(self.box0, self.box1, strict=True))  # type: ignore[return-value]

    def matches(self, t: float, box: Box, *, slack_s: float, min_iou: float) -> bool:
        return self.t0 - slack_s <= t <= self.t1 + slack_s and iou(self.box_at(t), box) >= min_iou


class ResumeState:
    def __init__(self, client: redis.Redis | None, camera: str, source: str, ttl_s: int) -> None:
        self.r, self.camera, self.ttl_s = client, camera, ttl_s
        self.cursor_key = f"alpr:{camera}:cursor:{source_id(source)}"
        self.reported_key = f"alpr:{camera}:reported:{source_id(source)}"
        self.known: list[Reported] = []  # reported before this run (load_reported)
        self.added = 0  # reported by this run (written for the next one)

    def _call(self, fn: str, *args: Any, **kw: Any) -> Any:
        if self.r is None:
            return None
        try:
            return getattr(self.r, fn)(*args, **kw)
        except ERRORS as exc:
            log.debug("resume state unavailable: %s", exc)
            return None

    def load_cursor(self) -> int:
        value = self._call("get", self.cursor_key)
        return int(value) if value is not None else 0

    def save_cursor(self, frame: int) -> None:
        self._call("set", self.cursor_key, int(frame), ex=self.ttl_s)

    def clear(self) -> None:
        self._call("delete", self.cursor_key, self.reported_key)

    def load_reported(self, limit: int = 1000) -> list[Reported]:
        members = self._call("zrevrange", self.reported_key, 0, limit - 1) or []
        out = []
        for m in members:
            try:
                d = json.loads(m)
                out.append(
                    Reported(
                        d["plate"], d["t0"], d["t1"], tuple(d["b0"]), tuple(d["b1"]), d["event"]
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        self.known = out
        return out

    def add_reported(self, rep: Reported) -> None:
        """Remember ``rep`` for a restarted client (not matched by this run)."""
        self.added += 1
        member = json.dumps(
            {"plate": rep.plate, "t0": rep.t0, "t1": rep.t1, "b0": list(rep.box0),
             "b1": list(rep.box1), "event": rep.event_id}
        )  # fmt: skip
        self._call("zadd", self.reported_key, {member: rep.t1})
        self._call("expire", self.reported_key, self.ttl_s)
        if self.added % 50 == 0:  # keep the index bounded
            self._call("zremrangebyrank", self.reported_key, 0, -2001)

    def match(
        self, t: float, box: Box, *, slack_s: float = 2.0, min_iou: float = 0.3
    ) -> Reported | None:
        for rep in reversed(self.known):
            if rep.matches(t, box, slack_s=slack_s, min_iou=min_iou):
                return rep
        return None
