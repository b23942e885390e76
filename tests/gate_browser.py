"""Helpers for browser tests of the gate dashboard: a real uvicorn server in a background
thread and a real headless Chromium driven by Selenium.

Used by ``test_gate_browser.py`` and by end-to-end tests (demo video -> edge client -> gate
service -> browser), so they contain no test logic of their own:

- ``start_app_server(app) -> (url, stop)``: serve an ASGI app on a free local port;
- ``chrome() -> WebDriver``: headless Chromium (skips the test when it is not installed);
- ``wait_for``, ``wait_css``, ``wait_gone``: polling waits with readable failures;
- ``screenshot_on_error(driver, path)``: keep a screenshot and the page's DOM of a failure.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "chrome",
    "chrome_installed",
    "screenshot_on_error",
    "start_app_server",
    "wait_css",
    "wait_for",
    "wait_gone",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

T = TypeVar("T")


def start_app_server(
    app: Any, host: str = "127.0.0.1", timeout_s: float = 20.0
) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` with a real uvicorn server in a daemon thread; returns its base URL
    (``http://127.0.0.1:PORT``) once ``/api/health`` answers, and a ``stop()`` that ends
    the gate's event streams (``web.close_live_streams``, when ``app`` has them) and
    shuts the server down. The listening socket is bound here, before the thread starts,
    so no other process can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True
    )
    thread.start()
    url = f"http://{host}:{port}"

    def stop() -> None:
        closing = getattr(getattr(app, "state", None), "live_closing", None)
        if closing is not None:
            closing.set()
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200:
                return url, stop
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"the app server on {url} did not answer /api/health")
        time.sleep(0.05)


def chrome(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A headless Chromium (Debian's, with its matching ChromeDriver). Skips the calling
    test, naming what is missing, when either binary is absent."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(
            f"headless browser test needs {' and '.join(missing)} (apt: chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    # Keep the browser's console so a failing test can show the page's errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def wait_for(
    predicate: Callable[[], T | None], timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail the test
    with ``what`` after ``timeout_s``. Elements that go stale or are not there yet while
    the page re-renders count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (NoSuchElementException, StaleElementReferenceException) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error.__class__.__name__})" if last_error else ""
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(0.1)


def wait_css(driver: WebDriver, selector: str, timeout_s: float = 10.0) -> WebElement:
    """The first displayed element matching the CSS ``selector``, once there is one."""

    def find() -> WebElement | None:
        for e in driver.find_elements(By.CSS_SELECTOR, selector):
            if e.is_displayed():
                return e
        return None

    return wait_for(find, timeout_s, f"element {selector!r}")


def wait_gone(driver: WebDriver, selector: str, timeout_s: float = 10.0) -> None:
    """Wait until nothing matches the CSS ``selector``."""
    wait_for(
        lambda: not driver.find_elements(By.CSS_SELECTOR, selector),
        timeout_s,
        f"element {selector!r} to disappear",
    )


@contextlib.contextmanager
def screenshot_on_error(driver: WebDriver, path: Path) -> Iterator[None]:
    """Run the block; when it fails, save a screenshot to ``path`` (PNG), the DOM next to
    it (``.html``) and the browser console (``.log``), then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
            path.with_suffix(".html").write_text(driver.page_source)
            get_log = getattr(driver, "get_log", None)  # Chromium drivers keep the console
            logs = get_log("browser") if get_log is not None else []
            path.with_suffix(".log").write_text(
                "\n".join(f"{e.get('level')} {e.get('message')}" for e in logs)
            )
            print(f"browser state saved: {path} (+ .html, .log)")
        raise


def chrome_installed() -> bool:
    """Whether both Chromium and ChromeDriver are present (for ``skipif`` marks)."""
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()
