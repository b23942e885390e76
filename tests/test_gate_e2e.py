"""The parking-gate product end to end, every part real: tritonserver serving the model
repository, redis-server, `edge-client --camera demo` on the demo video (the camera of
config/edge.yaml, zone included), `alpr-gate` with the demo gate of config/gate.yaml
(SQLite history), and the operator dashboard in a real headless Chromium.

The vehicles of the demo video must appear in the live view with the decision their
plate's list entry gives; one can be found by searching its plate; adding it to the deny
list in the page changes the decision the next time it comes to the gate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from edge_client.tools.demo_video import demo_edge_config
from ensemble.ops.server_process import TritonProcess
from gate.process import GateProcess, demo_gate_config, start_gate
from tests.gate_browser import chrome, chrome_installed, screenshot_on_error, wait_css, wait_for
from tests.redis_server import RedisProc, start_redis

pytestmark = [
    pytest.mark.server,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not chrome_installed(), reason="Chromium/ChromeDriver not installed"),
]
REPO = Path(__file__).resolve().parent.parent
EDGE = str(Path(sys.executable).parent / "edge-client")
# what config/gate.yaml's demo gate lists say about the demo video's plates
EXPECTED = {
    "KV65BZR": "allow",  # exact entry
    "FG482HK": "allow",  # exact entry with a validity window (from 2026-01-01)
    "47TGK8": "allow",  # pattern ^47[A-Z]{3}8$
    "8KRW245": "deny",
    "GKT3857": "unknown",
    "RTX4E26": "unknown",
}
NEWLY_DENIED = "GKT3857"


def run_edge(config: Path) -> None:
    done = subprocess.run(
        [EDGE, "--camera", "demo", "--config", str(config), "--fresh"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def decisions(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "decisions-demo_gate.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[RedisProc, GateProcess]]:
    redis = start_redis(tmp_path)
    gate = start_gate(demo_gate_config(tmp_path / "gate", redis.url), tmp_path / "gate.log")
    try:
        yield redis, gate
    finally:
        gate.stop()
        redis.stop()


def test_demo_video_through_gate_dashboard(
    triton: TritonProcess, demo: tuple[Path, dict], site: tuple[RedisProc, GateProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    video, truth = demo
    assert {p["plate"] for p in truth["plates"]} == set(EXPECTED)
    redis, gate = site
    config = demo_edge_config(tmp_path, video, triton.grpc_url, redis.url, status_interval_s=2)
    driver = chrome()
    try:
        with screenshot_on_error(driver, tmp_path / "failure"):
            driver.get(gate.url + "/")
            wait_css(driver, '#conn[data-state="live"]', 20)  # live stream open before the run
            run_edge(config)

            # 1. every vehicle reaches the live view with its decision
            wait_for(lambda: len(decisions(tmp_path / "gate")) >= len(EXPECTED), 30, "decisions")
            got = {d["plate"]: d for d in decisions(tmp_path / "gate")}
            assert {p: d["decision"] for p, d in got.items()} == EXPECTED
            assert all(0 < d["latency_ms"] < 30_000 for d in got.values())
            for plate, decision in EXPECTED.items():
                item = wait_css(driver, f'#live .live-item[data-plate="{plate}"]', 20)
                assert item.get_attribute("data-decision") == decision
            wait_for(
                lambda: driver.execute_script(
                    "return [...document.querySelectorAll('#live img.crop')]"
                    ".filter(i => i.complete && i.naturalWidth > 0).length"
                ) >= len(EXPECTED), 20, "crops loaded in the live view",
            )  # fmt: skip
            # direction (counting line, entry = moving down = approaching) and dwell arrive
            # with each plate's track-end event and complete its record
            way = {p["plate"]: "entry" if p["direction"] == "approaching" else "exit"
                   for p in truth["plates"]}  # fmt: skip

            def directions() -> dict[str, str | None]:
                items = gate.get("/api/records?gate=demo_gate&limit=100")["items"]
                return {r["plate"]: r["direction"] for r in items}

            wait_for(lambda: directions() == way, 20, f"directions {way}")
            cams = wait_css(driver, '#cameras .camera[data-camera="demo"]', 10)
            assert cams.get_attribute("data-status") in {"live", "stale"}

            # 2. search the history by plate
            driver.find_element(By.ID, "search-plate").send_keys(NEWLY_DENIED)
            driver.find_element(By.ID, "search-submit").click()
            row = wait_css(driver, f'#results tr.result[data-plate="{NEWLY_DENIED}"]', 15)
            assert "unknown" in row.text.lower()

            # 3. deny it from the page; the next time it comes, the decision changes
            Select(driver.find_element(By.ID, "list-gate")).select_by_value("demo_gate")
            Select(driver.find_element(By.ID, "entry-kind")).select_by_value("deny")
            driver.find_element(By.ID, "entry-plate").send_keys(NEWLY_DENIED)
            driver.find_element(By.ID, "entry-label").send_keys("reported by operator")
            driver.find_element(By.ID, "entry-add").click()
            entry = f'#entries tr.entry[data-plate="{NEWLY_DENIED}"][data-kind="deny"]'
            wait_css(driver, entry, 15)

            before = len(decisions(tmp_path / "gate"))
            run_edge(config)
            wait_for(lambda: len(decisions(tmp_path / "gate")) >= 2 * before, 30, "2nd decisions")
            again = {d["plate"]: d for d in decisions(tmp_path / "gate")[before:]}
            assert again[NEWLY_DENIED]["decision"] == "deny"
            assert again[NEWLY_DENIED]["label"] == "reported by operator"
            assert {p: d["decision"] for p, d in again.items() if p != NEWLY_DENIED} == {
                p: d for p, d in EXPECTED.items() if p != NEWLY_DENIED
            }
            wait_for(
                lambda: any(
                    el.get_attribute("data-decision") == "deny"
                    for el in driver.find_elements(
                        By.CSS_SELECTOR, f'#live .live-item[data-plate="{NEWLY_DENIED}"]'
                    )
                ), 20, "the new deny decision in the live view",
            )  # fmt: skip
            stats = gate.get("/api/stats")
            assert stats["records"] >= 2 * len(EXPECTED)
    finally:
        driver.quit()
