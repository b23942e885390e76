"""The README's YAML examples are copy-paste valid: each configuration snippet, merged into
the shipped configuration where the snippet says it goes, passes the real config models
(unknown keys, bad values and missing companions fail here, not on a user's site)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_client.config import parse_config
from gate.config import parse_gate_config

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```ya?ml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
EDGE_BASE = yaml.safe_load((REPO / "config" / "edge.yaml").read_text())
GATE_BASE = yaml.safe_load((REPO / "config" / "gate.yaml").read_text())
GATE_KEYS = {"gates", "http", "database", "stream", "group", "crops_dir"}
EDGE_KEYS = {"triton", "output_dir", "status_interval_s", "crop_server"}
SHARED_KEYS = {"redis"}  # the same section in edge.yaml and gate.yaml
HA_KEYS = {"alias", "triggers", "trigger", "actions", "action", "conditions"}  # HA's schema


def merge(base: Any, add: Any) -> Any:
    if isinstance(base, dict) and isinstance(add, dict):
        out = dict(base)
        for k, v in add.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return add


def kind(snippet: Any) -> str:
    if isinstance(snippet, list) or (isinstance(snippet, dict) and HA_KEYS & set(snippet)):
        return "home-assistant"
    assert isinstance(snippet, dict), f"a README example is not a mapping: {snippet!r}"
    if "cameras" in snippet or EDGE_KEYS & set(snippet):
        return "edge"
    if GATE_KEYS & set(snippet):
        return "gate"
    if set(snippet) <= SHARED_KEYS:
        return "both"
    return "camera"  # keys of one camera (sinks:, crops:, unread_crops:, read_source: ...)


@pytest.mark.parametrize("text", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_yaml_example_is_valid(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    snippet = yaml.safe_load(text)
    for var in set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\b", text)):
        monkeypatch.setenv(var, "x" * 32)  # *_env variables the example names
    what = kind(snippet)
    if what == "home-assistant":
        return  # parsed as YAML above; its schema is Home Assistant's
    if what in ("edge", "both"):
        parse_config(merge(EDGE_BASE, snippet), "README example")
    if what in ("gate", "both"):
        parse_gate_config(merge(GATE_BASE, snippet), "README example")
    if what == "camera":
        cams = EDGE_BASE["cameras"]
        first = next(iter(cams))
        camera = merge(cams[first], snippet)
        cfg = merge(EDGE_BASE, {"cameras": {first: camera}})
        if any(s.get("image_encoding") == "url" for s in camera.get("sinks", [])):
            cfg.setdefault("crop_server", {"secret_env": "ALPR_CROP_SECRET"})
        parse_config(cfg, "README example")


def test_readme_has_config_examples() -> None:
    assert len(BLOCKS) >= 5
