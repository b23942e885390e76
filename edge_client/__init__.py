"""The edge client: decode a camera, detect and track, send each new track's best crop for
reading (``edge-client``, ``alpr-cache``, ``alpr-evaluate``)."""

import os as _os

# One BLAS thread unless the user chose otherwise, set before numpy loads. The edge's linear
# algebra is tiny (a Kalman filter per track), and OpenBLAS's worker thread busy-waits after
# every call: measured at 12.6 ms of CPU per frame, more than the client's own work, taken
# from the model server on the same cores (scripts/bench_edge.py, cpu_ms_per_frame).
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
