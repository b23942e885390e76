"""Deployment files parse and wire together (no Docker engine or cluster here): compose
services build existing Dockerfiles, COPY sources exist, each image copies the packages its
process imports and installs its own extra, and the gate's port and health path agree
across its config, image, compose service and Kubernetes manifests (the rest of
docker/k8s/: tests/test_k8s_manifests.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from import_graph import first_party_packages

from edge_client.config import parse_config
from gate.config import GateConfig, load_gate_config

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
WEB = (REPO / "gate" / "web.py").read_text()
HEALTH = "/api/health"
# Which process each image runs, and the extra it installs.
IMAGES = {"edge.Dockerfile": "edge", "gate.Dockerfile": "gate", "server.Dockerfile": "server"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    out = []
    for op, rest in instructions(dockerfile):
        if op == "COPY":
            *srcs, dst = [a for a in shlex.split(rest) if not a.startswith("--")]
            out.append((srcs, dst))
    return out


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return doc


def k8s_docs() -> list[dict[str, Any]]:
    return [
        d
        for f in sorted((DOCKER / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
    ]


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def k8s_gates() -> list[dict[str, Any]]:
    """The gate Deployments (one per gate group; tests/test_k8s_manifests.py checks that)."""
    return [
        d
        for d in k8s_docs()
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app") == "ovr-alpr-gate"
    ]


def gate_config_text(text: str, tmp_path: Path) -> GateConfig:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    return load_gate_config(path)


def test_compose_services_and_edge_config() -> None:
    doc = compose()
    assert {"triton", "redis", "mosquitto", "edge1", "edge2", "gate"} <= set(doc["services"])
    cfg = parse_config(yaml.safe_load((DOCKER / "edge.compose.yaml").read_text()))
    assert set(cfg.cameras) == {"cam1", "cam2"} and cfg.triton.urls == ["triton:8001"]
    for edge in ("edge1", "edge2"):
        cam = doc["services"][edge]["command"][1]
        assert cam in cfg.cameras


@pytest.mark.parametrize("service", ["triton", "edge1", "edge2", "gate"])
def test_compose_builds_existing_dockerfiles(service: str) -> None:
    build = compose()["services"][service]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()
    assert Path(build["dockerfile"]).name in IMAGES


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_dockerfile_copies_exist_and_cover_the_process(dockerfile: str) -> None:
    pairs = copies(DOCKER / dockerfile)
    sources = [s for srcs, _ in pairs for s in srcs]
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"{dockerfile} copies what the build context lacks: {missing}"
    copied = {Path(s).parts[0] for s in sources}
    process = IMAGES[dockerfile]
    needed = first_party_packages(process)
    assert needed <= copied, f"{dockerfile} lacks {needed - copied}"
    assert {"pyproject.toml", "README.md"} <= copied  # the wheel's metadata
    runs = " ".join(rest for op, rest in instructions(DOCKER / dockerfile) if op == "RUN")
    assert f'pip install ".[{process}]"' in runs  # non-editable, its own extra only
    others = {"edge": {"gate", "model_repository", "weights", "training"},
              "gate": {"model_repository", "weights", "training"},
              "server": {"edge_client", "gate", "training"}}  # fmt: skip
    assert not copied & others[process], f"{dockerfile} copies {copied & others[process]}"


def test_compose_edge_and_gate_configs_meet_on_the_stream() -> None:
    edge = parse_config(yaml.safe_load((DOCKER / "edge.compose.yaml").read_text()))
    gate = load_gate_config(DOCKER / "gate.compose.yaml")
    streamed = {
        name
        for name, cam in edge.cameras.items()
        for s in cam.sinks
        if s.type == "redis_stream" and s.stream == gate.stream
    }
    assert {g.plate_camera for g in gate.gates.values()} <= streamed


def test_gate_port_and_health_path_agree(tmp_path: Path) -> None:
    assert re.search(rf'@app\.get\(\s*"{re.escape(HEALTH)}"', WEB), "gate/web.py health route"
    port = load_gate_config(REPO / "config" / "gate.yaml").http.port
    # the image
    ops = instructions(DOCKER / "gate.Dockerfile")
    assert ("EXPOSE", str(port)) in ops
    (check,) = [rest for op, rest in ops if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}{HEALTH}" in check
    (cmd,) = [rest for op, rest in ops if op == "CMD"]
    assert (dict(("ENTRYPOINT", rest) for op, rest in ops if op == "ENTRYPOINT")["ENTRYPOINT"]
            == '["alpr-gate"]')  # fmt: skip
    config_path = yaml.safe_load(cmd)[1]
    # compose: the mounted config listens on all interfaces at that port, published as is
    service = compose()["services"]["gate"]
    assert f"./gate.compose.yaml:{config_path}:ro" in service["volumes"]
    cfg = load_gate_config(DOCKER / "gate.compose.yaml")
    assert (cfg.http.host, cfg.http.port) == ("0.0.0.0", port)
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}{HEALTH}" in " ".join(service["healthcheck"]["test"])
    assert service["command"] == ["--config", config_path]
    # Kubernetes, every gate group: probes on the health path through the named port
    assert k8s_gates()
    for dep in k8s_gates():
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["--config", config_path]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == HEALTH and named[get["port"]] == port
        assert container["resources"]["requests"] and container["resources"]["limits"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        assert Path(mount["mountPath"]) / "gate.yaml" == Path(config_path)
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        k_cfg = gate_config_text(
            k8s("ConfigMap", volume["configMap"]["name"])["data"]["gate.yaml"], tmp_path
        )
        assert (k_cfg.http.host, k_cfg.http.port) == ("0.0.0.0", port)
        svc = k8s("Service", dep["metadata"]["name"])["spec"]
        assert svc["selector"] == dep["spec"]["selector"]["matchLabels"]
        assert [p["targetPort"] for p in svc["ports"]] == ["http"]


def test_gate_runs_as_non_root_with_its_data_on_a_volume() -> None:
    ops = instructions(DOCKER / "gate.Dockerfile")
    (user,) = [rest for op, rest in ops if op == "USER"]
    assert not user.startswith(("0", "root"))
    cfg = load_gate_config(DOCKER / "gate.compose.yaml")
    assert cfg.database.url.startswith("sqlite:////data/") and cfg.crops_dir.is_relative_to("/data")
    assert any(v.endswith(":/data") for v in compose()["services"]["gate"]["volumes"])
    for dep in k8s_gates():
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert dep["spec"]["strategy"]["type"] == "Recreate"
