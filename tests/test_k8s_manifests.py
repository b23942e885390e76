"""The Kubernetes manifests (docker/k8s/) checked without a cluster.

Every document validates against the Kubernetes JSON schemas of the oldest and newest
versions we support (``kubernetes-validate``, bundled schemas, offline, strict: an unknown
field is an error). The wiring the schemas cannot see is checked here: selectors that
select pods, named ports and probes, Secrets/ConfigMaps/claims that exist, the edge and gate
configs embedded in ConfigMaps parse with the project's own loaders and name the Services
that exist, one gate Deployment per gate group. Against real servers: the Redis start
script bootstraps a master, two replicas and three sentinels and survives a failover
(redis-server on loopback), and the metrics the autoscaler's adapter rule reads exist on a
real tritonserver and move with traffic.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import redis
import yaml
from conftest import TritonProcess
from redis.sentinel import Sentinel

from alpr_common import procgroup
from alpr_common.redis_conn import connect
from edge_client.config import EdgeConfig, parse_config
from ensemble.ops.server_process import free_port
from gate.config import GateConfig, parse_gate_config

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "docker" / "k8s"
VERSIONS = ("1.28", "1.37")  # oldest and newest Kubernetes the manifests are checked against
SECRET = "ovr-alpr"
SECRET_KEYS = {"triton-key", "redis-password", "database-password", "gate-token"}
WORKLOADS = {"Deployment", "StatefulSet"}

Doc = dict[str, Any]


def load() -> list[tuple[str, Doc]]:
    return [
        (f.name, d)
        for f in sorted(K8S.glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d is not None
    ]


DOCS = load()


def one(kind: str, name: str) -> Doc:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def of_kind(kind: str) -> list[Doc]:
    return [d for _, d in DOCS if d["kind"] == kind]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc) -> list[Doc]:
    return list(pod_spec(workload)["containers"])


def pods_selected(selector: dict[str, str]) -> list[Doc]:
    """Workloads whose pods carry every label of ``selector``."""
    return [
        w
        for _, w in DOCS
        if w["kind"] in WORKLOADS
        and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    ]


def embedded(name: str, key: str) -> Any:
    return yaml.safe_load(one("ConfigMap", name)["data"][key])


def edge_config() -> EdgeConfig:
    return parse_config(embedded("ovr-alpr-edge", "edge.yaml"), "ovr-alpr-edge")


def gate_configs() -> dict[str, GateConfig]:
    """Gate-group ConfigMap name -> its parsed gate.yaml."""
    return {
        cm["metadata"]["name"]: parse_gate_config(
            yaml.safe_load(cm["data"]["gate.yaml"]), cm["metadata"]["name"]
        )
        for cm in of_kind("ConfigMap")
        if "gate.yaml" in cm.get("data", {})
    }


def service_port(name: str, port_name: str) -> int:
    port: int = next(
        p["port"] for p in one("Service", name)["spec"]["ports"] if p["name"] == port_name
    )
    return port


# --- schemas ------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "doc",
    [d for _, d in DOCS],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS],
)
def test_document_matches_the_kubernetes_schema(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def _typo(d: Doc) -> None:
    d["spec"]["clusterIp"] = d["spec"].pop("clusterIP")


def _probe_without_port(d: Doc) -> None:
    del pod_spec(d)["containers"][0]["readinessProbe"]["httpGet"]["port"]


# A copy of a real document, broken one way -> what the validator must say.
BROKEN: dict[str, tuple[str, str, Callable[[Doc], None], str]] = {
    "misspelt field": ("Service", "ovr-alpr-triton-headless", _typo, "clusterIp"),
    "wrong type": ("HorizontalPodAutoscaler", "ovr-alpr-triton",
                   lambda d: d["spec"].update(maxReplicas="ten"), "'ten' is not of type"),
    "missing required": ("HorizontalPodAutoscaler", "ovr-alpr-triton",
                         lambda d: d["spec"].pop("scaleTargetRef"), "'scaleTargetRef'"),
    "probe without port": ("Deployment", "ovr-alpr-triton", _probe_without_port, "'port'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_check_rejects_a_broken_document(case: str) -> None:
    kind, name, breaks, message = BROKEN[case]
    doc = yaml.safe_load(yaml.safe_dump(one(kind, name)))
    kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    breaks(doc)
    with pytest.raises(kubernetes_validate.ValidationError, match=re.escape(message)):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_the_expected_objects_exist() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCS}
    expected = {
        ("Deployment", "ovr-alpr-triton"),
        ("Service", "ovr-alpr-triton"),
        ("Service", "ovr-alpr-triton-headless"),
        ("PodDisruptionBudget", "ovr-alpr-triton"),
        ("HorizontalPodAutoscaler", "ovr-alpr-triton"),
        ("ConfigMap", "ovr-alpr-prometheus-adapter-rules"),
        ("StatefulSet", "ovr-alpr-redis"),
        ("Service", "ovr-alpr-redis-headless"),
        ("Service", "ovr-alpr-redis-sentinel"),
        ("PodDisruptionBudget", "ovr-alpr-redis"),
        ("ConfigMap", "ovr-alpr-redis-scripts"),
        ("ConfigMap", "ovr-alpr-edge"),
        ("StatefulSet", "ovr-alpr-postgres"),
        ("Service", "ovr-alpr-postgres"),
    }
    assert expected <= kinds, expected - kinds
    assert len(kinds) == len(DOCS), "two documents share a kind and name"


# --- wiring the schemas do not see --------------------------------------------------------
@pytest.mark.parametrize(
    "workload",
    [d for _, d in DOCS if d["kind"] in WORKLOADS],
    ids=[d["metadata"]["name"] for _, d in DOCS if d["kind"] in WORKLOADS],
)
def test_workload_refers_to_what_exists(workload: Doc) -> None:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if workload["kind"] == "StatefulSet":  # its governing Service exists and is headless
        governing = one("Service", workload["spec"]["serviceName"])["spec"]
        assert governing.get("clusterIP") == "None" or workload["metadata"]["name"].endswith(
            "postgres"
        )
    spec = pod_spec(workload)
    claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        if "configMap" in v:
            one("ConfigMap", v["configMap"]["name"])
        if "persistentVolumeClaim" in v:
            one("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
    for c in containers(workload):
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes or m["name"] in claims, m
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == SECRET and ref["key"] in SECRET_KEYS, ref
        named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get and isinstance(get["port"], str):
                assert get["port"] in named, (c["name"], probe, get)


@pytest.mark.parametrize(
    "svc", of_kind("Service"), ids=[s["metadata"]["name"] for s in of_kind("Service")]
)
def test_service_selects_pods_with_its_target_ports(svc: Doc) -> None:
    selected = pods_selected(svc["spec"]["selector"])
    assert selected, f"{svc['metadata']['name']} selects no pods"
    for w in selected:
        named = {p["name"] for c in containers(w) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in named, (svc["metadata"]["name"], w["metadata"]["name"], p)


@pytest.mark.parametrize(
    "kind", ["PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"]
)
def test_policies_point_at_workloads(kind: str) -> None:
    for doc in of_kind(kind):
        if kind == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            assert one(ref["kind"], ref["name"])
        else:
            key = "podSelector" if kind == "NetworkPolicy" else "selector"
            assert pods_selected(doc["spec"][key]["matchLabels"]), doc["metadata"]["name"]


# --- Triton -------------------------------------------------------------------------------
def test_triton_probes_pdb_services_and_autoscaler() -> None:
    dep = one("Deployment", "ovr-alpr-triton")
    (c,) = containers(dep)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    probes = {k: (c[k]["httpGet"]["path"], ports[c[k]["httpGet"]["port"]]) for k in
              ("readinessProbe", "livenessProbe", "startupProbe")}  # fmt: skip
    assert probes == {
        "readinessProbe": ("/v2/health/ready", 8000),
        "livenessProbe": ("/v2/health/live", 8000),
        "startupProbe": ("/v2/health/live", 8000),
    }
    hpa = one("HorizontalPodAutoscaler", "ovr-alpr-triton")["spec"]
    assert "replicas" not in dep["spec"], "the autoscaler owns the replica count"
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    pdb = one("PodDisruptionBudget", "ovr-alpr-triton")["spec"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    headless = one("Service", "ovr-alpr-triton-headless")["spec"]
    assert headless["clusterIP"] == "None" and not headless["publishNotReadyAddresses"]
    assert one("Service", "ovr-alpr-triton")["spec"].get("clusterIP") != "None"
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    assert float(metric["pods"]["target"]["averageValue"]) > 0


def adapter_rule() -> dict[str, Any]:
    (rule,) = embedded("ovr-alpr-prometheus-adapter-rules", "config.yaml")["rules"]
    return dict(rule)


def rule_counters(rule: dict[str, Any]) -> tuple[str, str]:
    """(numerator, denominator) metric names of the rule's ``rate(a) / rate(b)`` query."""
    rates = re.findall(r"rate\((\w+)\{<<\.LabelMatchers>>\}", rule["metricsQuery"])
    assert len(rates) == 2, rule["metricsQuery"]
    return rates[0], rates[1]


def test_adapter_rule_serves_the_autoscaler_metric() -> None:
    rule = adapter_rule()
    hpa = one("HorizontalPodAutoscaler", "ovr-alpr-triton")["spec"]
    assert rule["name"]["as"] == hpa["metrics"][0]["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    queued, served = rule_counters(rule)
    assert (queued, served) == ("nv_inference_queue_duration_us", "nv_inference_request_success")
    assert re.match(rf"^{queued}\{{", rule["seriesQuery"])
    assert re.fullmatch(rule["name"]["matches"], queued)
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"] and "clamp_min(" in rule["metricsQuery"]
    template = one("Deployment", "ovr-alpr-triton")["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8002"


def prometheus_sum(text: str, metric: str) -> float:
    """Sum of every sample of ``metric`` (all label sets) in a Prometheus exposition."""
    values = re.findall(rf"^{re.escape(metric)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert values, f"{metric} missing from the metrics"
    return sum(float(v) for v in values)


def test_adapter_counters_and_probe_paths_on_a_real_triton(triton: TritonProcess) -> None:
    import numpy as np

    from edge_client.triton_client import AlprClient

    (c,) = containers(one("Deployment", "ovr-alpr-triton"))
    for probe in ("readinessProbe", "livenessProbe"):
        url = triton.http_url + c[probe]["httpGet"]["path"]
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200, url
    queued, served = rule_counters(adapter_rule())

    def scrape() -> tuple[float, float]:
        text = urllib.request.urlopen(triton.metrics_url, timeout=5).read().decode()
        return prometheus_sum(text, queued), prometheus_sum(text, served)

    q0, s0 = scrape()
    client = AlprClient(triton.grpc_url)
    frames = 6
    for _ in range(frames):
        client.detect_vehicles([np.full((360, 640, 3), 90, np.uint8)])
    deadline = time.monotonic() + 10
    while (q1s1 := scrape())[1] - s0 < frames and time.monotonic() < deadline:
        time.sleep(0.2)  # Triton updates its metrics asynchronously
    q1, s1 = q1s1
    assert s1 - s0 >= frames
    avg_queue_us = (q1 - q0) / max(s1 - s0, 0.001)  # the rule's formula over this window
    assert math.isfinite(avg_queue_us) and avg_queue_us >= 0


# --- edge and gate configs ----------------------------------------------------------------
def test_edge_config_balances_over_the_headless_triton_service() -> None:
    cfg = edge_config()
    (url,) = cfg.triton.urls
    m = re.fullmatch(r"dns\+([\w-]+):(\d+)", url)
    assert m, url
    headless = one("Service", m.group(1))
    assert headless["spec"]["clusterIP"] == "None"
    assert service_port(m.group(1), "grpc") == int(m.group(2))
    triton: Any = cfg.triton  # `balance`: added to the config with the DNS balancing
    assert triton.balance == "least_outstanding"


def sentinel_target(cfg_redis: Any) -> None:
    """The config's sentinels are the sentinel Service and its master name the one the Redis
    pods monitor."""
    (addr,) = cfg_redis.sentinels
    host, port = addr.rsplit(":", 1)
    assert service_port(host, "sentinel") == int(port)
    for c in containers(one("StatefulSet", "ovr-alpr-redis")):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert cfg_redis.sentinel_service == env["MASTER_NAME"]
    # the pods' one password guards Redis and the sentinels
    assert cfg_redis.password_env == cfg_redis.sentinel_password_env == "REDIS_PASSWORD"
    replicas = one("StatefulSet", "ovr-alpr-redis")["spec"]["replicas"] - 1
    assert 0 <= cfg_redis.wait_replicas <= replicas


def test_edge_and_gates_find_redis_through_the_sentinels() -> None:
    sentinel_target(edge_config().redis)
    for cfg in gate_configs().values():
        sentinel_target(cfg.redis)


def env_names(workload: Doc) -> set[str]:
    return {e["name"] for c in containers(workload) for e in c.get("env", [])}


def mounting(configmap: str) -> list[Doc]:
    return [
        w
        for _, w in DOCS
        if w["kind"] in WORKLOADS
        and any(
            v.get("configMap", {}).get("name") == configmap for v in pod_spec(w).get("volumes", [])
        )
    ]


def test_one_gate_deployment_per_gate_group() -> None:
    groups = gate_configs()
    assert len(groups) >= 2
    edge = edge_config()
    edge_cams = {
        c["args"][c["args"].index("--camera") + 1]
        for d in of_kind("Deployment")
        if d["metadata"]["name"].startswith("ovr-alpr-edge")
        for c in containers(d)
    }
    assert edge_cams == set(edge.cameras), "one edge Deployment per configured camera"
    seen_groups: set[str] = set()
    seen_gates: set[str] = set()
    pods_by_group = []
    for name, cfg in groups.items():
        (dep,) = mounting(name)  # exactly one Deployment per gate group
        assert dep["kind"] == "Deployment"
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
        assert cfg.group not in seen_groups, f"consumer group {cfg.group} used twice"
        assert not set(cfg.gates) & seen_gates, f"gate(s) {set(cfg.gates) & seen_gates} twice"
        seen_groups.add(cfg.group)
        seen_gates |= set(cfg.gates)
        # every secret the config reads from the environment is set in the pod
        wanted = {cfg.redis.password_env, cfg.database.password_env, cfg.http.token_env}
        assert wanted - {None} <= env_names(dep)
        # several groups share the database: PostgreSQL, not a SQLite file per pod
        assert cfg.database.url.startswith("postgresql")
        host = re.search(r"@([\w-]+):(\d+)/", cfg.database.url)
        assert host and service_port(host.group(1), "postgres") == int(host.group(2))
        # its cameras publish to its stream
        for gate in cfg.gates.values():
            for cam in (gate.plate_camera, gate.overview_camera):
                if cam is None:
                    continue
                sinks = edge.cameras[cam].sinks
                assert any(s.type == "redis_stream" and s.stream == cfg.stream for s in sinks)
        # its Service reaches this group's pod and no other
        labels = dep["spec"]["template"]["metadata"]["labels"]
        (svc,) = [s for s in of_kind("Service") if s["spec"]["selector"].items() <= labels.items()]
        assert pods_selected(svc["spec"]["selector"]) == [dep]
        assert cfg.http.host == "0.0.0.0"
        assert service_port(svc["metadata"]["name"], "http") == cfg.http.port
        pods_by_group.append(dep)
    # the groups' crops are on one shared volume
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for d in pods_by_group
        for v in pod_spec(d)["volumes"]
        if "persistentVolumeClaim" in v
    }
    (claim,) = claims
    assert one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_edge_pods_have_the_secrets_their_config_reads() -> None:
    cfg = edge_config()
    for d in of_kind("Deployment"):
        if d["metadata"]["name"].startswith("ovr-alpr-edge"):
            assert {cfg.redis.password_env, "OVR_ALPR_TRITON_KEY"} <= env_names(d)


# --- the Redis start script, run for real -------------------------------------------------
START_SH = one("ConfigMap", "ovr-alpr-redis-scripts")["data"]["start.sh"]
PASSWORD = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["redis"], {"REDIS_PASSWORD": "has space"}, "may not contain quotes"),
        (["redis"], {"REDIS_PASSWORD": 'quo"te'}, "may not contain quotes"),
        (["redis"], {"REDIS_PASSWORD": "back\\slash"}, "may not contain quotes"),
        (["primary"], {}, "usage: start.sh redis|sentinel"),
        ([], {}, "usage: start.sh redis|sentinel"),
        (["redis"], {"MY_HOST": ""}, "MY_HOST"),
    ],
)
def test_start_script_refuses_bad_input(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    script = tmp_path / "start.sh"
    script.write_text(START_SH)
    base = {"REDIS_PASSWORD": PASSWORD, "MY_HOST": "h", "SEED_HOST": "h",
            "SENTINELS": "127.0.0.1:1", "CONF_DIR": str(tmp_path / "run"),
            "PATH": os.environ["PATH"]}  # fmt: skip
    done = subprocess.run(
        ["sh", str(script), *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


class Pod:
    """One Redis pod of the StatefulSet on loopback: start.sh as the redis and the sentinel
    container, with the pod's environment (ports differ, as every pod here is 127.0.0.1)."""

    def __init__(self, root: Path, index: int, env: dict[str, str]) -> None:
        self.dir = root / f"pod-{index}"
        self.port, self.sentinel_port = free_port(), free_port()
        self.env = {**env, "REDIS_PORT": str(self.port), "SENTINEL_PORT": str(self.sentinel_port),
                    "DATA_DIR": str(self.dir / "data")}  # fmt: skip
        (self.dir / "data").mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str) -> None:
        script = self.dir.parent / "start.sh"
        log = (self.dir / f"{role}.log").open("ab")
        env = {**self.env, "CONF_DIR": str(self.dir / f"run-{role}")}
        self.procs[role] = procgroup.spawn(
            ["sh", str(script), role], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        port = self.port if role == "redis" else self.sentinel_port
        client = redis.Redis(port=port, password=PASSWORD, socket_timeout=2)
        wait_for(lambda: ping(client), f"{role} of {self.dir.name}", self.log(role))

    def stop(self, role: str) -> None:
        proc = self.procs.pop(role, None)
        if proc is not None:
            procgroup.stop(proc, 5)

    def log(self, role: str) -> Callable[[], str]:
        return lambda: (self.dir / f"{role}.log").read_text()[-3000:]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, decode_responses=True,
                           socket_timeout=2)  # fmt: skip


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_for(check: Callable[[], object], what: str, log: Callable[[], str] = str,
             timeout_s: float = 30.0) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except redis.RedisError:  # not there yet (refused, NOREPLICAS, no master known)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log()}")
        time.sleep(0.1)


def role_of(pod: Pod) -> tuple[str, int | None]:
    """("master", None) or ("slave", master port), from ROLE."""
    role = pod.client().execute_command("ROLE")
    return (role[0], None) if role[0] == "master" else (role[0], int(role[2]))


@pytest.fixture
def redis_pods(tmp_path: Path) -> Iterator[list[Pod]]:
    (tmp_path / "start.sh").write_text(START_SH)
    env = {**os.environ, "REDIS_PASSWORD": PASSWORD, "MY_HOST": "127.0.0.1",
           "SEED_HOST": "127.0.0.1", "BIND": "127.0.0.1", "MASTER_NAME": "mymaster",
           "DOWN_AFTER_MS": "1000", "FAILOVER_TIMEOUT_MS": "10000",
           "MAXMEMORY": "64mb"}  # fmt: skip
    pods = [Pod(tmp_path, i, env) for i in range(3)]
    sentinels = " ".join(f"127.0.0.1:{p.sentinel_port}" for p in pods)
    for p in pods:
        p.env.update(SENTINELS=sentinels, SEED_PORT=str(pods[0].port))
    yield pods
    for p in pods:
        for role in list(p.procs):
            p.stop(role)


@pytest.mark.redis
def test_redis_pods_bootstrap_fail_over_and_rejoin(
    redis_pods: list[Pod], monkeypatch: pytest.MonkeyPatch
) -> None:
    pods = redis_pods
    for p in pods:  # OrderedReady: pod 0's containers first
        p.start("redis")
        p.start("sentinel")
    assert role_of(pods[0]) == ("master", None)
    for p in pods[1:]:
        assert role_of(p) == ("slave", pods[0].port)
    sentinel = Sentinel([("127.0.0.1", p.sentinel_port) for p in pods], socket_timeout=2,
                        sentinel_kwargs={"password": PASSWORD})  # fmt: skip
    assert sentinel.discover_master("mymaster") == ("127.0.0.1", pods[0].port)
    wait_for(lambda: len(sentinel.discover_slaves("mymaster")) == 2, "two replicas known",
             pods[0].log("sentinel"))  # fmt: skip
    # sentinels find each other through the master's hello channel before a failover can
    # reach the quorum
    probe = redis.Redis(port=pods[0].sentinel_port, password=PASSWORD, decode_responses=True,
                        socket_timeout=2)  # fmt: skip
    wait_for(lambda: len(list(probe.sentinel_sentinels("mymaster"))) == 2, "sentinels meet")
    # the project's own client, built from the edge ConfigMap's redis section (sentinel
    # addresses swapped for these loopback ones)
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    cfg = edge_config().redis.model_copy(
        update={"sentinels": [f"127.0.0.1:{p.sentinel_port}" for p in pods]}
    )
    client = connect(cfg, socket_timeout=2, decode_responses=True)
    wait_for(lambda: client.set("alpr:probe", "before-failover"), "a write on the master")
    wait_for(lambda: client.wait(2, 5000) == 2, "both replicas acknowledge")

    pods[0].stop("redis")  # the master's pod dies; its sentinel stays, as in a crash loop
    new = wait_for(
        lambda: (m := sentinel.discover_master("mymaster"))[1] != pods[0].port and m,
        "failover to a replica",
        pods[1].log("sentinel"),
    )
    promoted = next(p for p in pods if p.port == new[1])
    assert role_of(promoted) == ("master", None)
    assert promoted.client().get("alpr:probe") == "before-failover"
    # the same client object reaches the promoted replica by itself
    wait_for(lambda: client.set("alpr:probe", "after-failover"), "a write after failover")
    assert promoted.client().get("alpr:probe") == "after-failover"

    pods[0].start("redis")  # back: it asks the sentinels and rejoins as a replica
    assert role_of(pods[0]) == ("slave", promoted.port)
    assert f"replica of 127.0.0.1:{promoted.port} (the sentinels)" in pods[0].log("redis")()
    wait_for(lambda: pods[0].client().get("alpr:probe") == "after-failover", "resync")
