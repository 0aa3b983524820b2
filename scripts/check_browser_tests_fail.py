#!/usr/bin/env python3
"""The app tests fail on the defects they were written for (issue 12's "failing before").

Each mutation puts one fixed defect back - a one-line change to an app or to the package - in a
throw-away copy of the checkout (``git worktree`` of HEAD), runs the browser test of the page it
belongs to there (or the unit test that checks it), and expects it to fail at the check written
for that defect. The working
tree is never touched. Run from the repository root:

    python scripts/check_browser_tests_fail.py [--only NAME ...] [--processes 2]

Prints one line per mutation (caught or not, the failing check, seconds) and a markdown table;
exits 1 when a test passes with its defect back.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str  # the defect, as a user would see it
    path: str  # file changed, relative to the repository root
    old: str  # text to replace (must occur exactly once)
    new: str
    page: str  # the browser test's page (tests/test_browser.py PAGES), or a pytest node id ("tests/...")
    expect: str  # text the failure report must contain: the check that catches it

    @property
    def test(self) -> str:
        return self.page if self.page.startswith("tests/") else f"tests/test_browser.py::test_app_in_the_browser[{self.page}]"


MUTATIONS = (
    Mutation("frontier comparison: a click on a checkpoint does not change the samples",
             "apps/frontier_compare.py",
             "_clicked = frontier_plot.apply_selection(points) if frontier_plot.selections else None",
             "_clicked = None", "frontier_compare", 'step {step}, validation (click a checkpoint'),
    Mutation("frontier comparison: tool output in the samples is not marked",
             "paretopo/evaluation/display.py",
             '(TOOL_OUTPUT_STYLE, "tool output: written by the environment"))',
             '(TOOL_OUTPUT_STYLE, "tool response"))', "frontier_compare", "tool output: written by the environment"),
    Mutation("frontier comparison: runs one folder below --runs-dir are not found",
             "paretopo/evaluation/runlog.py",
             "evaluated: bool = False, max_depth: int = 6) -> list[Path]:",
             "evaluated: bool = False, max_depth: int = 0) -> list[Path]:", "frontier_compare",
             "Dominance between the runs"),
    Mutation("run inspector: opens on a group whose text was not logged (here: the last group)",
             "apps/run_inspector.py",
             '.sort(["kept", "n", "group"], descending=[True, True, False]))',
             '.sort(["group"], descending=[True]))', "run_inspector", "text not kept"),
    Mutation("run inspector: stage-1 panels drawn for a single-stage baseline",
             "apps/run_inspector.py",
             "if method.uses_meta_reward or title not in STAGE1_CURVES}", "}", "run_inspector",
             "torl_grpo: 2 curves (no stage-1 panels)"),
    Mutation("run inspector: a missing folder is polled as a run still writing",
             "apps/run_inspector.py",
             "run_writing = bool(run_dir) and is_run_folder(run_dir) and not run_finished",
             "run_writing = bool(run_dir) and not run_finished", "run_inspector",
             "(still writing)"),
    Mutation("live rollouts: a wrong model path waits on the hub instead of answering",
             "apps/live_rollouts.py",
             "        folder = Path(path).expanduser()\n        if folder.is_dir():",
             "        return None\n        folder = Path(path).expanduser()\n        if folder.is_dir():",
             "live_rollouts", "There is no folder"),
    Mutation("live rollouts: no word on why a typed question cannot be scored",
             "apps/live_rollouts.py",
             "    mo.vstack([_shown, _unscorable]) if not example.answer else _shown",
             "    _shown", "live_rollouts", "has no expected answer"),
    Mutation("run inspector: the group's question and gold answer not shown",
             "apps/run_inspector.py",
             "if group_example is not None else", "if False else", "run_inspector", "gold answer"),
    Mutation("playground: no word on why wrong answers get positive raw pareto_rank advantages",
             "apps/pareto_playground.py",
             "               mo.md(display.PARETO_RANK_NOTE)])", "               ])", "pareto_playground",
             "standardised within each group"),
    # defects whose check is a test of the chart's data rather than a page in the browser
    Mutation("frontier comparison: coincident checkpoints drawn on top of each other",
             "paretopo/evaluation/plots.py",
             "    data = _spread_coincident(data, x, y, radius)\n",
             '    data = data.with_columns(pl.col(x).alias("x_shown"), pl.col(y).alias("y_shown"), '
             'pl.lit(1).alias("together"))\n',
             "tests/test_plots.py::test_frontier_chart_spreads_coincident_checkpoints_so_each_can_be_clicked",
             "four distinct dots"),
    Mutation("frontier comparison: a frontier at one position is not drawn",
             "paretopo/evaluation/plots.py",
             "        corner = _dominated_region(part, x, y)\n",
             "        if part.select(x, y).unique().height < 2:\n            continue\n"
             "        corner = _dominated_region(part, x, y)\n",
             "tests/test_plots.py::test_frontier_chart_spreads_coincident_checkpoints_so_each_can_be_clicked",
             '"order" in rows[0]'),  # no frontier region drawn at all
    Mutation("playground: the meta-reward axis without dynamic weighting is one long tick",
             "paretopo/evaluation/plots.py",
             "    if values.size and np.ptp(values) < 1e-12:", "    if False:",
             "tests/test_apps.py::test_playground_meta_reward_axis_without_dynamic_weighting_is_centred",
             "[0.5, 1.5]"),
    Mutation("playground: four groups' charts in one row, wider than the page",
             "apps/pareto_playground.py",
             "width=260, height=220, columns=2)", "width=260, height=220, columns=4)", "pareto_playground",
             "chart ends at"),
    Mutation("playground: the rank and ParetoPO's advantage not the first columns",
             "paretopo/evaluation/display.py",
             "    leading = [c for c in first if c in frame.columns]\n",
             "    leading = []\n", "pareto_playground", "pareto_rank"),
)


def _worktree(base: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix="mutation-", dir=base))
    path.rmdir()
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), "HEAD"], check=True)
    return path


def _run(mutation: Mutation, base: Path) -> tuple[Mutation, bool, str, float]:
    started = time.perf_counter()
    tree = _worktree(base)
    try:
        target = tree / mutation.path
        text = target.read_text()
        if text.count(mutation.old) != 1:
            return mutation, False, f"the text to change occurs {text.count(mutation.old)} times in {mutation.path}", 0.0
        target.write_text(text.replace(mutation.old, mutation.new))
        # the copy's package first, so a mutated paretopo/ file is the one the apps import
        env = {**os.environ, "PYTHONPATH": str(tree), "PARETOPO_UPDATE_SCREENSHOTS": ""}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", mutation.test],
            cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        report = result.stdout + result.stderr
        caught = result.returncode != 0 and mutation.expect.split("{")[0] in report
        lines = [line.strip() for line in report.splitlines() if line.startswith(("E ", ">")) or "shows(page" in line]
        return mutation, caught, " | ".join(lines[-3:])[:300] or report[-300:], time.perf_counter() - started
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="mutations whose name contains one of these words")
    parser.add_argument("--processes", type=int, default=2, help="mutations checked at once")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(word in m.name for word in args.only)]
    base = Path(tempfile.mkdtemp(prefix="paretopo-mutations-"))
    with ThreadPoolExecutor(args.processes) as pool:
        results = list(pool.map(lambda m: _run(m, base), chosen))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    print("| defect put back | file | test (browser page or test id) | caught | failing check | seconds |")
    print("|---|---|---|---|---|---:|")
    for mutation, caught, detail, seconds in results:
        check = re.sub(r"\s+", " ", detail).replace("|", "/")
        print(f"| {mutation.name} | `{mutation.path}` | `{mutation.page}` | {'yes' if caught else '**no**'} | "
              f"{check[:160]} | {seconds:.0f} |")
    return 0 if all(caught for _, caught, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
