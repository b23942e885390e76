"""Where the OVR-ALPR checkout is: the folder holding ``model_repository/`` and ``config/``.

Code inside the packages never walks up from its own file: in a wheel install that is
``site-packages``. Defaults the processes need at run time ship inside the packages
(package data, read with ``importlib.resources``); what belongs to a checkout or a
deployment (model weights, the model repository, the example configs) is found from, in
order: a path given explicitly, ``$OVR_ALPR_ROOT``, the current directory or one of its
parents.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENV_ROOT", "MARKERS", "CheckoutNotFoundError", "checkout_root"]

ENV_ROOT = "OVR_ALPR_ROOT"
MARKERS = ("model_repository", "config")
"""Folders a checkout has (``scripts/install.sh`` and the server image run from one)."""


class CheckoutNotFoundError(FileNotFoundError):
    """No checkout where one was looked for; the message says how to point at one."""


def _is_checkout(path: Path) -> bool:
    return all((path / m).is_dir() for m in MARKERS)


def checkout_root(
    explicit: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The checkout: ``explicit``, else ``$OVR_ALPR_ROOT``, else the current directory or
    its nearest parent with ``model_repository/`` and ``config/``."""
    env = os.environ if environ is None else environ
    for given, origin in ((explicit, "the path given"), (env.get(ENV_ROOT), f"${ENV_ROOT}")):
        if given:
            path = Path(given).expanduser().resolve()
            if not _is_checkout(path):
                raise CheckoutNotFoundError(
                    f"{origin} ({path}) is not an OVR-ALPR checkout: it needs "
                    f"{' and '.join(m + '/' for m in MARKERS)}"
                )
            return path
    start = (cwd or Path.cwd()).resolve()
    for path in (start, *start.parents):
        if _is_checkout(path):
            return path
    raise CheckoutNotFoundError(
        f"no OVR-ALPR checkout (a folder with {' and '.join(m + '/' for m in MARKERS)}) at "
        f"or above {start}: run from the repository, set {ENV_ROOT}=/path/to/checkout, or "
        "pass the path explicitly"
    )
