"""The training recipe's configuration (``config/train/plate_ocr.yaml``), validated.

One pydantic tree; unknown keys are errors (a typo must not silently train something
else). ``job`` resolves it into the plain JSON the torch-side trainer reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """The training configuration is unusable; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSize(_Strict):
    height: int = Field(32, ge=16, le=96)
    width: int = Field(128, ge=32, le=512)


class ModelSpec(_Strict):
    channels: tuple[int, int, int, int, int] = (24, 48, 96, 128, 160)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    time_pool: Literal[2, 4] = 4  # input columns per CTC time step


class DataSet(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    folder: Path
    labels: str = "labels.csv"
    weight: float = Field(gt=0.0)


class Synthetic(_Strict):
    count: int = Field(24000, ge=0)
    weight: float = Field(0.5, ge=0.0)
    val_count: int = Field(600, ge=0)
    height: int = Field(96, ge=24, le=256)


class Data(_Strict):
    val_percent: int = Field(15, ge=0, le=50)
    sets: list[DataSet] = []
    synthetic: Synthetic = Synthetic()


class Schedule(_Strict):
    steps: int = Field(7000, ge=1)
    batch: int = Field(64, ge=2, le=1024)
    lr: float = Field(0.002, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    threads: int = Field(2, ge=1, le=256)
    eval_every: int = Field(1000, ge=1)
    max_minutes: float = Field(80.0, gt=0.0)


class TrainConfig(_Strict):
    version: int = 1
    seed: int = 20261201
    alphabet: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    input: InputSize = InputSize()
    model: ModelSpec = ModelSpec()
    data: Data = Data()
    train: Schedule = Schedule()
    init_from: Path | None = None
    output: Path = Path("runs/plate_ocr")

    @field_validator("version")
    @classmethod
    def _known(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"unknown config version {v}; the only version is 1")
        return v

    @field_validator("alphabet")
    @classmethod
    def _alphabet(cls, v: str) -> str:
        if not v or len(set(v)) != len(v) or not all(c.isascii() and c.isalnum() for c in v):
            raise ValueError("alphabet must be unique ASCII letters/digits")
        return v.upper()


def load(path: Path) -> TrainConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path}: invalid training config:\n  " + "\n  ".join(lines)) from None
    if not cfg.data.sets and cfg.data.synthetic.count == 0:
        raise ConfigError(f"{path}: no data: list a set under data.sets or synthetic.count > 0")
    return cfg


def job(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """The plain JSON the trainer (``python -m training.train``) runs."""
    return {
        "seed": cfg.seed,
        "alphabet": cfg.alphabet,
        "height": cfg.input.height,
        "width": cfg.input.width,
        "channels": list(cfg.model.channels),
        "dropout": cfg.model.dropout,
        "time_pool": cfg.model.time_pool,
        "sets": [
            {
                "name": s.name,
                "folder": str(s.folder.resolve()),
                "labels": s.labels,
                "weight": s.weight,
            }
            for s in cfg.data.sets
        ],
        "val_percent": cfg.data.val_percent,
        "synthetic": cfg.data.synthetic.model_dump(),
        **cfg.train.model_dump(),
        "init_from": str(cfg.init_from.resolve()) if cfg.init_from else None,
        "out": str(out.resolve()),
    }
