# Slim OVR-ALPR edge client (CPU decode). No models: the server does the inference.
# The `edge` extra only: no FastAPI / SQLAlchemy / psycopg (those are the gate's).
#   docker build -f docker/edge.Dockerfile -t ovr-alpr-edge .
# Not built in CI: the development machines have no Docker engine (tests/test_wheel_install.py
# runs the same non-editable install and the demo video through it).
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ovr-alpr
COPY pyproject.toml README.md ./
# The plate formats ship inside edge_client (package data); the camera config is mounted.
COPY alpr_common ./alpr_common
COPY ensemble ./ensemble
COPY edge_client ./edge_client
RUN pip install ".[edge]" && rm -rf /opt/ovr-alpr/build \
 && mkdir -p /opt/ovr-alpr/runs && chown 65534:65534 /opt/ovr-alpr/runs
USER 65534:65534
ENTRYPOINT ["edge-client"]
CMD ["--camera", "cam1", "--config", "/config/edge.yaml"]
