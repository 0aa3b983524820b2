"""Each app served by ``marimo run`` and driven in Debian's chromium with Playwright.

The servers are started with the exact commands :func:`paretopo.commands.launch.app_commands` gives for a
demo-like folder (``runs/demo-<ts>/<method>/``, copied from the fixture runs, with the tiny policy
as the paretopo run's ``final/``), so the commands ``paretopo demo`` prints are the ones tested;
one more frontier comparison runs on an empty folder. Per app: open the page, wait for its last
section, feed it the inputs a user can type or pick that used to fail (a question the task cannot
score, a wrong model or run path, a baseline run, four groups, an empty folder) and wait for the
sentence that answers each. Then at 1280 and at 1920 px: no chart or table sticks out of its
column unless it scrolls, the key columns are in view, and no cell failed; a full-page screenshot
of each width goes to ``docs/screenshots/<app>.png`` and ``<app>-1920.png``.

``marimo run`` does not draw a failed cell's output (the page only logs "An internal error
occurred" to the browser console, and the server logs the traceback with an ``error_id``), so
those two channels are checked as well as the page. Needs ``/usr/bin/chromium`` (``apt-get
install -y chromium``; never a Playwright browser download); skipped without it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"Debian's chromium is not installed ({CHROMIUM} missing; apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")

from paretopo.evaluation.plots import shrink_png  # noqa: E402  (after the skips: they need no paretopo)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_RUNS = ROOT / "tests" / "fixtures" / "runs"
TINY_POLICY = ROOT / "data" / "tiny_policy"
WIDTHS = (1280, 1920)
# The README's screenshots are refreshed only on request, so a plain test run never dirties the
# checkout: PARETOPO_UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("PARETOPO_UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "paretopo-screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
PAGE_FAILURE_TEXT = ("An internal error occurred", "Ancestor prevented from running", "This cell raised an exception")
CONSOLE_FAILURE = "An internal error occurred"  # how marimo run reports a failed cell to the page
# a wait for a page's answer; raise it on a machine busy with other work
TIMEOUT_MS = int(float(os.environ.get("PARETOPO_BROWSER_TIMEOUT_S", "60")) * 1000)


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


def marimo_command(command: str, port: int) -> list[str]:
    """A ``marimo run <app> [-- args]`` line as printed for users -> the headless server on ``port``."""
    words = shlex.split(command)
    assert words[:2] == ["marimo", "run"], command
    return [sys.executable, "-m", "marimo", "run", "--headless", "--host", "127.0.0.1", "--port", str(port), *words[2:]]


@contextmanager
def marimo_servers(commands: dict[str, str], logs: Path) -> Iterator[dict[str, str]]:
    """Each ``marimo run ...`` command (name -> command line) served on 127.0.0.1, all started at once
    (their start-up overlaps); yields name -> URL and stops them afterwards."""
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for name, command in commands.items():
            port = free_port()
            with open(logs / f"{name}.log", "w") as output:
                servers[name] = (subprocess.Popen(marimo_command(command, port), cwd=ROOT, stdout=output,
                                                  stderr=subprocess.STDOUT), port)
        deadline = time.monotonic() + max(90.0, 2 * TIMEOUT_MS / 1000)
        for name, (server, port) in servers.items():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log = (logs / f"{name}.log").read_text()[-3000:]
                        raise RuntimeError(f"marimo run {name} did not start:\n{log}") from None
                    time.sleep(0.3)
        yield {name: f"http://127.0.0.1:{port}" for name, (_, port) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.terminate()
        for server, _ in servers.values():
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """A folder as ``paretopo demo`` writes it, runs/demo-<ts>/<method>/, the paretopo run with a final/ policy."""
    root = tmp_path_factory.mktemp("runs") / "demo-20261130-120000"
    for method in ("paretopo", "torl_grpo"):
        shutil.copytree(FIXTURE_RUNS / method, root / method)
    shutil.copytree(TINY_POLICY, root / "paretopo" / "final")
    for step in (30, 60, 90, 120, 150):  # listed by live rollouts (never loaded here): by step, not as text
        checkpoint = root / "paretopo" / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_config.json").write_text("{}")
    return root


LONG_RUN_STEPS = 150


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    """The fixture ParetoPO run stretched to 150 logged steps (its steps 4-6 repeated), like a demo's run:
    a step slider with 150 stops, where dragging used to re-run the page once per stop."""
    import polars as pl

    source = FIXTURE_RUNS / "paretopo"
    run = tmp_path_factory.mktemp("long") / "paretopo"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("groups", "samples", "steps.parquet"))
    steps = pl.read_parquet(source / "steps.parquet")
    stretched = []
    for step in range(1, LONG_RUN_STEPS + 1):
        copied = step if step <= 3 else 4 + (step - 4) % 3
        for table in ("groups", "samples"):
            (run / table).mkdir(exist_ok=True)
            pl.read_parquet(source / table / f"step-{copied:08d}.parquet").with_columns(
                pl.lit(step).cast(pl.Int64).alias("step")).write_parquet(run / table / f"step-{step:08d}.parquet")
        stretched.append(steps.filter(pl.col("step") == copied).with_columns(
            pl.lit(step).cast(steps["step"].dtype).alias("step")))
    pl.concat(stretched).write_parquet(run / "steps.parquet")
    return run


@pytest.fixture(scope="module")
def server_urls(tmp_path_factory, demo_root, long_run):
    """name -> (URL, log) of its server, started on first use (so ``-k`` starts only what it needs)."""
    from paretopo.commands.launch import app_commands

    logs = tmp_path_factory.mktemp("marimo-logs")
    commands = {Path(shlex.split(c)[2]).stem: c for c in app_commands(demo_root, apps_dir=ROOT / "apps")}
    assert sorted(commands) == sorted(APPS)
    empty = tmp_path_factory.mktemp("empty-runs")
    commands["frontier_compare_empty"] = f"marimo run {ROOT / 'apps' / 'frontier_compare.py'} -- --runs-dir {empty}"
    commands["frontier_compare_three_objectives"] = (
        f"marimo run {ROOT / 'apps' / 'frontier_compare.py'} -- --runs-dir {ROOT / 'tests' / 'fixtures' / 'runs_three_objectives'}")
    # the committed study (paretopo study): its runs two folders down, as the README shows it
    commands["frontier_compare_study"] = (f"marimo run {ROOT / 'apps' / 'frontier_compare.py'} -- --runs-dir "
                                          f"{ROOT / 'results' / 'study' / 'runs'}")
    commands["run_inspector_long_run"] = f"marimo run {ROOT / 'apps' / 'run_inspector.py'} -- --run {long_run}"
    with ExitStack() as stack:
        started: dict[str, tuple[str, Path]] = {}

        def url_of(name: str) -> tuple[str, Path]:
            if name not in started:
                (url,) = stack.enter_context(marimo_servers({name: commands[name]}, logs)).values()
                started[name] = (url, logs / f"{name}.log")
            return started[name]

        yield url_of


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# marimo draws outputs inside shadow roots: these scripts walk through them
_ALL_ELEMENTS_JS = """
function allElements(root, found = []) {
    for (const element of root.querySelectorAll('*')) {
        found.push(element);
        if (element.shadowRoot) allElements(element.shadowRoot, found);
    }
    return found;
}
function parentOf(element) { return element.parentElement || element.getRootNode().host || null; }
function scrollsSideways(element) { return element.nodeType === 1 && /auto|scroll/.test(getComputedStyle(element).overflowX); }
"""

# charts and tables that stick out of their cell's output column (a table or chart inside a
# sideways-scrolling frame counts by its frame), and a page that scrolls sideways
LAYOUT_JS = "() => {" + _ALL_ELEMENTS_JS + """
    const problems = [];
    for (const element of allElements(document)) {
        const isChart = element.classList?.contains('vega-embed');
        const isTable = element.tagName === 'TABLE' && element.getBoundingClientRect().width > 0;
        if (!isChart && !isTable) continue;
        let column = null, frame = null;
        for (let up = parentOf(element); up; up = parentOf(up)) {
            if (!frame && scrollsSideways(up)) frame = up;
            if (up.classList?.contains('output-area')) { column = up; break; }
        }
        if (!column) continue;
        let right = element.getBoundingClientRect().right;
        if (isChart) for (const drawn of element.querySelectorAll('canvas, svg.marks'))
            right = Math.max(right, drawn.getBoundingClientRect().right);
        if (frame) right = frame.getBoundingClientRect().right;
        const limit = column.getBoundingClientRect().right + 1;
        if (right > limit) problems.push(`${isChart ? 'chart' : 'table'} ends at ${Math.round(right)} px, its column `
            + `at ${Math.round(limit)} px: ${(element.textContent || '').trim().slice(0, 60)}`);
    }
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth + 1) problems.push(`the page scrolls sideways (${page.scrollWidth} px)`);
    return problems;
}"""

# every table's header cells in order, each with whether it is in view before any scrolling
HEADERS_JS = "() => {" + _ALL_ELEMENTS_JS + """
    return allElements(document).filter(e => e.tagName === 'TABLE' && e.getBoundingClientRect().width > 0).map(table => {
        let frame = table.getBoundingClientRect();
        for (let up = parentOf(table); up; up = parentOf(up))
            if (scrollsSideways(up)) { frame = up.getBoundingClientRect(); break; }
        return Array.from(table.querySelectorAll('th')).map(th => {
            const box = th.getBoundingClientRect();
            return [th.textContent.trim(), box.left >= frame.left - 1 && box.right <= frame.right + 1];
        });
    });
}"""

COUNT_JS = "([selector, styled]) => {" + _ALL_ELEMENTS_JS + """
    return allElements(document).filter(e => styled ? (e.getAttribute('style') || '').includes(selector)
                                                    : e.matches(selector)).length;
}"""


def layout_problems(page) -> list[str]:
    return page.evaluate(LAYOUT_JS)


def table_headers(page) -> list[list[tuple[str, bool]]]:
    """Each table's header cells as (text, in view before scrolling sideways); marimo's dtype tag
    (``ranki64``) is dropped."""
    dtype = re.compile(r"(?:[iuf](?:8|16|32|64)|str|bool|date|datetime.*)$")
    return [[(dtype.sub("", text), visible) for text, visible in table if text] for table in page.evaluate(HEADERS_JS)]


def assert_key_columns_first(page, key: str, first: list[str], in_view: int | None = None) -> None:
    """The table with column ``key`` starts with ``first``, all of them (or the first ``in_view``) in view."""
    for _ in range(60):  # the table draws after the text around it
        tables = [t for t in table_headers(page) if key in [text for text, _ in t]]
        if tables:
            break
        page.wait_for_timeout(500)
    assert tables, f"no table with a {key} column"
    table = tables[0]
    assert [text for text, _ in table[:len(first)]] == first, table
    assert all(visible for _, visible in table[:in_view or len(first)]), table


def count(page, selector: str, styled: bool = False) -> int:
    """Elements matching a CSS selector (or, with ``styled``, whose style attribute holds ``selector``)."""
    return page.evaluate(COUNT_JS, [selector, styled])


def wait_for_count(page, selector: str, expected: int, what: str) -> None:
    """Wait (charts draw one by one) until exactly ``expected`` elements match ``selector``."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (found := count(page, selector)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert found == expected, f"{found} instead of {expected} charts ({what})"


def body_text(page) -> str:
    return page.inner_text("body")


def shows_soon(page, text: str, seconds: float) -> None:
    """``text`` appears within ``seconds`` (an answer, not a long wait ending in a toast)."""
    page.get_by_text(text).first.wait_for(timeout=seconds * 1000)


def type_into(page, placeholder: str, text: str) -> None:
    field = page.get_by_placeholder(placeholder).first
    field.fill(text)
    field.press("Enter")


def field_width(page, placeholder: str) -> float:
    return page.get_by_placeholder(placeholder).first.bounding_box()["width"]


def selected_option(page, has_text: str) -> str:
    """The text of the picked option of the first drop-down (``select``) holding ``has_text``."""
    return page.locator("select").filter(has_text=has_text).first.evaluate("s => s.options[s.selectedIndex].text")


def save_full_page(page, path: Path, width: int) -> None:
    """marimo scrolls inside an element, not the window: grow the viewport to the content, then shoot."""
    height = page.evaluate("""() => {
        document.activeElement?.blur();  // no focus rings or slider tooltips in the picture
        const scrollers = Array.from(document.querySelectorAll('*'))
            .filter(e => /auto|scroll/.test(getComputedStyle(e).overflowY));
        scrollers.forEach(e => e.scrollTo(0, 0));
        return Math.max(document.body.scrollHeight, ...scrollers.map(e => e.scrollHeight));
    }""")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(800)  # let vega re-lay out its charts
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    shrink_png(path)


def shows(page, text: str, exact: bool = False) -> None:
    """Wait until ``text`` is visible (the first match: marimo's outline repeats headings)."""
    page.get_by_text(text, exact=exact).first.wait_for()


def drive_playground(page) -> None:
    shows(page, "Stage 1: the hypervolume-guided meta reward")
    shows(page, "2 × 8 completions")
    page.get_by_role("button", name="preset: equal weighted sums").click()
    shows(page, "1 × 8 completions")
    shows(page, "every completion has w·r = 0.500")
    # four random groups: the faceted charts wrap two to a row and must fit with their legends
    page.get_by_role("button", name="LLM-like group").click()
    groups = page.get_by_role("slider").nth(2)
    groups.focus()
    page.keyboard.press("End")
    shows(page, "4 × 8 completions")
    shows(page, "group 3")
    # the key columns come first, so the rank and ParetoPO's advantage are in view without scrolling
    assert_key_columns_first(page, "pareto_rank", ["group", "completion", "rank", "pareto_rank"])
    shows(page, "standardised within each group")  # and the centring of Eq. 9 is explained under the table
    # four objectives: the weighted sum w·r comes after all of them, not between them
    objectives = page.get_by_role("slider").nth(1)
    objectives.focus()
    page.keyboard.press("End")
    shows(page, "M = 4: the scatter shows one pair of objectives")
    page.wait_for_timeout(1500)  # the table is redrawn with the new columns
    assert_key_columns_first(page, "pareto_rank", ["group", "completion", "rank", "pareto_rank", "task",
                                                   "tool_efficiency", "objective_3", "objective_4", "w·r"], in_view=4)
    objectives.focus()
    page.keyboard.press("Home")  # back to M = 2 for the screenshots
    page.get_by_text("M = 4: the scatter shows").first.wait_for(state="hidden")
    page.wait_for_timeout(1500)


def drive_inspector(page) -> None:
    shows(page, "Completions", exact=True)
    shows(page, "match paretopo.core.advantages (pareto_rank)")
    # it opens on a group whose text was logged, with the question and the gold answer
    shows(page, "gold answer")
    # marimo draws widgets in shadow roots, which the body's text leaves out: count through them
    assert page.get_by_text("text not kept").count() == 0
    assert field_width(page, "or type a run folder path") > 500  # its hint in full, not a ~140 px box
    # a step opens on its most informative group: at step 5 the fixture's groups 0 and 1 have one vector for all
    # completions (degenerate), group 2 three distinct ones
    assert selected_option(page, "distinct vectors").startswith("0 · 3 distinct vectors")  # step 6
    page.get_by_role("slider").first.focus()
    page.keyboard.press("ArrowLeft")
    shows(page, "2 of 4 groups at step 5 are degenerate")
    assert selected_option(page, "distinct vectors").startswith("2 · 3 distinct vectors")
    # a degenerate group is marked in the picker and says so when picked
    groups = page.locator("select").filter(has_text="distinct vectors").first
    groups.select_option(label=groups.evaluate("s => [...s.options].find(o => o.text.startsWith('0 ·')).text"))
    shows(page, "Group 0 is degenerate")
    assert "degenerate: all vectors equal" in selected_option(page, "distinct vectors")
    both = page.locator("select").filter(has_text="torl_grpo").first  # both demo runs are listed
    assert both.count() == 1
    wait_for_count(page, ".vega-embed", 6, "paretopo: 4 curves with the stage-1 panels, the group's scatter and bars")
    page.get_by_role("slider").first.focus()
    page.keyboard.press("Home")  # step 1: stage 1
    shows(page, "match paretopo.core.advantages (hv_scalarized)")
    # a single-stage baseline: no stage-1 panels, no "(stage N)" labels
    type_into(page, "or type a run folder path", str(both.evaluate("s => s.options[1].value")))
    shows(page, "torl_grpo throughout so far")
    shows(page, "match paretopo.core.advantages (torl_grpo)")
    wait_for_count(page, ".vega-embed", 4, "torl_grpo: 2 curves (no stage-1 panels), the group's scatter and bars")
    # a missing folder: a sentence, and no polling of it as a run "still writing"
    type_into(page, "or type a run folder path", "runs/no-such-run")
    shows_soon(page, "There is no folder", 15)
    assert page.get_by_text("(still writing)").count() == 0  # no polling button for it
    type_into(page, "or type a run folder path", "")  # back to the listed run for the screenshots
    shows(page, "gold answer")
    page.get_by_role("slider").first.focus()
    page.keyboard.press("End")  # and to its last step, where the page opens
    shows(page, "groups at step 6 are degenerate")


def drive_inspector_long_run(page) -> None:
    """Dragging the step slider across a 150-step run: one re-run when it is let go, not one per stop
    passed (those raced the page's fetches of the replaced charts' data: 63 tracebacks in the terminal)."""
    shows(page, "gold answer")
    shows(page, f"groups at step {LONG_RUN_STEPS} are degenerate")
    thumb = page.get_by_role("slider").first
    thumb.scroll_into_view_if_needed()
    box = thumb.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 51):  # 200 px to the left, a few px at a time, as a hand drags
        page.mouse.move(x - 4 * step, y)
        page.wait_for_timeout(20)
    page.mouse.up()
    page.wait_for_timeout(3000)
    shows(page, "groups at step")
    assert page.get_by_text(f"groups at step {LONG_RUN_STEPS} are").count() == 0, "the drag did not move the slider"


def drive_live_rollouts(page) -> None:
    shows(page, "to generate")
    # the demo's own policy is offered, and its checkpoints by step
    policies = page.locator("select").filter(has_text="paretopo/final")
    assert policies.count() == 1
    steps = [int(m[1]) for text in policies.first.locator("option").all_inner_texts()
             if (m := re.search(r"checkpoint-(\d+)", text))]
    assert steps == [30, 60, 90, 120, 150], steps
    # what the loaded policy was trained on, and the task's own questions
    shows(page, "It was trained on the arithmetic task")
    shows(page, "The task's questions, all of one form")
    for hint in ("or type one, e.g. What is 417*38?", "or a model folder / adapter folder / hub id"):
        assert field_width(page, hint) > 500, hint  # the hint in full, not a ~140 px box
    question = page.get_by_text(re.compile(r"^Question: ")).first
    before = question.inner_text()
    page.get_by_role("button", name="new question from the task").click()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while question.inner_text() == before and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert re.match(r"Question: What is \d+[+*]\d+\?", question.inner_text()), question.inner_text()
    assert page.get_by_text("not in the task's form").count() == 0
    # a question outside the task's form: said before sampling; one it cannot score: a sentence too
    type_into(page, "or type one, e.g. What is 417*38?", "How many legs does a spider have?")
    shows(page, "not in the task's form")
    shows(page, "has no expected answer")
    page.get_by_role("button", name="sample G rollouts").click()
    shows(page, "Transcripts", exact=True)
    shows(page, "n* of this group")
    shows(page, "standardised within each group")
    # every answer wrong: the sentences say what the table shows (efficiency 0 under gating, no "harder question")
    shows(page, "tool efficiency 0 for all")
    shows(page, "every answer is wrong")
    for stale in ("efficiency 1 for all", "pick a harder question", "ranks below reflect tool calls only"):
        assert page.get_by_text(stale).count() == 0, stale
    # a wrong model path answers at once, not after ~70 s of hub retries
    type_into(page, "or a model folder / adapter folder / hub id", "/no/such/model")
    shows_soon(page, "There is no folder", 15)
    type_into(page, "or a model folder / adapter folder / hub id", "")
    type_into(page, "or type one, e.g. What is 417*38?", "")
    page.get_by_role("button", name="sample G rollouts").click()
    shows(page, "Transcripts", exact=True)


def hover_chart_until_tooltip(page, wanted: Callable[[str], bool], attempts: int = 5) -> tuple[tuple[float, float], str]:
    """:func:`hover_until_tooltip` over the page's first vega chart, found again when marimo re-draws
    it meanwhile (after runs are selected the chart can be replaced more than once; a stale canvas
    is detached or has no box)."""
    for _ in range(attempts):
        canvas = page.locator(".vega-embed canvas").first
        try:
            canvas.wait_for(state="visible")
            canvas.scroll_into_view_if_needed()
            return hover_until_tooltip(page, canvas, wanted)
        except (sync_api.Error, ChartRedrawn):
            page.wait_for_timeout(1000)
    raise AssertionError(f"the chart kept being re-drawn: {attempts} attempts")


class ChartRedrawn(Exception):
    """The canvas being hovered left the page (marimo drew the chart again)."""


def hover_until_tooltip(page, canvas, wanted: Callable[[str], bool], stride: int = 6) -> tuple[tuple[float, float], str]:
    """Move the mouse over a canvas chart row by row until vega's tooltip shows a text ``wanted``
    accepts; returns that page position and the tooltip's text (vega draws points on a canvas, so
    there is no element to click: a user finds a point the same way)."""
    box = canvas.bounding_box()
    if box is None:
        raise ChartRedrawn
    visible_tip = ("() => { const tip = document.getElementById('vg-tooltip-element');"
                   " return tip && tip.classList.contains('visible') ? tip.innerText : null; }")
    for y in range(stride // 2, int(box["height"]), stride):
        for x in range(stride // 2, int(box["width"]), stride):
            spot = (box["x"] + x, box["y"] + y)
            page.mouse.move(*spot)
            tip = page.evaluate(visible_tip)
            if tip and wanted(tip):
                return spot, tip
    raise AssertionError("no point of the chart shows the wanted tooltip")


def drive_frontier_compare(page) -> None:
    shows(page, "Dominance between the runs' final test points")
    shows(page, "2 evaluated run(s) found")  # both demo runs, one folder down
    shows(page, "frontier HV (validation)")
    split = page.locator("select").filter(has_text="validation").first
    split.select_option("test")
    shows(page, "frontier HV (test)")
    split.select_option("validation")  # back, for the screenshot: the frontiers over several checkpoints
    shows(page, "frontier HV (validation)")
    # no run selected: said as such, not that the folder holds none
    picker = page.locator("button[aria-haspopup=dialog]").filter(has_text="torl_grpo").first.element_handle()
    picker.click()
    for run in ("paretopo", "torl_grpo"):
        page.get_by_role("option", name=run, exact=True).click()
    page.keyboard.press("Escape")
    shows(page, "No run selected: pick one or more of the 2 evaluated run(s)")
    assert page.get_by_text("holds none").count() == 0
    picker.click()  # the same picker, now empty: select both runs again
    for run in ("paretopo", "torl_grpo"):
        page.get_by_role("option", name=run, exact=True).click()
    page.keyboard.press("Escape")
    shows(page, "frontier HV (validation)")
    # the samples below the chart (the last test checkpoint until one is clicked) mark tool output as
    # the other apps do: spans titled as environment-written and masked from the loss
    shows(page, "tool output (written by the environment, masked from the loss)")
    marked = page.locator('span[title^="tool output: written by the environment"]')
    marked.first.wait_for()
    assert marked.count() >= 1
    # as a user does: move over the chart until a tooltip names a checkpoint, click it, and the
    # samples below switch to that checkpoint (the page opened on the first run's final test point)
    spot, tip = hover_chart_until_tooltip(page, lambda text: "validation" in text)
    step = re.search(r"step\s+(\d+)", tip).group(1)
    page.mouse.click(*spot)
    shows(page, f"step {step}, validation (click a checkpoint above to change)")
    page.mouse.move(0, 0)  # no tooltip left over the screenshot


def drive_frontier_compare_study(page) -> None:
    committed = len(list((ROOT / "results" / "study" / "runs").glob("*/*/eval.parquet")))
    shows(page, f"{committed} evaluated run(s) found")
    shows(page, "frontier HV (validation)")
    shows(page, "paretopo/seed0")  # runs are labelled by their path below --runs-dir


def drive_frontier_compare_three_objectives(page) -> None:
    shows(page, "1 evaluated run(s) found")
    shows(page, "frontier HV (validation)")
    # one pairwise projection at a time: task x tool efficiency first, then the user picks another
    pairs = page.locator("select").filter(has_text="task × tool_efficiency").first
    assert pairs.locator("option").all_inner_texts() == [
        "task × tool_efficiency", "task × brevity", "tool_efficiency × brevity"]
    pairs.select_option("task × brevity")
    page.wait_for_timeout(1500)  # the chart is redrawn for the new pair


def drive_frontier_compare_empty(page) -> None:
    shows(page, "No evaluated runs selected")
    shows(page, "holds none")


# pages where even the virtual-file race of server_errors must not happen: each is a defect we fixed
RACE_FREE_PAGES = ("run_inspector_long_run",)

APPS: dict[str, Callable] = {
    "pareto_playground": drive_playground,
    "run_inspector": drive_inspector,
    "live_rollouts": drive_live_rollouts,
    "frontier_compare": drive_frontier_compare,
}
PAGES = {**APPS, "frontier_compare_empty": drive_frontier_compare_empty, "run_inspector_long_run": drive_inspector_long_run,
         "frontier_compare_study": drive_frontier_compare_study,
         "frontier_compare_three_objectives": drive_frontier_compare_three_objectives}


@pytest.mark.parametrize("app", list(PAGES))
def test_app_in_the_browser(app, browser, server_urls):
    url, log = server_urls(app)
    console: list[str] = []
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda message: console.append(message.text))
    page.goto(url, timeout=TIMEOUT_MS)
    PAGES[app](page)
    page.wait_for_timeout(500)
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(1200)  # let vega re-lay out
        problems += [f"{width} px: {problem}" for problem in layout_problems(page)]
        if app in APPS:
            save_full_page(page, SCREENSHOTS / (f"{app}.png" if width == WIDTHS[0] else f"{app}-{width}.png"), width)
        elif app in ("frontier_compare_study", "frontier_compare_three_objectives") and width == WIDTHS[0]:
            save_full_page(page, SCREENSHOTS / f"{app}.png", width)
    body = body_text(page)
    page.close()
    assert not problems, problems
    assert not [text for text in PAGE_FAILURE_TEXT if text in body], body[-2000:]
    assert not [message for message in console if CONSOLE_FAILURE in message], console
    assert not server_errors(log.read_text())
    if app in RACE_FREE_PAGES:
        assert "Virtual file not found" not in log.read_text(), "the page re-ran while it fetched the old data"


def test_gamble_map_section_in_the_browser(browser, server_urls):
    """The playground's gamble map: the sentence answers the sliders (a sure call moves the weighted
    sum's break-even to 0.6 + 0.4 e^-0.5 = 84.3 % and the ranks' to 50.0 %), the chart fits its column
    at both widths; a screenshot of the section goes to ``gamble_map.png`` / ``gamble_map-1920.png``."""
    url, log = server_urls("pareto_playground")
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, timeout=TIMEOUT_MS)
    shows(page, "Gamble map: answer directly or call the tool?")
    shows(page, "only when it is right more than 83.4% of the time")
    shows(page, "pareto_rank already pushes toward direct answers above 49.7%")
    call_right = page.get_by_role("slider").nth(GAMBLE_C_SLIDER)
    call_right.focus()
    page.keyboard.press("End")  # c = 1: a sure call
    shows(page, "only when it is right more than 84.3% of the time")
    shows(page, "pareto_rank already pushes toward direct answers above 50.0%")
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(1200)
        problems += [f"{width} px: {problem}" for problem in layout_problems(page)]
        save_full_page(page, SCREENSHOTS / "full-page-scratch.png", width)
        bottom = page.get_by_text("pushed to gamble on it").first.bounding_box()
        page.set_viewport_size({"width": width, "height": int(bottom["y"] + bottom["height"]) + 200})  # all of it
        page.wait_for_timeout(800)
        top = page.get_by_text("Gamble map: answer directly or call the tool?").first.bounding_box()
        bottom = page.get_by_text("pushed to gamble on it").first.bounding_box()
        shot = SCREENSHOTS / ("gamble_map.png" if width == WIDTHS[0] else f"gamble_map-{width}.png")
        page.screenshot(path=str(shot), clip={"x": 0, "y": top["y"] - 16, "width": width,
                                              "height": bottom["y"] + bottom["height"] + 24 - (top["y"] - 16)})
        shrink_png(shot)
    (SCREENSHOTS / "full-page-scratch.png").unlink()
    body = body_text(page)
    page.close()
    assert not problems, problems
    assert not [text for text in PAGE_FAILURE_TEXT if text in body], body[-2000:]
    assert not server_errors(log.read_text())


# the gamble map's c slider among the playground's sliders, in page order: G, M, groups, beta, the two
# weights (M = 2), gamma (stage 1), then the gamble map's w_task, c, q, G, beta
GAMBLE_C_SLIDER = 8
