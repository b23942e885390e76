"""`alpr-gate [--config config/gate.yaml] [--host H] [--port P]`: the gate service.

Consumes the edge clients' Redis event stream, decides allow / deny / unknown per vehicle,
publishes decisions (MQTT / webhook / JSONL / Apprise notifications), keeps the history
database, and serves the operator dashboard, its API (OpenAPI at /openapi.json) and
Prometheus metrics (/metrics; also on `metrics_port` when set).

Exit codes: 2 invalid configuration (including a sink that cannot be built: an unset
credential variable, an invalid Apprise URL), 3 database unreachable. An unreachable Redis is not
fatal: the dashboard and history stay up and the consumer retries.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_CONFIG, EXIT_DATABASE = 2, 3
log = logging.getLogger("ovr_alpr.gate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpr-gate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/gate.yaml"))
    parser.add_argument("--host", help="override http.host")
    parser.add_argument("--port", type=int, help="override http.port")
    parser.add_argument("--database", help="override database.url")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import uvicorn

    from alpr_common.config import ConfigError
    from alpr_common.redis_conn import connect
    from alpr_common.secrets import secret_from_env

    from .config import load_gate_config
    from .history import History, HistoryError
    from .service import GateService
    from .web import create_app

    try:
        cfg = load_gate_config(args.config)
    except ConfigError as exc:
        print(f"alpr-gate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.database:
        cfg = cfg.model_copy(
            update={"database": cfg.database.model_copy(update={"url": args.database})}
        )
    db_password = secret_from_env(cfg.database.password_env, "database password", required=False)
    try:
        history = History(cfg.database.url, crops_dir=cfg.crops_dir, password=db_password)
    except HistoryError as exc:
        print(f"alpr-gate: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    client = connect(cfg.redis, socket_timeout=5, socket_connect_timeout=2, decode_responses=True)
    try:
        service = GateService(cfg, history, client)
    except ValueError as exc:  # a sink's credential variable unset, an invalid Apprise URL
        print(f"alpr-gate: {args.config}: {exc}", file=sys.stderr)
        history.close()
        client.close()
        return EXIT_CONFIG
    host, port = args.host or cfg.http.host, args.port or cfg.http.port
    if cfg.metrics_port:
        try:
            service.metrics.serve(cfg.metrics_port, host)
        except OSError as exc:
            print(f"alpr-gate: metrics_port {cfg.metrics_port}: {exc}", file=sys.stderr)
            service.stop()
            history.close()
            client.close()
            return EXIT_CONFIG
        log.info("gate: metrics on http://%s:%d/metrics", host, cfg.metrics_port)
    service.start()
    app = create_app(service)
    log.info("gate: dashboard on http://%s:%d/ (API: /openapi.json)", host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        service.stop()
        history.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
