"""Zero-copy-on-the-wire frames for a Triton server on the same host.

Letterboxed frames are written once into a POSIX shared-memory region registered with
Triton (system shared memory), so ``vehicle_detector`` reads them without gRPC carrying
1.2 MB per frame. On NVIDIA machines the same shape of code uses CUDA shared memory
(``tritonclient.utils.cuda_shared_memory``) so NVDEC surfaces never visit the host; that
path needs a GPU and is not built here (see README, GPU status).
"""

from __future__ import annotations

import uuid

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from ensemble.contracts import DET_SIZE


class SystemShmInput:
    """One registered input region sized for ``max_batch`` letterboxed RGB frames."""

    def __init__(self, client: grpcclient.InferenceServerClient, max_batch: int = 16) -> None:
        self.client = client
        self.frame_bytes = DET_SIZE * DET_SIZE * 3
        self.size = self.frame_bytes * max_batch
        self.max_batch = max_batch
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
            raise ValueError(f"batch of {len(batch)} exceeds the region's {self.max_batch} frames")
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
