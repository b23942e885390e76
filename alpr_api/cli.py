"""`alpr-api [--config config/api.yaml] [--host H] [--port P]`: licence-plate reading over
HTTP for CodeProject.AI clients (Blue Iris: ``POST /v1/vision/alpr``) and Plate Recognizer
clients (``POST /v1/plate-reader/``), in front of Triton. OpenAPI at /docs.

Exit codes: 2 invalid configuration (also: ``http.token_env`` names an unset variable).
An unreachable Triton is not fatal: requests get 503 until it answers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .config import ApiConfig
    from .reader import TritonPhotoReader

EXIT_CONFIG = 2
log = logging.getLogger("ovr_alpr.api")


def build(
    cfg: ApiConfig, environ: Mapping[str, str] | None = None
) -> tuple[FastAPI, TritonPhotoReader]:
    """The app and its Triton reader for ``cfg``, the token read from the variable
    ``http.token_env`` names (``SecretError`` when that variable is unset or empty)."""
    from alpr_common.secrets import secret_from_env
    from edge_client.plates.formats import load_formats

    from .app import create_app
    from .reader import TritonPhotoReader

    token = secret_from_env(cfg.http.token_env, "alpr-api token (http.token_env)", environ=environ)
    reader = TritonPhotoReader(cfg.triton, cfg.reading, load_formats())
    return create_app(cfg, reader, token), reader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpr-api", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/api.yaml"))
    parser.add_argument("--host", help="override http.host")
    parser.add_argument("--port", type=int, help="override http.port")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import uvicorn

    from alpr_common.config import ConfigError
    from alpr_common.secrets import SecretError

    from .config import load_api_config

    try:
        cfg = load_api_config(args.config)
        app, reader = build(cfg)
    except (ConfigError, SecretError) as exc:
        print(f"alpr-api: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not reader.ready():
        log.warning(
            "api: Triton at %s does not answer yet; requests get 503 until it does",
            ", ".join(cfg.triton.urls),
        )
    host, port = args.host or cfg.http.host, args.port or cfg.http.port
    log.info(
        "api: http://%s:%d/v1/vision/alpr and /v1/plate-reader/ (OpenAPI: /docs)%s",
        host, port, "" if cfg.http.token_env else "; no token configured (http.token_env)",
    )  # fmt: skip
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
