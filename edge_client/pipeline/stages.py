"""What a camera loop is given: its collaborators, in one dataclass.

Each field is a protocol, so tests pass fakes through the same door the CLI passes the
real implementations (``edge_client.cli.edge.build_pipeline``): the detector
(``FrameDetector``), the tracker, the read worker (``ReadQueue``), the track cache
(``TrackStore``), the sinks (``EventSink``), the resume state (``ResumeStore``), the
source (``SourceFactory``), and the clocks and id source.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_client.contracts import Box, Tracker
from edge_client.detect import FrameDetector
from edge_client.events import PlateEvent, VehicleEvent
from edge_client.metrics import Metrics
from edge_client.plates.formats import PlateFormat
from edge_client.reader import ReadJob, ReadOutcome
from edge_client.source import SourceFactory
from edge_client.state.resume import Reported

from .cache import TrackStore


class ReadQueue(Protocol):
    """The read worker as the loop sees it (``edge_client.reader.ReadWorker``): jobs go in
    with ``submit`` (False: queue full, the track stays pending), one outcome per job
    comes back on ``outcomes``."""

    outcomes: queue.Queue[ReadOutcome]

    def submit(self, job: ReadJob) -> bool: ...

    def pending(self) -> int: ...


class EventSink(Protocol):
    """Where events go (``alpr_common.sinks.SinkSet``)."""

    def emit(self, event: PlateEvent | VehicleEvent) -> None: ...


class ResumeStore(Protocol):
    """Restart state (``edge_client.state.resume.ResumeState``)."""

    def load_cursor(self) -> int: ...

    def save_cursor(self, frame: int) -> None: ...

    def load_reported(self) -> list[Reported]: ...

    def add_reported(self, rep: Reported) -> None: ...

    def match(self, t: float, box: Box) -> Reported | None: ...


def random_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Stages:
    """A camera loop's collaborators (see the module docstring).

    ``clock`` is wall time (event and job timestamps, read retry pauses); ``monotonic``
    measures periods, backoffs and stage durations; ``sleep`` is the loop's only pause;
    ``new_id`` gives the run id and event id suffixes (hex)."""

    detector: FrameDetector
    tracker: Tracker
    worker: ReadQueue
    cache: TrackStore
    sinks: EventSink
    resume: ResumeStore
    source: SourceFactory
    formats: Sequence[PlateFormat] = ()
    metrics: Metrics = field(default_factory=Metrics)
    labels: Mapping[int, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    new_id: Callable[[], str] = random_id
