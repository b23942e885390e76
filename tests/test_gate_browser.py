"""The gate dashboard in a real headless Chromium against the app on a real uvicorn server:
live decisions arrive over server-sent events with their crops, the history search finds
them, and list changes made in the page reach the access decision (``history.lists`` ->
``access.decide``). A failing test leaves a screenshot, the DOM and the console log in its
``tmp_path``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from gate.access import Decision, decide
from gate.config import GateConfig, parse_gate_config
from gate.contracts import DecisionEvent, Direction, VehicleRecord
from gate.history import History
from gate.live import LiveFeed
from gate.web import create_app
from tests.gate_browser import (
    chrome,
    screenshot_on_error,
    start_app_server,
    wait_css,
    wait_for,
    wait_gone,
)
from tests.synth import jpeg, render_plate

pytestmark = pytest.mark.timeout(180)

TOKEN_ENV = "OVR_ALPR_TEST_BROWSER_TOKEN"
WAIT_S = 15.0  # generous: the test machines are small and shared


@dataclass
class Runtime:
    config: GateConfig
    history: History
    feed: LiveFeed = field(default_factory=LiveFeed)
    camera_rows: list[dict[str, Any]] = field(default_factory=list)

    def cameras(self) -> list[dict[str, Any]]:
        return self.camera_rows


@dataclass
class Dashboard:
    runtime: Runtime
    driver: Chrome
    url: str
    tmp: Path

    def publish(self, rec: VehicleRecord) -> VehicleRecord:
        """Store ``rec`` and publish its decision the way the gate service does."""
        stored = self.runtime.history.save(rec)
        ev = DecisionEvent(
            event_id=f"dec-{rec.record_id}",
            gate=stored.gate,
            camera=stored.plate_camera or "",
            record_id=stored.record_id,
            plate=stored.plate,
            decision=stored.decision or "unknown",
            matched=stored.matched,
            label=stored.list_label,
            confidence=stored.plate_confidence,
            latency_ms=stored.decision_latency_ms or 0.0,
            decided_at=stored.decided_at or stored.first_seen,
            direction=stored.direction.value if stored.direction else None,
            vehicle_class=stored.vehicle_class,
            color=stored.color,
            crop_path=stored.crop_path,
        )
        self.runtime.feed.publish("decision", ev.to_json() | {"record": stored.to_json()})
        return stored


def camera_rows(status: str = "live", fps: float = 12.5) -> list[dict[str, Any]]:
    now = datetime.now(UTC).timestamp()
    return [
        {"camera": "cam-n1", "gate": "north", "role": "plate", "status": status, "fps": fps,
         "frames": 1000, "events": 3, "updated_at": now},
        {"camera": "cam-n2", "gate": "north", "role": "overview", "status": "stale",
         "fps": 0.0, "frames": 10, "events": 0, "updated_at": now - 30},
        {"camera": "cam-s1", "gate": "south", "role": "plate", "status": "unknown",
         "fps": None, "frames": None, "events": None, "updated_at": None},
    ]  # fmt: skip


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dashboard]:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    driver = chrome()  # skips first when Chromium is not installed
    config = parse_gate_config(
        {
            "gates": {
                "north": {"plate_camera": "cam-n1", "overview_camera": "cam-n2"},
                "south": {"plate_camera": "cam-s1"},
            },
            "http": {"token_env": TOKEN_ENV},
        }
    )
    history = History(f"sqlite:///{tmp_path / 'history.db'}", crops_dir=tmp_path / "crops")
    runtime = Runtime(config, history, camera_rows=camera_rows())
    url, stop = start_app_server(create_app(runtime))
    try:
        yield Dashboard(runtime, driver, url, tmp_path)
    finally:
        driver.quit()
        stop()
        history.close()


def vehicle(rid: str, plate: str, decision: str, crop: Path | None, **kw: Any) -> VehicleRecord:
    now = datetime.now(UTC).timestamp()
    return VehicleRecord(
        record_id=rid,
        gate="north",
        first_seen=now - 0.35,
        plate=plate,
        plate_confidence=0.96,
        plate_camera="cam-n1",
        overview_camera="cam-n2",
        vehicle_class="car",
        color="red",
        direction=Direction.ENTRY,
        decision=decision,
        decided_at=now,
        decision_latency_ms=350.0,
        crop_path=str(crop) if crop else None,
        event_ids=(f"ev-{rid}",),
        **kw,
    )


def write_crop(tmp: Path, plate: str) -> Path:
    path = tmp / "edge" / f"{plate}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(render_plate(plate)))
    return path


def image_loaded(driver: WebDriver, img: WebElement) -> int:
    """The image's natural width once it has loaded (0 while loading or broken)."""
    return int(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) or 0
    )


def text(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def test_live_search_and_lists(dash: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    d, h = dash.driver, dash.runtime.history
    with screenshot_on_error(d, dash.tmp / "dashboard-failure.png"):
        d.get(dash.url + "/")
        wait_css(d, "#conn[data-state='live']", WAIT_S)  # the event stream is open

        # --- live view: two decisions, newest first, with their crops --------------------
        dash.publish(vehicle("rec-1", "AB12CDE", "allow", write_crop(dash.tmp, "AB12CDE"),
                             matched="AB12CDE", list_label="staff"))  # fmt: skip
        dash.publish(vehicle("rec-2", "KV65BZR", "unknown", write_crop(dash.tmp, "KV65BZR")))
        item = wait_css(d, "#live .live-item[data-plate='KV65BZR']", WAIT_S)
        assert item.get_attribute("data-decision") == "unknown"
        live_items = d.find_elements(By.CSS_SELECTOR, "#live .live-item")
        plates = [e.get_attribute("data-plate") for e in live_items]
        assert plates == ["KV65BZR", "AB12CDE"]
        assert item.find_element(By.CSS_SELECTOR, ".plate").text == "KV65BZR"
        assert item.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "unknown"
        meta = item.text
        for expected in ("gate north", "cam-n1", "entry", "red car", "350 ms"):
            assert expected in meta, (expected, meta)
        img = item.find_element(By.CSS_SELECTOR, "img.crop")
        assert str(img.get_attribute("src")).endswith("/api/records/rec-2/crop")
        wait_for(lambda: image_loaded(d, img) > 0, WAIT_S, "the live crop to load")
        allowed = d.find_element(By.CSS_SELECTOR, "#live .live-item[data-plate='AB12CDE']")
        assert allowed.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "allow"
        assert "staff" in allowed.text

        # a record update (the overview camera's later report) refreshes the item in place
        later = h.get("rec-2")
        assert later is not None
        dash.runtime.feed.publish(
            "record", later.with_(vehicle_class="van", color="white").to_json()
        )
        vehicle_field = "#live .live-item[data-plate='KV65BZR'] [data-field='vehicle']"
        wait_for(
            lambda: "white van" in text(d, vehicle_field),
            WAIT_S,
            "the record update in the live item",
        )

        # --- header: camera status and FPS, refreshed ------------------------------------
        cam = wait_css(d, "#cameras .camera[data-camera='cam-n1']", WAIT_S)
        assert cam.get_attribute("data-status") == "live" and "12.5 fps" in cam.text
        dash.runtime.camera_rows = camera_rows(status="stale", fps=3.0)
        wait_css(d, "#cameras .camera[data-camera='cam-n1'][data-status='stale']", WAIT_S)
        assert "3.0 fps" in text(d, "#cameras .camera[data-camera='cam-n1']")

        # --- history search ---------------------------------------------------------------
        plate_box = d.find_element(By.ID, "search-plate")
        plate_box.send_keys("kv65 bzr")
        d.find_element(By.ID, "search-submit").click()
        row = wait_css(d, "#results tbody tr.result[data-plate='KV65BZR']", WAIT_S)
        wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == 1,
                 WAIT_S, "only the searched plate in the results")  # fmt: skip
        assert "1 of 1 record" in text(d, "#results-summary")
        thumb = row.find_element(By.CSS_SELECTOR, "img.thumb")
        wait_for(lambda: image_loaded(d, thumb) > 0, WAIT_S, "the result's crop to load")
        # an invalid range is explained, not silently empty
        for box, value in (("search-from", "2030-01-02T00:00"), ("search-to", "2030-01-01T00:00")):
            d.execute_script("arguments[0].value = arguments[1]", d.find_element(By.ID, box), value)
        d.find_element(By.ID, "search-submit").click()
        err = wait_css(d, "#search-error", WAIT_S)
        assert "until must be after since" in err.text

        # --- lists: a token is required, then the deny entry decides ---------------------
        monkeypatch.setenv(TOKEN_ENV, "gate-token-42")
        gate_select = Select(d.find_element(By.ID, "list-gate"))
        wait_for(
            lambda: "north" in [o.get_attribute("value") for o in gate_select.options],
            WAIT_S,
            "gates in the list selector",
        )
        Select(d.find_element(By.ID, "list-gate")).select_by_value("north")
        Select(d.find_element(By.ID, "entry-kind")).select_by_value("deny")
        d.find_element(By.ID, "entry-plate").send_keys("KV65 BZR")
        label = "<img src=x onerror=alert(1)> stolen"
        d.find_element(By.ID, "entry-label").send_keys(label)
        d.find_element(By.ID, "entry-add").click()
        err = wait_css(d, "#entry-error", WAIT_S)
        assert "token" in err.text.lower()
        assert h.entries("north") == []

        d.find_element(By.ID, "api-token").send_keys("gate-token-42")
        assert (
            d.execute_script("return localStorage.getItem('ovr-alpr.api-token')") == "gate-token-42"
        )
        d.find_element(By.ID, "entry-add").click()
        entry_row = wait_css(d, "#entries tr.entry[data-plate='KV65BZR'][data-kind='deny']", WAIT_S)
        cells = entry_row.find_elements(By.TAG_NAME, "td")
        assert cells[2].text == label  # shown as text, never parsed as markup
        assert entry_row.find_elements(By.CSS_SELECTOR, "img") == []
        wait_for(lambda: d.find_element(By.ID, "entry-error").get_attribute("hidden") is not None,
                 WAIT_S, "the token error to clear")  # fmt: skip
        now = datetime.now(UTC)
        assert decide("KV65BZR", h.lists("north"), now).decision is Decision.DENY
        assert decide("KV65BZR", h.lists("south"), now).decision is Decision.UNKNOWN
        assert "1 denied" in text(d, "#list-info")

        # --- delete (two clicks) -> gone, and the plate is unknown again -----------------
        button = entry_row.find_element(By.CSS_SELECTOR, ".entry-delete")
        button.click()
        assert button.text == "Confirm"
        button.click()
        wait_gone(d, "#entries tr.entry[data-plate='KV65BZR']", WAIT_S)
        assert h.entries("north") == []
        assert decide("KV65BZR", h.lists("north"), datetime.now(UTC)).decision is Decision.UNKNOWN

        # the only console errors allowed: the 422 and 401 answers provoked above
        severe = [e["message"] for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        assert all(re.search(r"status of (401|422)", m) for m in severe), severe


def test_live_view_keeps_the_newest_fifty(dash: Dashboard) -> None:
    d = dash.driver
    with screenshot_on_error(d, dash.tmp / "live-limit-failure.png"):
        for i in range(55):
            dash.publish(vehicle(f"r{i:02d}", f"LIM{i:03d}", "unknown", None))
        d.get(dash.url + "/")  # the stream replays what the feed holds
        wait_css(d, "#live .live-item[data-plate='LIM054']", WAIT_S)
        items = d.find_elements(By.CSS_SELECTOR, "#live .live-item")
        assert len(items) == 50
        assert items[0].get_attribute("data-plate") == "LIM054"
        assert items[-1].get_attribute("data-plate") == "LIM005"
        # a record without a crop shows a placeholder, not a broken image
        assert items[0].find_elements(By.CSS_SELECTOR, "img") == []
        assert items[0].find_element(By.CSS_SELECTOR, ".crop-missing").text == "no crop"


def test_live_crop_stored_after_its_decision_still_loads(dash: Dashboard) -> None:
    """A decision published a moment before its record is stored: the first crop request
    is a 404, the page retries once and shows the image."""
    d = dash.driver
    with screenshot_on_error(d, dash.tmp / "late-crop-failure.png"):
        d.get(dash.url + "/")
        wait_css(d, "#conn[data-state='live']", WAIT_S)
        rec = vehicle("late-1", "LATE123", "allow", write_crop(dash.tmp, "LATE123"))
        payload = DecisionEvent(
            event_id="dec-late-1", gate="north", camera="cam-n1", record_id=rec.record_id,
            plate=rec.plate, decision="allow", matched=None, label="", confidence=0.9,
            latency_ms=300.0, decided_at=rec.decided_at or 0.0, crop_path=rec.crop_path,
        ).to_json() | {"record": rec.to_json()}  # fmt: skip
        dash.runtime.feed.publish("decision", payload)
        item = wait_css(d, "#live .live-item[data-plate='LATE123']", WAIT_S)
        img = item.find_element(By.CSS_SELECTOR, "img.crop")
        wait_for(lambda: d.execute_script("return arguments[0].complete", img), WAIT_S, "first try")
        assert image_loaded(d, img) == 0  # not stored yet: 404
        dash.runtime.history.save(rec)
        wait_for(lambda: image_loaded(d, img) > 0, WAIT_S, "the retried crop to load")
        assert str(img.get_attribute("src")).endswith("/api/records/late-1/crop?retry=1")
