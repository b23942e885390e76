"""Expiring, HMAC-signed links to local files (event crops served by ``crop_server``).

A link names a file by its path relative to the served folder plus an expiry time, and
carries ``HMAC-SHA256(secret, "ovr-link-v1\\n" + path + "\\n" + expires)`` in hex, so
whoever holds the secret (the edge client) can hand out links that the crop server
checks without any state: a tampered path or expiry, or a link past its expiry, is
refused. URL form: ``{base}/{quoted path}?expires={unix seconds}&sig={hex}``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from enum import StrEnum

_DOMAIN = b"ovr-link-v1\n"


class LinkCheck(StrEnum):
    """What ``verify`` found."""

    OK = "ok"
    BAD_SIGNATURE = "bad_signature"  # wrong secret, tampered path or expiry, malformed
    EXPIRED = "expired"


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("signing secret is empty")
    return key


def canonical_path(path: str) -> str:
    """``path`` as a link names it: relative, ``/``-separated, no empty, ``.`` or ``..``
    component, no backslash, NUL or control character. Raises ``ValueError`` (naming the
    path) otherwise, so a link can never point outside the served folder."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"link path must be a non-empty string, got {path!r}")
    if path.startswith("/") or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"link path must be relative, without backslashes or controls: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"link path has an empty, '.' or '..' component: {path!r}")
    return path


def sign(path: str, expires: int, secret: str | bytes) -> str:
    """The hex signature of ``path`` (see ``canonical_path``) valid until ``expires``
    (Unix seconds)."""
    msg = _DOMAIN + canonical_path(path).encode("utf-8") + b"\n" + str(int(expires)).encode()
    return hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()


def verify(
    path: str,
    expires: int | str,
    signature: str,
    secret: str | bytes,
    *,
    now: float | None = None,
) -> LinkCheck:
    """Check a link: the signature first (constant-time), then the expiry."""
    try:
        when = int(expires)
        expected = sign(path, when, secret)
    except (TypeError, ValueError):
        return LinkCheck.BAD_SIGNATURE
    if not hmac.compare_digest(expected, str(signature).lower()):
        return LinkCheck.BAD_SIGNATURE
    if (time.time() if now is None else now) > when:
        return LinkCheck.EXPIRED
    return LinkCheck.OK


def signed_url(
    base: str, path: str, secret: str | bytes, *, ttl_s: float, now: float | None = None
) -> str:
    """``base`` (``http(s)://host:port[/prefix]``) + the signed link to ``path``, valid for
    ``ttl_s`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    query = urllib.parse.urlencode({"expires": expires, "sig": sign(path, expires, secret)})
    return f"{base.rstrip('/')}/{urllib.parse.quote(canonical_path(path))}?{query}"
