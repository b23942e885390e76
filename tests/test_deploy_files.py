"""Deployment files parse and wire together (no Docker engine or cluster here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_client.config import parse_config

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def test_compose_services_and_edge_config() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert {"triton", "redis", "mosquitto", "edge1", "edge2"} <= set(compose["services"])
    cfg = parse_config(yaml.safe_load((DOCKER / "edge.compose.yaml").read_text()))
    assert set(cfg.cameras) == {"cam1", "cam2"} and cfg.triton.urls == ["triton:8001"]
    for edge in ("edge1", "edge2"):
        cam = compose["services"][edge]["command"][1]
        assert cam in cfg.cameras


def test_kubernetes_manifests() -> None:
    docs = [
        d
        for f in sorted((DOCKER / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
    ]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "ovr-alpr-triton") in kinds and ("Service", "ovr-alpr-triton") in kinds
    assert ("StatefulSet", "ovr-alpr-redis") in kinds
    triton = next(
        d for d in docs if d["metadata"]["name"] == "ovr-alpr-triton" and d["kind"] == "Deployment"
    )
    assert triton["spec"]["replicas"] >= 2
    edge_cfg = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["edge.yaml"]
    assert parse_config(yaml.safe_load(edge_cfg)).cameras["cam1"].mode == "vehicles"
