"""Notifications to people through Apprise (``gate.notify``, the gate's ``type: apprise``
sink).

End to end through the gate's real service path: camera events go into a real
redis-server's stream, the consumer decides, and Apprise's JSON service
(``json://127.0.0.1:PORT/events``) posts to a real local HTTP receiver (stdlib
``ThreadingHTTPServer``): a deny arrives with its plate in the message and its crop
attached, an allow the rules exclude never does. Plus the rules, the templates, the
configuration's errors, a bounded queue and failures, and ``alpr-gate`` refusing a bad
Apprise URL.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alpr_common.config import ConfigError
from gate.cli import EXIT_CONFIG
from gate.cli import main as gate_main
from gate.config import AppriseSink, parse_gate_config
from gate.contracts import DecisionEvent
from gate.history import History
from gate.notify import AppriseNotifier, NotifyRules, check_template, fields_of, render
from gate.service import GateService
from tests.redis_server import RedisProc, redis_factory  # noqa: F401  (fixture)
from tests.synth import jpeg, render_plate
from tests.test_gate_service import camera_event, gate_config
from tests.test_sinks import Hook, free_port, wait_until

URLS_ENV = "OVR_ALPR_TEST_APPRISE_URLS"


def decision(plate: str = "BAD123", verdict: str = "deny", **kw: Any) -> DecisionEvent:
    base: dict[str, Any] = {
        "event_id": f"g1-{plate}", "gate": "g1", "camera": "plate_cam", "record_id": "rec1",
        "plate": plate, "decision": verdict, "matched": plate if verdict != "unknown" else None,
        "label": "banned" if verdict == "deny" else "", "confidence": 0.97,
        "latency_ms": 310.0, "decided_at": 1_790_000_000.0,
    }  # fmt: skip
    return DecisionEvent(**(base | kw))


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    """A real HTTP server receiving Apprise's JSON posts."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    h = Hook()
    h.start()
    yield h
    h.stop()


def json_url(hook: Hook) -> str:
    return f"json://127.0.0.1:{hook.port}/events"


# --- end to end: redis stream -> gate service -> Apprise -> HTTP receiver ----------------
def test_deny_notifies_with_plate_and_crop_and_excluded_allow_does_not(
    tmp_path: Path,
    redis_factory: Callable[..., RedisProc],  # noqa: F811
    receiver: Hook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = redis_factory()
    client = redis.client()
    crops = {p: tmp_path / f"{p}.jpg" for p in ("KV65BZR", "BAD123")}
    for plate, path in crops.items():
        path.write_bytes(jpeg(render_plate(plate)))
    monkeypatch.setenv(URLS_ENV, json_url(receiver))
    publish: list[dict[str, Any]] = [
        {"type": "jsonl", "path": str(tmp_path / "{gate}.jsonl")},
        {"type": "apprise", "urls_env": URLS_ENV, "decisions": ["deny"],
         "title": "{gate}: {decision}", "body": "{plate} {decision} at {gate}/{camera} ({label})"},
    ]  # fmt: skip
    history = History(f"sqlite:///{tmp_path / 'h.db'}", crops_dir=tmp_path / "stored")
    svc = GateService(gate_config(tmp_path, publish=publish), history, client, output_dir=tmp_path)
    try:
        svc.start()
        assert wait_until(lambda: client.exists("alpr:events") == 1, 5)  # group created
        now = time.time()
        for n, plate in enumerate(["KV65BZR", "BAD123"]):  # allow first, then deny
            event = camera_event(plate, track=plate, n=n, reported_at=now,
                                 crop_path=str(crops[plate]))  # fmt: skip
            client.xadd("alpr:events", {"event": json.dumps(event)})
        assert wait_until(lambda: len(receiver.bodies) >= 1, 15), receiver.statuses
    finally:
        svc.stop()  # sends what is queued, then stops the worker
        history.close()
    apprise_stats = svc.sinks["g1"].stats()["apprise"]
    decided = [json.loads(x) for x in (tmp_path / "g1.jsonl").read_text().splitlines()]
    assert [(d["plate"], d["decision"]) for d in decided] == [
        ("KV65BZR", "allow"),
        ("BAD123", "deny"),
    ]
    # one worker sends in order: the allow, decided first, would have arrived first
    (body,) = receiver.bodies
    assert body["title"] == "g1: deny"
    assert body["message"] == "BAD123 deny at g1/plate_cam (banned)"
    assert body["type"] == "failure"
    (attachment,) = body["attachments"]
    assert attachment["mimetype"] == "image/jpeg" and attachment["filename"] == "BAD123.jpg"
    assert base64.b64decode(attachment["base64"]) == crops["BAD123"].read_bytes()
    assert (apprise_stats["delivered"], apprise_stats["filtered"]) == (1, 1)
    assert (apprise_stats["failed"], apprise_stats["dropped"]) == (0, 0)


# --- rules, templates ------------------------------------------------------------------
RULES: list[tuple[str, NotifyRules, dict[str, Any], bool]] = [
    ("deny listed", NotifyRules(frozenset({"deny"})), {"decision": "deny"}, True),
    ("allow not listed", NotifyRules(frozenset({"deny"})), {"decision": "allow"}, False),
    ("label matches", NotifyRules(frozenset({"allow"}), labels=frozenset({"vip"})),
     {"decision": "allow", "label": "vip"}, True),
    ("label differs", NotifyRules(frozenset({"allow"}), labels=frozenset({"vip"})),
     {"decision": "allow", "label": "staff"}, False),
    ("unknown has no label", NotifyRules(frozenset({"unknown"}), labels=frozenset({"vip"})),
     {"decision": "unknown", "label": ""}, False),
    ("camera matches", NotifyRules(frozenset({"deny"}), cameras=frozenset({"cam-a"})),
     {"decision": "deny", "camera": "cam-a"}, True),
    ("camera differs", NotifyRules(frozenset({"deny"}), cameras=frozenset({"cam-a"})),
     {"decision": "deny", "camera": "cam-b"}, False),
    ("not a decision", NotifyRules(frozenset({"deny"})), {"plate": "AB1"}, False),
]  # fmt: skip


@pytest.mark.parametrize(("why", "rules", "event", "sent"), RULES, ids=[r[0] for r in RULES])
def test_rules(why: str, rules: NotifyRules, event: dict[str, Any], sent: bool) -> None:
    assert rules.match(event) is sent


TEMPLATES: list[tuple[str, str | None]] = [
    ("{plate} -> {decision}", None),
    ("{confidence:.0%} in {latency_ms:.0f} ms", None),
    ("{plate!r:>12}", None),
    ("literal {{braces}}", None),
    ("{owner}", "unknown field {owner}"),
    ("{plate.__class__}", "unknown field"),
    ("{plate[0]}", "unknown field"),
    ("{}", "unknown field {}"),
    ("{0}", "unknown field {0}"),
    ("{plate:{decision}}", "nested fields"),
    ("{plate:.2f}", "format code"),
    ("{plate", "expected '}'"),
]


@pytest.mark.parametrize(("template", "error"), TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_templates(template: str, error: str | None) -> None:
    if error is None:
        assert check_template(template) == template
    else:
        with pytest.raises(ValueError, match=error.replace("{", r"\{").replace("[", r"\[")):
            check_template(template)


def test_render_fields_and_types() -> None:
    d = decision("BAD123", "deny", crop_path="/x/c.jpg", color=None).to_json()
    values = fields_of(d)
    assert values["color"] == "" and values["plate"] == "BAD123" and values["label"] == "banned"
    assert values["time"].startswith("2026-09-") and values["confidence"] == 0.97
    note = render(d, "{gate} {decision}", "{plate} {confidence:.0%}", attach_crop=True)
    assert (note.title, note.body, note.notify_type, note.attach) == (
        "g1 deny", "BAD123 97%", "failure", "/x/c.jpg"
    )  # fmt: skip
    assert render(d, "t", "b", attach_crop=False).attach is None
    unknown = render(decision("ZZ1", "unknown").to_json(), "", "{label}", attach_crop=True)
    assert (unknown.notify_type, unknown.body, unknown.attach) == ("warning", "", None)


# --- configuration ---------------------------------------------------------------------
def apprise_config(**sink: Any) -> Any:
    return parse_gate_config({
        "gates": {"g1": {"plate_camera": "cam", "publish": [{"type": "apprise", **sink}]}},
    })  # fmt: skip


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("neither source", {}, "exactly one of `urls` or `urls_env`"),
    ("both sources", {"urls": ["json://h/x"], "urls_env": "X"}, "exactly one"),
    ("not a URL", {"urls": ["secret-token-123"]}, "urls[0] is not an Apprise URL"),
    ("unknown decision", {"urls": ["json://h/x"], "decisions": ["maybe"]}, "decisions.0"),
    ("no decisions", {"urls": ["json://h/x"], "decisions": []}, "decisions"),
    ("bad body field", {"urls": ["json://h/x"], "body": "{owner}"}, "unknown field {owner}"),
    ("attribute access", {"urls": ["json://h/x"], "title": "{gate.__init__}"}, "unknown field"),
    ("typo", {"urls": ["json://h/x"], "url": "json://h/y"}, "url"),
    ("queue too small", {"urls": ["json://h/x"], "queue_size": 0}, "queue_size"),
]  # fmt: skip


@pytest.mark.parametrize(("why", "sink", "says"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configurations(why: str, sink: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        apprise_config(**sink)
    assert says in str(err.value)
    assert "secret-token-123" not in str(err.value)


def test_defaults_and_edge_sinks_refuse_apprise() -> None:
    cfg = apprise_config(urls=["json://h/x"]).gates["g1"].publish[0]
    assert isinstance(cfg, AppriseSink)
    assert (cfg.decisions, cfg.labels, cfg.cameras, cfg.attach_crop) == (
        ["deny", "unknown"], None, None, True
    )  # fmt: skip
    from edge_client.config import Camera

    with pytest.raises(ValueError, match="apprise"):  # gate only: the edge's union lacks it
        Camera.model_validate({"source": "x.mp4", "sinks": [{"type": "apprise"}]})


NOTIFIER_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown service", {"urls": ["nosuchservice://x/y"]}, "URL entry 1 of 1 is not a valid"),
    ("env unset", {"urls_env": URLS_ENV}, f"{URLS_ENV} is not set"),
]


@pytest.mark.parametrize(
    ("why", "sink", "says"), NOTIFIER_ERRORS, ids=[c[0] for c in NOTIFIER_ERRORS]
)
def test_notifier_refuses_what_apprise_cannot_send(
    why: str, sink: dict[str, Any], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URLS_ENV, raising=False)
    cfg = apprise_config(**sink).gates["g1"].publish[0]
    assert isinstance(cfg, AppriseSink)
    with pytest.raises(ValueError, match=says):
        AppriseNotifier.from_config(cfg, gate="g1")


def test_alpr_gate_exits_2_on_an_invalid_apprise_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(
        json.dumps(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
                "crops_dir": str(tmp_path / "crops"),
                "gates": {
                    "g1": {
                        "plate_camera": "cam",
                        "publish": [{"type": "apprise", "urls": ["nosuchservice://tok3n@x/y"]}],
                    }
                },
            }
        )
    )
    assert gate_main(["--config", str(config)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "not a valid Apprise URL" in err and "tok3n" not in err


# --- bounded, non-blocking, failures counted -------------------------------------------
def test_full_queue_drops_and_counts(receiver: Hook) -> None:
    receiver.gate.clear()  # the service hangs on the first notification
    notifier = AppriseNotifier([json_url(receiver)], NotifyRules(frozenset({"deny"})),
                               queue_size=1)  # fmt: skip
    try:
        notifier.emit(decision("AA1"))
        assert receiver.entered.wait(10)  # the worker is inside the first post
        started = time.monotonic()
        for plate in ("AA2", "AA3", "AA4"):
            notifier.emit(decision(plate))
        assert time.monotonic() - started < 1.0  # emit never waits for the service
        assert notifier.stats()["dropped"] == 2 and notifier.stats()["queued"] == 1
        receiver.gate.set()
        assert wait_until(lambda: notifier.stats()["delivered"] == 2, 10)
    finally:
        notifier.close()
    assert [b["title"] for b in receiver.bodies] == ["g1: deny AA1", "g1: deny AA2"]


def test_unreachable_service_counts_failures() -> None:
    notifier = AppriseNotifier(
        [f"json://127.0.0.1:{free_port()}/events"], NotifyRules(frozenset({"deny"}))
    )
    try:
        notifier.emit(decision("AB1"))
        notifier.emit(decision("AB2", crop_path="/nonexistent/crop.jpg"))
        assert wait_until(lambda: notifier.stats()["failed"] == 2, 15), notifier.stats()
    finally:
        notifier.close()
    assert notifier.stats()["delivered"] == 0
    notifier.emit(decision("AB3"))  # after close: dropped, counted
    assert notifier.stats()["dropped"] == 1
