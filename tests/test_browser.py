"""Each app served by ``marimo run`` and driven in Debian's chromium with Playwright.

Per app: ``marimo run --headless`` on a free local port (all four started together), open the page, wait for its last
section, move one control and wait for the page to show the consequence, then check that no cell
failed, and save a full-page screenshot to ``docs/screenshots/<app>.png``. ``marimo run`` does
not draw a failed cell's output (the page only logs "An internal error occurred" to the browser
console, and the server logs the traceback with an ``error_id``), so those two channels are
checked as well as the page. Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``; never a Playwright browser
download); skipped without it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"Debian's chromium is not installed ({CHROMIUM} missing; apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_RUNS = ROOT / "tests" / "fixtures" / "runs"
# The README's screenshots are refreshed only on request, so a plain test run never dirties the
# checkout: PARETOPO_UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("PARETOPO_UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "paretopo-screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
PAGE_FAILURE_TEXT = ("An internal error occurred", "Ancestor prevented from running", "This cell raised an exception")
CONSOLE_FAILURE = "An internal error occurred"  # how marimo run reports a failed cell to the page
TIMEOUT_MS = 60_000


def server_errors(log: str) -> list[str]:
    """Log records of the marimo server that hold a traceback, except the web server's race on
    virtual files (the page fetching the data of a chart or table that a re-run just replaced,
    answered 404, which the page recovers from)."""
    records = re.split(r"(?m)^(?=ERROR:|WARNING:|INFO:|\[[EWI] )", log)
    return [record for record in records if ("Traceback" in record or "error_id=" in record)
            and not ("Exception in ASGI application" in record and "Virtual file not found" in record)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def marimo_servers(apps: dict[str, list[str]], logs: Path) -> Iterator[dict[str, str]]:
    """``marimo run`` of each ``apps/<app>.py`` (with its arguments) on 127.0.0.1, all started at once
    (their start-up overlaps); yields app -> URL and stops them afterwards."""
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for app, arguments in apps.items():
            port = free_port()
            with open(logs / f"{app}.log", "w") as output:
                servers[app] = (subprocess.Popen(
                    [sys.executable, "-m", "marimo", "run", "--headless", "--host", "127.0.0.1", "--port", str(port),
                     str(ROOT / "apps" / f"{app}.py"), "--", *arguments],
                    cwd=ROOT, stdout=output, stderr=subprocess.STDOUT), port)
        deadline = time.monotonic() + 90
        for app, (server, port) in servers.items():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log = (logs / f"{app}.log").read_text()[-3000:]
                        raise RuntimeError(f"marimo run {app} did not start:\n{log}") from None
                    time.sleep(0.3)
        yield {app: f"http://127.0.0.1:{port}" for app, (_, port) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.terminate()
        for server, _ in servers.values():
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="module")
def server_urls(tmp_path_factory):
    logs = tmp_path_factory.mktemp("marimo-logs")
    with marimo_servers({app: arguments for app, (arguments, _) in APPS.items()}, logs) as urls:
        yield {app: (url, logs / f"{app}.log") for app, url in urls.items()}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def save_full_page(page, path: Path) -> None:
    """marimo scrolls inside an element, not the window: grow the viewport to the content, then shoot."""
    height = page.evaluate("""() => {
        document.activeElement?.blur();  // no focus rings or slider tooltips in the picture
        const scrollers = Array.from(document.querySelectorAll('*'))
            .filter(e => /auto|scroll/.test(getComputedStyle(e).overflowY));
        scrollers.forEach(e => e.scrollTo(0, 0));
        return Math.max(document.body.scrollHeight, ...scrollers.map(e => e.scrollHeight));
    }""")
    page.set_viewport_size({"width": 1280, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(800)  # let vega re-lay out its charts
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


def shows(page, text: str, exact: bool = False) -> None:
    """Wait until ``text`` is visible (the first match: marimo's outline repeats headings)."""
    page.get_by_text(text, exact=exact).first.wait_for()


def drive_playground(page) -> None:
    shows(page, "Stage 1: the hypervolume-guided meta reward")
    shows(page, "2 × 8 completions")
    page.get_by_role("button", name="preset: equal weighted sums").click()
    shows(page, "1 × 8 completions")
    shows(page, "every completion has w·r = 0.500")


def drive_inspector(page) -> None:
    shows(page, "Completions", exact=True)
    shows(page, "match paretopo.advantages (pareto_rank)")
    page.get_by_role("slider").first.focus()
    page.keyboard.press("Home")  # step 1: stage 1
    shows(page, "match paretopo.advantages (hv_scalarized)")


def drive_live_rollouts(page) -> None:
    shows(page, "to generate")
    page.get_by_role("button", name="sample G rollouts").click()
    shows(page, "Transcripts", exact=True)
    shows(page, "n* of this group")


def drive_frontier_compare(page) -> None:
    shows(page, "Dominance between the runs' final test points")
    shows(page, "frontier HV (validation)")
    split = page.locator("select").filter(has_text="validation").first
    split.select_option("test")
    shows(page, "frontier HV (test)")
    split.select_option("validation")  # back, for the screenshot: the frontiers over several checkpoints
    shows(page, "frontier HV (validation)")


APPS: dict[str, tuple[list[str], Callable]] = {
    "pareto_playground": ([], drive_playground),
    "run_inspector": (["--run", str(FIXTURE_RUNS / "paretopo")], drive_inspector),
    "live_rollouts": ([], drive_live_rollouts),
    "frontier_compare": (["--runs-dir", str(FIXTURE_RUNS)], drive_frontier_compare),
}


@pytest.mark.parametrize("app", list(APPS))
def test_app_in_the_browser(app, browser, server_urls):
    url, log = server_urls[app]
    console: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda message: console.append(message.text))
    page.goto(url)
    APPS[app][1](page)
    page.wait_for_timeout(500)
    body = page.inner_text("body")
    save_full_page(page, SCREENSHOTS / f"{app}.png")
    page.close()
    assert not [text for text in PAGE_FAILURE_TEXT if text in body], body[-2000:]
    assert not [message for message in console if CONSOLE_FAILURE in message], console
    assert not server_errors(log.read_text())
