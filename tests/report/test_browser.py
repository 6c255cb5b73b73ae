"""The report in a real browser: headless Chromium, driven through chromedriver's W3C WebDriver
HTTP API (urllib, no selenium), opens the site from disk, follows the table of contents to a
study page, sorts the key numbers by the step h and filters them, and saves a screenshot.

Skipped, with the reason, where ``chromium`` or ``chromedriver`` is not installed (Debian:
``apt-get install chromium chromium-driver``; ``.ci/run`` tries to).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from report_studies import call, run_quick

from precision import store
from precision.report.document import build_report, study_pages

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        BROWSER is None or DRIVER is None,
        reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
    ),
]

WIDTH, HEIGHT = 1400, 900
"""The window the issue's reviewer read the report in."""

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
"""The key of a web element reference in the W3C WebDriver protocol."""

STEPS = """\
name = "steps"
description = "tiny finite-difference study: h is a numeric column"
seed = 5
formats = ["float16", "float64"]
problems = ["fd_exp"]

[grid]
log10_cond = [0, 1]
log10_magnitude = [0, 1]
sizes = [4]
samples_per_cell = 1

[quick]
grid = { samples_per_cell = 1 }
"""


class WebDriver:
    """The few WebDriver commands the test needs, over HTTP to a chromedriver it starts."""

    def __init__(self, profile: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()
        args = [
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
        ]
        options = {"binary": BROWSER, "args": args}
        capabilities = {"alwaysMatch": {"goog:chromeOptions": options}}
        reply = self._send("POST", "/session", {"capabilities": capabilities})
        self.session = f"/session/{reply['sessionId']}"

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._send("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"chromedriver did not answer within {timeout} s")

    def _send(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.read().decode()[:500]}") from None

    def command(self, method: str, path: str, body: dict | None = None):
        return self._send(method, self.session + path, body)

    def open(self, path: Path) -> None:
        self.command("POST", "/url", {"url": path.resolve().as_uri()})

    def find(self, css: str) -> str:
        return self.command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, element: str) -> None:
        self.command("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self.command("POST", f"/element/{element}/value", {"text": text})

    def run(self, script: str, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def url(self) -> str:
        return self.command("GET", "/url")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.command("GET", "/screenshot")))

    def close(self) -> None:
        try:
            self._send("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report (without figures) over a tiny finite-difference study: its key numbers have a
    step column h = 2^-1 ... 2^-40."""
    folder = tmp_path_factory.mktemp("browser")
    run_quick(STEPS, folder, "steps", "--no-plots")
    out = folder / "results" / "report"
    built = build_report(folder / "results", out, figures=False)
    store.write_report(out, texts=built.texts, tables=built.tables, images=built.images)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = WebDriver(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.close()


def test_the_contents_lead_to_a_study_whose_table_sorts_by_h(report, browser, tmp_path):
    page = study_pages(["steps"])["steps"]
    browser.open(report / "index.html")
    # The index fits on about two screens of the reviewer's window.
    assert browser.run("return document.documentElement.scrollHeight") <= 2 * HEIGHT
    browser.click(browser.find(f'ul.toc a[href="{page}"]'))
    assert browser.url() == (report / page).resolve().as_uri()
    table = 'table[id$="-key-numbers"]'
    column = browser.run(
        "return Array.from(document.querySelectorAll(arguments[0] + ' th'))"
        ".findIndex(th => th.textContent === 'h')",
        table,
    )
    assert column >= 0
    header = browser.find(f"{table} th:nth-child({column + 1})")
    cells = (
        "return Array.from(document.querySelector(arguments[0]).tBodies[0].rows)"
        ".filter(r => !r.hidden).map(r => [r.cells[arguments[1]].getAttribute('data-sort'),"
        " r.cells[arguments[1]].textContent])"
    )
    browser.click(header)
    ascending = browser.run(cells, table, column)
    steps = [float(key) for key, _ in ascending]
    assert len(set(steps)) == 40 and steps == sorted(steps)
    assert all(math.log2(h).is_integer() for h in steps)  # the exact steps 2^-k, not rounded text
    texts = [text for _, text in ascending]
    assert texts != sorted(texts)  # as text, 2^-10 would come before 2^-2
    browser.click(header)
    assert [float(k) for k, _ in browser.run(cells, table, column)] == sorted(steps, reverse=True)
    browser.type(browser.find("input.filter[data-table$='-key-numbers']"), "central")
    shown = browser.run(
        "return Array.from(document.querySelector(arguments[0]).tBodies[0].rows)"
        ".filter(r => !r.hidden).map(r => r.cells[1].textContent)",
        table,
    )
    assert shown and set(shown) == {"central"}
    shot = tmp_path / "study.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_site_needs_no_network(report, browser):
    """Every resource a page loads is a file beside it (Resource Timing lists what was
    fetched)."""
    for page in sorted(report.glob("*.html")):
        browser.open(page)
        fetched = browser.run(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".concat([document.location.href])"
        )
        assert all(url.startswith("file://") for url in fetched), (page.name, fetched)


def test_the_command_line_report_opens(tmp_path, browser):
    """``precision report`` (figures included) opens, and its figures load."""
    run_quick(STEPS, tmp_path, "steps", "--no-plots")
    code, _, err = call(["report", "--results", str(tmp_path / "results")])
    assert code == 0, err
    browser.open(tmp_path / "results" / "report" / study_pages(["steps"])["steps"])
    # Figures load lazily (only near the window): ask for them all, then wait for them.
    browser.run("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    deadline = time.monotonic() + 30
    while True:
        loaded = browser.run(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        if (loaded and all(loaded)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert loaded and all(loaded)
