"""The report and the live dashboard in headless Chromium (Debian's chromium and chromedriver).

Each test opens a page, checks that the plots render and that the console shows
no errors, checks that a hostile client id shows as text and runs nothing, and
saves a screenshot under test-artifacts/ (look at them: they are the point).
Nothing downloads a browser: Selenium is pointed at /usr/bin/chromedriver and
/usr/bin/chromium, and the tests skip, saying why, when either is missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from test_report import EVIL, sample_page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("MQTTIDS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MQTTIDS_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")
# Installed before any page script runs: alert() and friends are recorded, not shown.
TRAP = ("window.__dialogs = [];"
        "for (const f of ['alert', 'confirm', 'prompt'])"
        "  window[f] = (m) => { window.__dialogs.push(f + ':' + m); };")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile, its console log kept."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[dev]')")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(program, os.X_OK) or shutil.which(program)):
            pytest.skip(f"{program} is not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP})
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    """The whole page (not just the window) as test-artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_for(driver, script: str, timeout: float = 10.0):
    """Poll a script until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for: {script}"
            return value
        time.sleep(0.1)


def assert_not_injected(driver) -> None:
    """The hostile client id ran nothing and made no element."""
    assert driver.execute_script("return window.__dialogs") == []
    assert driver.execute_script(
        "return [...document.querySelectorAll('img')].filter("
        "i => !i.src.startsWith('data:image/png')).length") == 0
    shown = driver.execute_script(
        "return [...document.querySelectorAll('.client-id')].map(e => e.textContent)")
    assert EVIL in shown


def test_report_renders_its_plots_and_shows_client_ids_as_text(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(sample_page(), encoding="utf-8")
    browser.get(page.as_uri())
    widths = browser.execute_script(
        "return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) >= 7 and all(w > 0 for w in widths), widths
    assert_not_injected(browser)
    assert browser.execute_script("return document.querySelectorAll('.missing').length") == 0
    path = screenshot(browser, "report")
    assert console_errors(browser) == []
    assert path.stat().st_size > 10_000


def test_empty_report_shows_what_is_missing(browser, tmp_path):
    from mqttids.report import write_report

    result = write_report(tmp_path, None, models_dir=None, benchmarks=None)
    browser.get(result.path.as_uri())
    notes = browser.execute_script(
        "return [...document.querySelectorAll('.missing')].map(e => e.textContent)")
    assert len(notes) == 5 and all("Make them with" in n for n in notes)
    screenshot(browser, "report-empty")
    assert console_errors(browser) == []


def test_dashboard_shows_alerts_and_traffic_as_they_come(browser):
    from mqttids.report.dashboard import Dashboard

    with Dashboard("127.0.0.1", 0) as board:
        start = time.time() - 90
        for k in range(90):
            board.publish_counts({"legitimate": 900 + (k * 37) % 200,
                                  "dos": 40 + k % 30 if k > 45 else 0}, at=start + k)
        board.publish_alert({"time": "2026-12-03T12:00:00+00:00", "label": "dos",
                             "client_id": EVIL, "score": 0.99, "src": "10.0.0.9",
                             "sport": 40000, "dst": "10.0.0.1", "dport": 1883,
                             "evidence": {"rows": 12, "connects": 1}})
        browser.get(board.url)
        wait_for(browser, "return document.getElementById('status').textContent === 'live'")
        wait_for(browser, "return document.querySelectorAll('#alerts tbody tr').length === 1")
        # Pushed after the page opened: the page must update without a reload.
        for k in range(3):
            board.publish_counts({"legitimate": 1000, "flood": 300}, at=start + 90 + k)
            board.publish_alert({"time": f"2026-12-03T12:00:0{k + 1}+00:00", "label": "flood",
                                 "client_id": f"sensor-{k}", "score": 0.9})
        wait_for(browser, "return document.querySelectorAll('#alerts tbody tr').length === 4")
        wait_for(browser, "return document.querySelectorAll('#chart polyline').length === 3")
        assert browser.execute_script(
            "return document.getElementById('alert-count').textContent") == "4"
        assert_not_injected(browser)
        screenshot(browser, "dashboard")
        assert console_errors(browser) == []
