"""Dashboard logins: signed, expiring session cookies and the login page.

With ``http.token_env`` set, the history, crops and live feed (personal data) and list
changes need the token: API clients send ``Authorization: Bearer <token>``; a browser logs
in once at ``/login`` with the token as password and gets a session cookie (HttpOnly,
SameSite=Strict, Secure over HTTPS) that expires after ``http.session_hours``.

A session is ``v1.<expires>.<nonce>.<signature>``, the signature an HMAC-SHA256 under a key
derived from the token, so no session state is kept: sessions survive a restart, and
changing the token ends them all. Logging out removes the cookie from the browser (a copy
taken from it stays valid until it expires: keep ``session_hours`` short where that
matters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets

SESSION_COOKIE = "alpr_gate_session"
_VERSION = "v1"
_CONTEXT = b"ovr-alpr gate session v1"


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), _CONTEXT, hashlib.sha256).digest()


def _sign(token: str, payload: str) -> str:
    mac = hmac.new(_key(token), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def new_session(token: str, now: float, ttl_s: float) -> str:
    """A session cookie value valid until ``now + ttl_s`` (epoch seconds)."""
    payload = f"{_VERSION}.{int(now + ttl_s)}.{secrets.token_hex(8)}"
    return f"{payload}.{_sign(token, payload)}"


def session_valid(value: str | None, token: str, now: float) -> bool:
    """True when ``value`` was made by ``new_session`` with this ``token`` and has not
    expired by ``now``."""
    if not value or len(value) > 200:
        return False
    payload, _, signature = value.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
        return False
    if not hmac.compare_digest(signature.encode(), _sign(token, payload).encode()):
        return False
    return now < int(parts[1])


def login_page(error: str | None = None) -> str:
    """The login form (no script, no inline style: the dashboard's CSP applies)."""
    message = f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>OVR-ALPR gate: log in</title>
  <link rel="stylesheet" href="/static/app.css">
</head>
<body>
  <main class="login">
    <h1>OVR-ALPR gate</h1>
    <form method="post" action="/login" id="login-form">
      <label>Dashboard token
        <input id="login-password" name="password" type="password" required
               autocomplete="current-password" autofocus>
      </label>
      <button type="submit" id="login-submit">Log in</button>
    </form>
    {message}
  </main>
</body>
</html>
"""
