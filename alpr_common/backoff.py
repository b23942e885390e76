"""The one retry backoff: capped exponential, first, first*2, ... up to ``cap`` seconds.

Used by every retry loop (camera reconnects, detector outages, webhook retries, the gate's
Redis consumer), either as an iterator of delays (``delays()``) or as a small stateful
``Retry`` that is ``fail()``-ed and ``reset()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: first, first*factor, ... up to cap seconds."""

    first: float = 0.5
    cap: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not (self.first >= 0 and self.cap >= self.first and self.factor >= 1):
            raise ValueError(
                f"backoff needs 0 <= first <= cap and factor >= 1 "
                f"(got first={self.first}, cap={self.cap}, factor={self.factor})"
            )

    def delays(self) -> Iterator[float]:
        d = self.first
        while True:
            yield d
            d = min(self.cap, d * self.factor)

    def after(self, delay: float) -> float:
        """The delay that follows ``delay``."""
        return min(self.cap, delay * self.factor)

    def retry(self) -> Retry:
        return Retry(self)


@dataclass
class Retry:
    """A backoff's state across attempts: ``fail()`` returns the wait before the next
    attempt (and grows it), ``reset()`` after a success starts again from ``first``."""

    policy: Backoff
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.policy.first

    @property
    def current(self) -> float:
        """The wait the next ``fail()`` returns."""
        return self._next

    def fail(self) -> float:
        wait = self._next
        self._next = self.policy.after(wait)
        return wait

    def reset(self) -> None:
        self._next = self.policy.first
