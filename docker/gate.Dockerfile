# OVR-ALPR gate service (alpr-gate): decisions, history database, operator dashboard + API.
# No models, no OpenCV: the `gate` extra only (FastAPI, SQLAlchemy, psycopg, Redis, MQTT).
#   docker build -f docker/gate.Dockerfile -t ovr-alpr-gate .
#   docker run -p 8080:8080 -v $PWD/docker/gate.compose.yaml:/config/gate.yaml:ro ovr-alpr-gate
# Not built in CI: the development machines have no Docker engine (tests/test_deploy_files.py
# checks this file statically; tests/test_wheel_install.py runs the same non-editable install).
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/ovr-alpr
COPY pyproject.toml README.md ./
# The gate reads the edge's event contract and shared sinks; ensemble for box contracts.
COPY alpr_common ./alpr_common
COPY ensemble ./ensemble
COPY edge_client ./edge_client
COPY gate ./gate
RUN pip install ".[gate]" && rm -rf /opt/ovr-alpr/build
# History database (SQLite) and crops live under /data: mount a volume there.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin alpr \
 && mkdir -p /data && chown alpr:alpr /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/health', timeout=4)"]
ENTRYPOINT ["alpr-gate"]
CMD ["--config", "/config/gate.yaml"]
