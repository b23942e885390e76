# OVR-ALPR server on NVIDIA's Triton container (native onnxruntime + TensorRT backends, GPU).
#   docker build -f docker/server.Dockerfile -t ovr-alpr-server .
#   docker run --gpus all --shm-size 1g -p 8000-8002:8000-8002 ovr-alpr-server
# Not built in CI: the development machines have no Docker engine (see README, "Status").
# 25.01+ is Ubuntu 24.04 with Python 3.12 (the project needs Python >= 3.11).
FROM nvcr.io/nvidia/tritonserver:25.01-py3
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1

WORKDIR /opt/ovr-alpr
COPY pyproject.toml README.md ./
# Only the server's code: model.py files import `ensemble` (and the shared `alpr_common`
# pieces it uses), nothing of the edge or the gate.
COPY alpr_common ./alpr_common
COPY ensemble ./ensemble
# The checkout-level files alpr-models and the variants read (found from this directory).
COPY model_repository ./model_repository
COPY weights ./weights
COPY config/triton ./config/triton
COPY scripts/make_variant.py ./scripts/make_variant.py
# Installed into the system Python that the Python-backend stub embeds (numpy<2 pinned for
# it); the container's own Triton is used, so not the `bundled-triton` extra.
RUN pip install ".[server]" && rm -rf build \
 && alpr-models fetch && python scripts/make_variant.py onnxruntime /models
# /opt/tritonserver/bin/tritonserver is found first by the `tritonserver` wrapper.
CMD ["tritonserver", "--model-repository", "/models"]
