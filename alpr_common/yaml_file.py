"""Reading a YAML file with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, what: str, error: type[ValueError] = ValueError) -> object:
    """The parsed document; ``error`` ("cannot read {what} ...", "... is not valid YAML")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {exc}") from None
