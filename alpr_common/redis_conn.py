"""One way for every process to connect to Redis: :func:`connect` builds the client from
the ``redis:`` section of its configuration (:class:`alpr_common.config.Redis`).

Without ``sentinels`` it is ``redis.Redis.from_url(url)``. With ``sentinels`` it is
``Sentinel(sentinels).master_for(sentinel_service)``: every new connection asks the
sentinels for the current master, so after a failover the client reaches the promoted
replica by itself (a connection still open to a demoted master answers READONLY, which
redis-py turns into a ``ConnectionError`` and a reconnect). The URL's host:port is then
unused; its db, user/password and TLS (``rediss://``, ``ssl_*`` query options) apply to
the master, and the same TLS settings to the sentinels.

The password: one in the URL wins over ``password_env``'s (as with ``from_url``); the
sentinels' own comes from ``sentinel_password_env``.

``wait_replicas`` travels with the client (:func:`wait_policy`): the ``redis_stream``
sink reads it to ``WAIT`` for replicas after each batch.

    client = connect(cfg.redis, socket_timeout=0.5, decode_responses=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel

from alpr_common.config import Redis
from alpr_common.secrets import secret_from_env

__all__ = ["WaitPolicy", "connect", "describe", "wait_policy"]

_WAIT_ATTR = "alpr_wait_policy"
# URL options that address one server, not the service behind the sentinels
_ADDRESS_KEYS = ("host", "port", "path", "connection_class")


@dataclass(frozen=True)
class WaitPolicy:
    """``WAIT replicas timeout_ms`` after a write that must survive a failover."""

    replicas: int
    timeout_ms: int


def connect(
    cfg: Redis,
    *,
    socket_timeout: float = 5.0,
    socket_connect_timeout: float | None = None,
    decode_responses: bool = False,
    **options: Any,
) -> redis.Redis:
    """A client for ``cfg`` (see the module docstring). ``options`` are further
    ``redis.Redis`` connection options (``retry``, ``health_check_interval``, ...). Connects
    lazily: an unreachable server or sentinel raises on the first command
    (``redis.ConnectionError``; ``MasterNotFoundError`` when no sentinel knows a master)."""
    kwargs: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout or socket_timeout,
        "decode_responses": decode_responses,
        **options,
    }
    password = secret_from_env(cfg.password_env, "Redis password", required=False)
    if not cfg.sentinels:
        if password:
            kwargs["password"] = password
        client = redis.Redis.from_url(cfg.url, **kwargs)
    else:
        client = _sentinel_master(cfg, password, kwargs)
    if cfg.wait_replicas:
        setattr(client, _WAIT_ATTR, WaitPolicy(cfg.wait_replicas, cfg.wait_timeout_ms))
    return client


def _sentinel_master(cfg: Redis, password: str | None, kwargs: dict[str, Any]) -> redis.Redis:
    url_opts = parse_url(cfg.url)
    tls = url_opts.get("connection_class") is SSLConnection
    for key in _ADDRESS_KEYS:
        url_opts.pop(key, None)
    master = {**kwargs, **url_opts}
    if password and "password" not in url_opts:
        master["password"] = password
    tls_opts = {k: v for k, v in url_opts.items() if k.startswith("ssl_")}
    if tls:
        master["ssl"] = True
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        **({"ssl": True, **tls_opts} if tls else {}),
    }
    sentinel_password = secret_from_env(
        cfg.sentinel_password_env, "Redis Sentinel password", required=False
    )
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    sentinel = Sentinel(cfg.sentinel_addresses(), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(cfg.sentinel_service, **master)


def wait_policy(client: object) -> WaitPolicy | None:
    """The ``wait_replicas`` policy :func:`connect` attached to ``client``, if any."""
    policy = getattr(client, _WAIT_ATTR, None)
    return policy if isinstance(policy, WaitPolicy) else None


def describe(cfg: Redis) -> str:
    """Where ``cfg`` points, safe to log (no password)."""
    if cfg.sentinels:
        db = parse_url(cfg.url).get("db", 0)
        return f"sentinel service {cfg.sentinel_service} via {','.join(cfg.sentinels)} (db {db})"
    opts = parse_url(cfg.url)
    scheme = "rediss" if opts.get("connection_class") is SSLConnection else "redis"
    host = opts.get("host", "localhost")
    return f"{scheme}://{host}:{opts.get('port', 6379)}/{opts.get('db', 0)}"
