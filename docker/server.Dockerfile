# OVR-ALPR server on NVIDIA's Triton container (native onnxruntime + TensorRT backends, GPU).
#   docker build -f docker/server.Dockerfile -t ovr-alpr-server .
#   docker run --gpus all --shm-size 1g -p 8000-8002:8000-8002 ovr-alpr-server
# Not built in CI: the development machines have no Docker engine (see README, "Status").
# 25.01+ is Ubuntu 24.04 with Python 3.12 (the project needs Python >= 3.11).
FROM nvcr.io/nvidia/tritonserver:25.01-py3
ENV PIP_BREAK_SYSTEM_PACKAGES=1

WORKDIR /opt/ovr-alpr
COPY pyproject.toml README.md ./
COPY ensemble ./ensemble
COPY edge_client ./edge_client
COPY model_repository ./model_repository
COPY config ./config
COPY scripts ./scripts
# The Python backend stub uses the system Python; the project pins numpy<2 for it.
RUN pip install --no-cache-dir -e . && alpr-models fetch \
 && python scripts/make_variant.py onnxruntime /models
# /opt/tritonserver/bin/tritonserver is found first by the `tritonserver` wrapper.
CMD ["tritonserver", "--model-repository", "/models"]
