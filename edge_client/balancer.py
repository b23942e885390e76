"""Request-level balancing over Triton replicas: choose one, eject, back off, probe, recover.

One ``Balancer`` holds the replicas named by ``triton.urls``: ``host:port`` entries as they
are, ``dns+host:port`` entries as every address the name resolves to (a Kubernetes headless
Service lists one per ready pod), re-resolved every ``dns_refresh_s``. Each request goes to
one replica chosen by the policy:

- ``least_outstanding`` (default): the replica with the fewest requests in flight from this
  client, ties taken in turn (so a sequential caller alternates);
- ``round_robin``: each replica in turn;
- ``failover``: the first replica in configured order, kept until it fails, then the next.

A request whose replica does not answer (the call raises ``ReplicaDown``) is retried once on
another replica (reads are idempotent). ``eject_after`` consecutive failures (requests or
health probes) eject a replica: it gets no traffic while ejected, and is probed again after
a capped exponential backoff (``alpr_common.backoff``); a passed probe (or any answered
request) brings it back. When every replica is ejected, requests still go to them (fail
open) rather than failing unasked.

Pure logic over injected pieces: ``connect`` (address -> connection), ``probe``
(connection -> ready?), ``resolve`` (DNS) and ``clock``; ``check()`` runs one round of
probes and DNS refreshes, ``start()`` runs it on a daemon thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar, get_args

from alpr_common.backoff import Backoff, Retry

Policy = Literal["least_outstanding", "round_robin", "failover"]
POLICIES: tuple[str, ...] = get_args(Policy)
DNS_PREFIX = "dns+"
C = TypeVar("C")
T = TypeVar("T")
log = logging.getLogger("ovr_alpr.balancer")
EJECT_BACKOFF = Backoff(1.0, 30.0)  # first re-probe after 1 s, then 2, 4, ... up to 30 s


class ReplicaDown(Exception):
    """Raised by a balanced call when its replica did not answer (refused, unreachable, past
    its deadline): counted as that replica's failure, and the request is retried elsewhere."""


class NoReplicaAnswered(RuntimeError):
    """No replica answered the request (or there is none): ``tried`` lists the addresses."""

    def __init__(self, message: str, tried: Sequence[str]) -> None:
        super().__init__(message)
        self.tried = tuple(tried)


@dataclass(frozen=True)
class Target:
    """One ``triton.urls`` entry: ``host:port`` or ``dns+host:port``."""

    host: str
    port: int
    dns: bool

    @classmethod
    def parse(cls, text: str) -> Target:
        dns = text.startswith(DNS_PREFIX)
        rest = text[len(DNS_PREFIX) :] if dns else text
        host, sep, port = rest.rpartition(":")
        if not sep or not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port or dns+host:port, got {text!r}")
        return cls(host, int(port), dns)

    def __str__(self) -> str:
        return f"{DNS_PREFIX if self.dns else ''}{self.host}:{self.port}"


def resolve_dns(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA records) as sorted ``ip:port``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = {
        f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}"
        for info in infos
    }
    return sorted(found)


@dataclass(frozen=True)
class BalanceSettings:
    """How requests are spread and when a replica is taken out and brought back."""

    policy: Policy = "least_outstanding"
    eject_after: int = 3
    backoff: Backoff = EJECT_BACKOFF
    health_interval_s: float = 5.0
    dns_refresh_s: float = 30.0
    retries: int = 1

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"balance policy must be one of {POLICIES}, got {self.policy!r}")
        if self.eject_after < 1 or self.retries < 0:
            raise ValueError(f"eject_after >= 1 and retries >= 0, got {self}")
        if self.health_interval_s <= 0 or self.dns_refresh_s <= 0:
            raise ValueError(f"health_interval_s and dns_refresh_s must be > 0, got {self}")


@dataclass(frozen=True)
class ReplicaStats:
    """One replica as this client sees it (the metrics read these)."""

    address: str
    requests: int
    failures: int
    outstanding: int
    ejected: bool
    consecutive_failures: int


@dataclass(eq=False)
class _Replica(Generic[C]):
    address: str
    conn: C
    retry: Retry
    requests: int = 0
    failures: int = 0
    outstanding: int = 0
    consecutive: int = 0
    ejected_until: float | None = None  # when set: ejected, probed again at that time
    next_probe: float = 0.0
    removed: bool = False
    probing: bool = field(default=False)


class Balancer(Generic[C]):
    """Spreads calls over replicas; thread-safe. See the module docstring."""

    def __init__(
        self,
        targets: Sequence[str],
        connect: Callable[[str], C],
        *,
        settings: BalanceSettings = BalanceSettings(),
        probe: Callable[[C], bool] | None = None,
        close: Callable[[C], None] = lambda conn: None,
        resolve: Callable[[str, int], list[str]] = resolve_dns,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not targets:
            raise ValueError("a balancer needs at least one target")
        self.targets = [Target.parse(t) for t in targets]
        self.settings = settings
        self._connect, self._probe, self._close = connect, probe, close
        self._resolve, self._clock = resolve, clock
        self._lock = threading.Lock()
        self._replicas: list[_Replica[C]] = []
        self._resolved: dict[Target, list[str]] = {}  # last good answer per dns target
        self.dns_error: str | None = None
        self._next_refresh = float("-inf")
        self._refreshing = False
        self._cursor = 0
        self._active: str | None = None  # failover: the replica in use
        self.retried = 0  # requests answered by a second replica after the first failed
        self.last_address: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.dynamic:
            self._apply([str(t) for t in self.targets])

    # --- membership -------------------------------------------------------------------
    @property
    def dynamic(self) -> bool:
        """Whether some target is resolved through DNS (and refreshed)."""
        return any(t.dns for t in self.targets)

    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return [r.address for r in self._replicas]

    def refresh(self) -> None:
        """Resolve the ``dns+`` targets now; a failed name keeps its last addresses."""
        addresses: list[str] = []
        errors = []
        for t in self.targets:
            if not t.dns:
                addresses.append(str(t))
                continue
            try:
                found = self._resolve(t.host, t.port)
                self._resolved[t] = found
            except OSError as exc:
                errors.append(f"{t}: {exc}")
                found = self._resolved.get(t, [])
            if not found:
                errors.append(f"{t} resolved to no address")
            addresses += found
        self.dns_error = "; ".join(errors) or None
        if errors:
            log.warning("Triton replicas: %s", self.dns_error)
        with self._lock:
            self._apply(list(dict.fromkeys(addresses)))
            self._next_refresh = self._clock() + self.settings.dns_refresh_s
            if not self._replicas:  # nothing to send to: try again soon
                self._next_refresh = self._clock() + min(1.0, self.settings.dns_refresh_s)

    def _apply(self, addresses: list[str]) -> None:
        """Make the replica list ``addresses`` (lock held): keep known ones, add new ones,
        drop the rest (closed now, or when their last request ends)."""
        known = {r.address: r for r in self._replicas}
        keep = set(addresses)
        for r in self._replicas:
            if r.address not in keep:
                r.removed = True
                log.info("Triton replica %s left the set", r.address)
                if r.outstanding == 0:
                    self._close(r.conn)
        self._replicas = [
            known.get(a) or _Replica(a, self._connect(a), self.settings.backoff.retry())
            for a in addresses
        ]

    def _refresh_if_due(self) -> None:
        if not self.dynamic or self._stop.is_set():  # closed: no new connections
            return
        with self._lock:
            if self._refreshing or self._clock() < self._next_refresh:
                return
            self._refreshing = True
        try:
            self.refresh()
        finally:
            with self._lock:
                self._refreshing = False

    # --- choosing ---------------------------------------------------------------------
    def _choose(self, exclude: Sequence[str]) -> _Replica[C] | None:
        """The replica for the next request (lock held), its counters taken."""
        live = [r for r in self._replicas if r.address not in exclude]
        if not live:
            return None
        pool = [r for r in live if r.ejected_until is None] or live  # all ejected: fail open
        policy = self.settings.policy
        if policy == "failover":
            order = [r.address for r in self._replicas]
            start = order.index(self._active) if self._active in order else 0
            ranked = sorted(pool, key=lambda r: (order.index(r.address) - start) % len(order))
            pick = next((r for r in ranked if r.consecutive == 0), ranked[0])
            if self._active is not None and pick.address != self._active:
                log.warning("Triton %s failing; using %s", self._active, pick.address)
            self._active = pick.address
        else:
            start = self._cursor % len(self._replicas)  # turns over the whole set
            self._cursor += 1
            rotated = self._replicas[start:] + self._replicas[:start]
            turns = [r for r in rotated if r in pool]
            pick = turns[0] if policy == "round_robin" else min(turns, key=lambda r: r.outstanding)
        pick.outstanding += 1
        pick.requests += 1
        return pick

    def _done(self, r: _Replica[C], answered: bool) -> None:
        with self._lock:
            r.outstanding -= 1
            if answered:
                self._healthy(r)
            else:
                self._failed(r)
            if r.removed and r.outstanding == 0:
                self._close(r.conn)

    def _healthy(self, r: _Replica[C]) -> None:
        if r.ejected_until is not None:
            log.info("Triton replica %s is back", r.address)
        r.consecutive, r.ejected_until = 0, None
        r.retry.reset()

    def _failed(self, r: _Replica[C]) -> None:
        r.failures += 1
        r.consecutive += 1
        now = self._clock()
        if r.ejected_until is not None:  # still down: wait longer before the next probe
            r.ejected_until = now + r.retry.fail()
        elif r.consecutive >= self.settings.eject_after:
            r.ejected_until = now + r.retry.fail()
            log.warning(
                "Triton replica %s ejected after %d consecutive failures (probed again in "
                "%.1fs)", r.address, r.consecutive, r.ejected_until - now,
            )  # fmt: skip

    def call(self, fn: Callable[[C], T]) -> T:
        """``fn(connection)`` on a chosen replica; when it raises ``ReplicaDown``, once more
        (``settings.retries``) on another. Any other exception means the replica answered
        (a refused request would fail the same elsewhere) and passes through."""
        self._refresh_if_due()
        tried: list[str] = []
        errors: list[str] = []
        for attempt in range(1 + self.settings.retries):
            with self._lock:
                r = self._choose(tried)
            if r is None:
                break
            tried.append(r.address)
            try:
                out = fn(r.conn)
            except ReplicaDown as exc:
                self._done(r, answered=False)
                errors.append(f"{r.address}: {exc}")
                continue
            except BaseException:
                self._done(r, answered=True)
                raise
            self._done(r, answered=True)
            self.last_address = r.address
            if attempt:
                self.retried += 1
            return out
        if not tried:
            why = f" ({self.dns_error})" if self.dns_error else ""
            raise NoReplicaAnswered(f"no Triton replica in {self.describe()}{why}", tried)
        raise NoReplicaAnswered("; ".join(errors), tried)

    def describe(self) -> str:
        return ", ".join(str(t) for t in self.targets)

    # --- health -----------------------------------------------------------------------
    def check(self) -> None:
        """One round: refresh DNS when due, probe the replicas whose probe is due (healthy
        ones every ``health_interval_s``, ejected ones when their backoff ends)."""
        self._refresh_if_due()
        if self._probe is None:
            return
        now = self._clock()
        with self._lock:
            due = [r for r in self._replicas if not r.probing and self._probe_due(r, now)]
            for r in due:
                r.probing = True
        for r in due:
            try:
                ok = self._probe(r.conn)
            except Exception:  # a probe that raises is a failed probe
                ok = False
            with self._lock:
                r.probing = False
                r.next_probe = self._clock() + self.settings.health_interval_s
                if ok and r.ejected_until is not None:
                    self._healthy(r)
                elif not ok:
                    self._failed(r)

    @staticmethod
    def _probe_due(r: _Replica[C], now: float) -> bool:
        if r.ejected_until is not None:
            return now >= r.ejected_until
        return now >= r.next_probe

    def any_ready(self) -> bool:
        """Whether some replica passes a probe now (one that does is back in the set)."""
        self._refresh_if_due()
        with self._lock:
            replicas = list(self._replicas)
        for r in replicas:
            try:
                ok = self._probe(r.conn) if self._probe is not None else True
            except Exception:
                ok = False
            if ok:
                with self._lock:
                    self._healthy(r)
                return True
        return False

    def start(self, tick_s: float = 0.5) -> Balancer[C]:
        """Run ``check()`` every ``tick_s`` on a daemon thread until ``close()``."""
        if self._thread is None:

            def loop() -> None:
                while not self._stop.wait(tick_s):
                    try:
                        self.check()
                    except Exception:  # never let the checker die
                        log.exception("Triton health check failed")

            self._thread = threading.Thread(target=loop, name="triton-health", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the checker and close every connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for r in self._replicas:
                self._close(r.conn)
            self._replicas = []

    # --- reading ----------------------------------------------------------------------
    def stats(self) -> list[ReplicaStats]:
        with self._lock:
            return [
                ReplicaStats(
                    r.address,
                    r.requests,
                    r.failures,
                    r.outstanding,
                    r.ejected_until is not None,
                    r.consecutive,
                )
                for r in self._replicas
            ]

    def connections(self) -> list[tuple[str, C]]:
        """(address, connection) of each current replica, in order."""
        with self._lock:
            return [(r.address, r.conn) for r in self._replicas]
