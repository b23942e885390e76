"""Constant-velocity Kalman filter on (cx, cy, aspect, h), as in SORT / DeepSORT / ByteTrack.

State (8): centre x, centre y, aspect ratio w/h, height, and their velocities per frame.
Measurement (4): the first four. Every method takes a batch (``mean [N, 8]``, ``cov
[N, 8, 8]``) so the tracker predicts and corrects all its tracks in a few numpy calls.

Noise scales with the box height (a 300 px truck jitters more in pixels than a 40 px
plate), through two knobs:

- ``std_weight_position`` (default 1/20): trust in the detector's box. Raising it makes
  the filter follow detections less closely (smoother, slower to react, predictions lag on
  turns); lowering it makes the state follow each noisy box.
- ``std_weight_velocity`` (default 1/160): how fast velocity may change. Raising it lets
  tracks accelerate / brake quickly but makes predictions through gaps noisier; lowering
  it assumes steady motion (good for highways, bad for stop-and-go).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_MIN_SIZE = 1e-3  # degenerate boxes get this width / height (keeps aspect and noise finite)


def xyxy_to_xyah(boxes: NDArray[np.floating]) -> FloatArray:
    """[N, 4] corner boxes -> [N, 4] (cx, cy, w/h, h)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], _MIN_SIZE)
    h = np.maximum(b[:, 3] - b[:, 1], _MIN_SIZE)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: NDArray[np.floating]) -> FloatArray:
    """[N, >=4] (cx, cy, w/h, h, ...) -> [N, 4] corner boxes (extra columns ignored)."""
    s = np.asarray(xyah, np.float64)
    s = s.reshape(len(s), s.shape[-1] if s.ndim > 1 else 4)
    h = s[:, 3]
    w = s[:, 2] * h
    return np.stack([s[:, 0] - w / 2, s[:, 1] - h / 2, s[:, 0] + w / 2, s[:, 1] + h / 2], axis=1)


class KalmanFilter:
    """Batched constant-velocity filter. Stateless: callers own ``mean`` and ``cov``."""

    def __init__(
        self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160
    ) -> None:
        if std_weight_position <= 0 or std_weight_velocity <= 0:
            raise ValueError("Kalman noise weights must be positive")
        self.std_pos = std_weight_position
        self.std_vel = std_weight_velocity
        self._motion = np.eye(8)
        self._motion[:4, 4:] = np.eye(4)  # x' = x + v (dt = one frame)
        self._project = np.eye(4, 8)

    def initiate(self, measurements: NDArray[np.floating]) -> tuple[FloatArray, FloatArray]:
        """New tracks from [N, 4] xyah measurements: zero velocity, wide velocity variance."""
        m = np.asarray(measurements, np.float64).reshape(-1, 4)
        n, h = len(m), m[:, 3]
        mean = np.concatenate([m, np.zeros((n, 4))], axis=1)
        p, v = 2 * self.std_pos * h, 10 * self.std_vel * h
        std = np.stack([p, p, np.full(n, 1e-2), p, v, v, np.full(n, 1e-5), v], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: FloatArray, cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance [N, 8] states one frame; returns new arrays (inputs are not modified)."""
        if len(mean) == 0:
            return mean.copy(), cov.copy()
        h = mean[:, 3]
        p, v = self.std_pos * h, self.std_vel * h
        n = len(mean)
        std = np.stack([p, p, np.full(n, 1e-2), p, v, v, np.full(n, 1e-5), v], axis=1)
        f = self._motion
        new_mean = mean @ f.T
        new_cov = f @ cov @ f.T + _diag(std**2)
        return new_mean, new_cov

    def project(self, mean: FloatArray, cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        """State -> measurement space: ([N, 4] mean, [N, 4, 4] innovation covariance)."""
        h = mean[:, 3]
        p = self.std_pos * h
        std = np.stack([p, p, np.full(len(mean), 1e-1), p], axis=1)
        hm = self._project
        return mean @ hm.T, hm @ cov @ hm.T + _diag(std**2)

    def update(
        self, mean: FloatArray, cov: FloatArray, measurements: NDArray[np.floating]
    ) -> tuple[FloatArray, FloatArray]:
        """Correct [N, 8] states with [N, 4] xyah measurements (one per state)."""
        z = np.asarray(measurements, np.float64).reshape(-1, 4)
        if len(mean) != len(z):
            raise ValueError(f"{len(mean)} states but {len(z)} measurements")
        if len(mean) == 0:
            return mean.copy(), cov.copy()
        proj_mean, proj_cov = self.project(mean, cov)
        pht = cov @ self._project.T  # [N, 8, 4]
        # gain K = P H^T S^-1, solved rather than inverted: S K^T = (P H^T)^T
        gain = np.linalg.solve(proj_cov, pht.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = z - proj_mean
        new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_cov = cov - gain @ proj_cov @ gain.transpose(0, 2, 1)
        return new_mean, new_cov


def _diag(values: FloatArray) -> FloatArray:
    """[N, k] -> [N, k, k] diagonal matrices."""
    n, k = values.shape
    out = np.zeros((n, k, k))
    idx = np.arange(k)
    out[:, idx, idx] = values
    return out
