"""Asynchronous plate reading: a worker batches crops of several tracks into one request.

The main loop submits :class:`ReadJob` with ``put_nowait`` into a bounded queue (a full
queue refuses the job, the track stays pending and is offered again later); the worker
sends up to ``max_batch`` crops per Triton request and posts one :class:`ReadOutcome` per
job. A failed request fails its jobs with the error; the main loop backs off and retries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alpr_common.plate_text import normalize

from .contracts import Read
from .plates.choose import choose
from .plates.formats import PlateFormat, rescore
from .triton_client import AlprClient, InferenceError, PlateText

log = logging.getLogger("ovr_alpr.reader")


@dataclass(frozen=True)
class ReadJob:
    camera: str
    track_id: int
    jpeg: bytes
    frame: int
    submitted: float


@dataclass(frozen=True)
class ReadOutcome:
    job: ReadJob
    read: Read | None  # None when the request failed
    error: str | None = None
    latency_s: float = 0.0


# Encoded crops -> one read per crop, in order (a failed request raises).
BatchReader = Callable[[Sequence[bytes]], Sequence[PlateText]]
NO_PLATE = PlateText("", 0.0, ())  # a crop in which no plate was read


def alpr_batch_reader(
    client: AlprClient, formats: Sequence[PlateFormat] | None = None
) -> BatchReader:
    """Vehicle crops through the ``alpr`` ensemble; the most plate-like candidate wins.
    With the camera's ``formats``, the candidate is chosen with them in mind and top-k
    rescored with its runner-up characters (``plates.choose``); its best hypothesis is
    what the track votes with."""

    def read(jpegs: Sequence[bytes]) -> list[PlateText]:
        out: list[PlateText] = []
        for reads in client.read_plates(jpegs, alternatives=bool(formats)):
            choice = choose(reads, formats or ())  # no formats: ``best_plate``'s choice
            out.append(
                PlateText(choice.text, choice.read.confidence, choice.char_confidences)
                if choice
                else NO_PLATE
            )
        return out

    return read


def plate_batch_reader(
    client: AlprClient, formats: Sequence[PlateFormat] | None = None
) -> BatchReader:
    """Plate crops straight to ``plate_ocr`` (dedicated plate cameras). With the camera's
    ``formats``, each read is top-k rescored with its runner-up characters
    (``formats.rescore``: unsure characters only, never a confident one)."""
    if not formats:
        return client.read_plate_crops

    def read(jpegs: Sequence[bytes]) -> list[PlateText]:
        out: list[PlateText] = []
        for r in client.read_plate_crop_reads(jpegs):
            text, chars = r.text, r.char_confidences
            if r.alternatives and len(chars) == len(text):
                hyp = rescore(text, chars, r.alternatives, r.alt_confidences, formats)
                text, chars = hyp.text, hyp.char_confidences
            out.append(PlateText(text, r.confidence, chars))
        return out

    return read


class ReadWorker:
    def __init__(
        self,
        reader: BatchReader,
        *,
        max_batch: int = 8,
        queue_size: int = 64,
        linger_s: float = 0.01,
    ) -> None:
        self.reader, self.max_batch, self.linger_s = reader, max_batch, linger_s
        self.jobs: queue.Queue[ReadJob] = queue.Queue(queue_size)
        self.outcomes: queue.Queue[ReadOutcome] = queue.Queue()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="read-worker", daemon=True)
        self.requests = 0  # Triton calls made
        self.crops = 0  # crops read (OCR calls counted per track read)
        self.refused = 0  # jobs refused because the queue was full
        self.failures = 0

    def start(self) -> ReadWorker:
        self.thread.start()
        return self

    def submit(self, job: ReadJob) -> bool:
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            self.refused += 1
            return False

    def pending(self) -> int:
        return self.jobs.qsize()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout_s)

    def _batch(self) -> list[ReadJob]:
        try:
            first = self.jobs.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not (self.stop_event.is_set() and self.jobs.empty()):
            batch = self._batch()
            if not batch:
                continue
            t0 = time.monotonic()
            try:
                results = self.reader([j.jpeg for j in batch])
                error = None
            except (InferenceError, OSError, RuntimeError) as exc:
                results, error = [], str(exc)
            except Exception as exc:  # a client bug must not kill the worker
                log.exception("read request failed")
                results, error = [], f"{type(exc).__name__}: {exc}"
            self.requests += 1
            dt = time.monotonic() - t0
            if error is not None:
                self.failures += 1
                for job in batch:
                    self.outcomes.put(ReadOutcome(job, None, error, dt))
                continue
            self.crops += len(batch)
            for job, (text, conf, chars) in zip(batch, results, strict=True):  # PlateText
                read = Read(normalize(text), float(conf), tuple(chars), job.frame)
                self.outcomes.put(ReadOutcome(job, read, None, dt))
