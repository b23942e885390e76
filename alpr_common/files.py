"""Names that become path components, Redis key segments or MQTT topic levels."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_NAME = 128


def safe_name(value: str, max_len: int = MAX_NAME) -> str:
    """``value`` reduced to one safe path component / key segment / MQTT topic level.

    Every character outside ``[A-Za-z0-9_.-]`` becomes ``_`` (so ``/``, ``\\``, ``+``,
    ``#``, NUL, spaces and non-ASCII are gone), leading dots are removed (no ``.``, ``..``
    or hidden files) and the result is cut to ``max_len``; an empty result becomes ``_``.
    """
    name = _UNSAFE.sub("_", str(value)).lstrip(".")[:max_len]
    return name or "_"
