"""Zero-copy-on-the-wire frames for a Triton server on the same host.

Letterboxed frames are written once into a POSIX shared-memory region registered with
Triton (system shared memory), so ``vehicle_detector`` reads them without gRPC carrying
1.2 MB per frame. On NVIDIA machines the same shape of code uses CUDA shared memory
(``tritonclient.utils.cuda_shared_memory``) so NVDEC surfaces never visit the host; that
path needs a GPU and is not built here (see README, GPU status).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from ensemble.contracts import DET_SIZE


class SystemShmInput:
    """One registered input region of ``size`` bytes (``ShmPool`` sizes it for a request)."""

    def __init__(self, client: grpcclient.InferenceServerClient, size: int) -> None:
        self.client = client
        self.size = size
        self.name = f"alpr-in-{uuid.uuid4().hex[:12]}"
        self.key = f"/{self.name}"
        self.handle = shm.create_shared_memory_region(self.name, self.key, self.size)
        try:
            client.register_system_shared_memory(self.name, self.key, self.size)
        except Exception:
            shm.destroy_shared_memory_region(self.handle)
            raise
        self.closed = False

    def tensor(self, name: str, batch: np.ndarray) -> grpcclient.InferInput:
        """Write ``batch`` (uint8 [B, S, S, 3] letterboxed frames, S <= 640: the vehicle
        detector's or the plate locator's side) into the region; return an input using it."""
        side = batch.shape[1] if batch.ndim == 4 else 0
        if batch.dtype != np.uint8 or batch.shape[1:] != (side, side, 3) or side > DET_SIZE:
            raise ValueError(
                f"expected uint8 [B, S, S, 3] with S <= {DET_SIZE}, got {batch.dtype} {batch.shape}"
            )
        if batch.nbytes > self.size:
            raise ValueError(f"batch of {batch.nbytes} bytes exceeds the region's {self.size}")
        shm.set_shared_memory_region(self.handle, [np.ascontiguousarray(batch)])
        t = grpcclient.InferInput(name, list(batch.shape), "UINT8")
        t.set_shared_memory(self.name, batch.nbytes)
        return t

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.client.unregister_system_shared_memory(self.name)
        finally:
            shm.destroy_shared_memory_region(self.handle)


class ShmPool:
    """The regions one client holds with one server: a request leases a region for as long
    as it is in flight, so concurrent requests (a camera detecting ahead) never write over
    each other's frames. A region is made on demand, sized for the request that needed it
    (one 416 px frame: 0.5 MB; a camera's requests are all alike), as many as requests ever
    overlapped, and reused; ``close`` unregisters and frees them all."""

    def __init__(self, client: grpcclient.InferenceServerClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._free: list[SystemShmInput] = []
        self._all: list[SystemShmInput] = []
        self.closed = False

    @property
    def names(self) -> list[str]:
        """The names of the regions made so far."""
        with self._lock:
            return [r.name for r in self._all]

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(r.size for r in self._all)

    @contextmanager
    def lease(self, nbytes: int) -> Iterator[SystemShmInput]:
        """A free region of at least ``nbytes`` (the smallest that fits), or a new one."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the shared-memory pool is closed")
            fits = [r for r in self._free if r.size >= nbytes]
            region = min(fits, key=lambda r: r.size) if fits else None
            if region is not None:
                self._free.remove(region)
        if region is None:
            region = SystemShmInput(self.client, size=nbytes)
            with self._lock:
                self._all.append(region)
        try:
            yield region
        finally:
            with self._lock:
                if self.closed:
                    region.close()
                else:
                    self._free.append(region)

    def close(self) -> None:
        """Unregister and free every idle region (a leased one is freed when it comes
        back); the first unregistering error is raised after all are freed."""
        with self._lock:
            self.closed = True
            idle, self._free = self._free, []
        error: Exception | None = None
        for region in idle:
            try:
                region.close()
            except Exception as exc:  # free the rest, then raise the first error
                error = error or exc
        if error is not None:
            raise error
