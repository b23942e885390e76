"""The one way a secret reaches a process: configuration names an environment variable
(``*_env`` keys), never the secret itself, and ``secret_from_env`` reads it.

A ``required`` secret whose variable is unset (or empty) is a ``SecretError`` naming the
variable and what it is for, raised at start-up, so a missing credential fails loudly
instead of connecting anonymously.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class SecretError(ValueError):
    """A configured secret's environment variable is not set."""


def secret_from_env(
    var: str | None,
    what: str,
    *,
    required: bool = True,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The value of the environment variable ``var``; ``None`` when no variable is
    configured (``var`` empty) or, if not ``required``, when it is unset or empty."""
    if not var:
        return None
    value = (os.environ if environ is None else environ).get(var)
    if value:
        return value
    if required:
        raise SecretError(f"{what} environment variable {var} is not set")
    return None
