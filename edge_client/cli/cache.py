"""``alpr-cache``: inspect and purge the edge clients' Redis track cache.

    alpr-cache [--redis URL] [--json] list CAMERA [--limit N]
    alpr-cache [--redis URL] [--json] show CAMERA TRACK_KEY
    alpr-cache [--redis URL] [--json] stats [CAMERA]      (all cameras when omitted)
    alpr-cache [--redis URL] [--json] purge CAMERA [--yes]

The URL defaults to ``$REDIS_URL`` or redis://localhost:6379/0; the password comes from
``$REDIS_PASSWORD``. Exit status: 0 done, 1 not found / purge declined, 2 usage error or
Redis unreachable / refusing the password.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from edge_client.state.cache import CacheAuthError, CacheUnavailable, TrackCache, TrackState

DEFAULT_URL = "redis://localhost:6379/0"
NS_FIELDS = ("camera", "tracks", "status", "keys", "plates", "memory_bytes")


class CliError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _track_row(s: TrackState) -> list[str]:
    return [
        s.track_key,
        s.status.value,
        s.plate or "-",
        _fmt(s.confidence),
        str(s.reads),
        _fmt(s.first_seen),
        _fmt(s.last_seen),
        s.vehicle_class or "-",
        s.updated_by or "-",
        _when(s.updated_at),
    ]


TRACK_HEADERS = (
    "TRACK_KEY",
    "STATUS",
    "PLATE",
    "CONF",
    "READS",
    "FIRST_SEEN",
    "LAST_SEEN",
    "CLASS",
    "UPDATED_BY",
    "UPDATED",
)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def cmd_list(cache: TrackCache, args: argparse.Namespace) -> int:
    tracks = cache.list_tracks(args.camera, args.limit)
    text = table(TRACK_HEADERS, [_track_row(s) for s in tracks]) if tracks else "(no tracks)"
    _out(args, [s.to_json() for s in tracks], text)
    return 0


def cmd_show(cache: TrackCache, args: argparse.Namespace) -> int:
    s = cache.get_track(args.camera, args.track_key)
    if s is None:
        raise CliError(f"no track {args.track_key!r} for camera {args.camera!r}", 1)
    d = s.to_json()
    lines = [
        f"{k:<14}{_fmt(v) if k != 'updated_at' else _when(s.updated_at)}"
        for k, v in d.items()
        if k != "votes"
    ]
    rows = [[v.text, _fmt(v.confidence), str(v.frame)] for v in s.votes]
    lines += ["votes:", table(("TEXT", "CONF", "FRAME"), rows) if rows else "(none)"]
    _out(args, d, "\n".join(lines))
    return 0


def cmd_stats(cache: TrackCache, args: argparse.Namespace) -> int:
    cameras = [args.camera] if args.camera else cache.cameras()
    stats = [{k: v for k, v in cache.stats(c).items() if k in NS_FIELDS} for c in cameras]
    rows = []
    for st in stats:
        per_status = [str(st["status"].get(k, 0)) for k in ("pending", "read", "no_plate")]
        rows.append(
            [
                st["camera"],
                str(st["tracks"]),
                *per_status,
                str(st["plates"]),
                str(st["keys"]),
                _fmt(st["memory_bytes"]),
            ]
        )
    headers = ("CAMERA", "TRACKS", "PENDING", "READ", "NO_PLATE", "PLATES", "KEYS", "MEMORY_B")
    _out(args, stats, table(headers, rows) if rows else "(no cameras)")
    return 0


def cmd_purge(cache: TrackCache, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to purge without --yes (stdin is not a terminal)")
        answer = input(f"Delete every key of camera {args.camera!r} on {cache.url}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("purge declined", 1)
    n = cache.purge(args.camera)
    _out(args, {"camera": args.camera, "deleted": n}, f"purged {n} keys of camera {args.camera}")
    return 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable JSON output",
    )
    p = argparse.ArgumentParser(
        prog="alpr-cache",
        description="Inspect and purge the edge clients' Redis track cache.",
        parents=[common],
    )
    p.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", DEFAULT_URL),
        help="redis:// or rediss:// URL (default $REDIS_URL or %(default)s); "
        "password from $REDIS_PASSWORD",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", parents=[common], help="most recently updated tracks")
    s.add_argument("camera")
    s.add_argument("--limit", type=_positive, default=50, help="at most N tracks (50)")
    s = sub.add_parser("show", parents=[common], help="one track with its votes")
    s.add_argument("camera")
    s.add_argument("track_key")
    s = sub.add_parser("stats", parents=[common], help="tracks per status, keys, memory")
    s.add_argument("camera", nargs="?")
    s = sub.add_parser("purge", parents=[common], help="delete a camera's keys")
    s.add_argument("camera")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return p


COMMANDS = {"list": cmd_list, "show": cmd_show, "stats": cmd_stats, "purge": cmd_purge}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    cache_log = logging.getLogger("edge_client.state.cache")
    level = cache_log.level
    cache_log.setLevel(logging.ERROR)  # an outage is reported once, below, not also logged
    try:
        try:
            cache = TrackCache.from_url(
                args.redis,
                os.environ.get("REDIS_PASSWORD") or None,
                client_id="alpr-cache",
                socket_timeout=2.0,
            )
        except CacheAuthError as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:  # a malformed URL
            raise CliError(f"bad --redis URL: {exc}") from None
        try:
            if not cache.available:
                raise CliError(f"Redis {cache.url} unreachable ({cache.last_error})")
            code = COMMANDS[args.command](cache, args)
            if not cache.available:  # the connection dropped: what was printed may be stale
                raise CliError(f"Redis {cache.url} became unreachable ({cache.last_error})")
            return code
        finally:
            cache.close()
    except CacheUnavailable as exc:
        print(f"alpr-cache: {exc}", file=sys.stderr)
        return 2
    except (CliError, ValueError) as exc:
        print(f"alpr-cache: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 2
    finally:
        cache_log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
