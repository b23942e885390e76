# Slim OVR-ALPR edge client (CPU decode). No models: the server does the inference.
#   docker build -f docker/edge.Dockerfile -t ovr-alpr-edge .
# Not built in CI: the development machines have no Docker engine.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ovr-alpr
COPY pyproject.toml README.md ./
COPY ensemble ./ensemble
COPY edge_client ./edge_client
COPY config ./config
RUN pip install .
USER 65534:65534
ENTRYPOINT ["edge-client"]
CMD ["--camera", "cam1", "--config", "/config/edge.yaml"]
