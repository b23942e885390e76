"""The gate's live feed: a bounded, sequence-numbered ring of recent items (decisions,
record updates) that web clients follow by sequence number (server-sent events or
long-polling). Publishing never blocks; a slow reader that falls behind the ring simply
misses the oldest items and gets the newest ones."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LiveItem:
    seq: int
    kind: str  # "decision" | "record"
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "data": self.payload}


class LiveFeed:
    def __init__(self, size: int = 500) -> None:
        self._items: deque[LiveItem] = deque(maxlen=size)
        self._seq = 0
        self._cond = threading.Condition()

    @property
    def latest(self) -> int:
        return self._seq

    def publish(self, kind: str, payload: dict[str, Any]) -> int:
        with self._cond:
            self._seq += 1
            self._items.append(LiveItem(self._seq, kind, payload))
            self._cond.notify_all()
            return self._seq

    def since(self, seq: int, limit: int = 200) -> list[LiveItem]:
        """Items newer than ``seq`` (oldest first, at most ``limit`` of the newest)."""
        with self._cond:
            items = [it for it in self._items if it.seq > seq]
        return items[-limit:]

    def wait(self, seq: int, timeout_s: float) -> list[LiveItem]:
        """Block up to ``timeout_s`` for items newer than ``seq``."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq, timeout=timeout_s)
        return self.since(seq)
