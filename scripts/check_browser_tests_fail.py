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
             '.sort(["n", "kept", "group"], descending=[True, True, False]))',
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
             " + ([] if example.answer else [_unscorable])", " + []", "live_rollouts", "has no expected answer"),
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
    # issue 26: pages that misled a new user
    Mutation("live rollouts: no word on what the loaded policy was trained on",
             "apps/live_rollouts.py",
             "            _trained = trained_on(model_path)\n", "            _trained = None\n", "live_rollouts",
             "It was trained on the arithmetic task"),
    Mutation("live rollouts: a question outside the task's form not flagged before sampling",
             "apps/live_rollouts.py",
             "    _notes = ([_outside] if question_tier(example.question) is None else [])",
             "    _notes = ([])", "live_rollouts", "not in the task's form"),
    Mutation("live rollouts: no way to ask a question of the task's own form",
             "apps/live_rollouts.py",
             '               mo.hstack([question_choice, new_question], justify="start", align="end")])',
             "               question_choice])", "live_rollouts", "new question from the task"),
    Mutation("live rollouts: the model path field ~140 px wide beside the picker, its hint cut off",
             "apps/live_rollouts.py",
             "    mo.vstack([model_choice, model_typed,\n",
             '    mo.vstack([mo.hstack([model_choice, model_typed], justify="start", align="end"),\n',
             "live_rollouts", "field_width(page, hint) > 500"),
    Mutation("live rollouts: checkpoints listed as text (120, 150, 30, 60, 90)",
             "apps/live_rollouts.py",
             "                    key=natural_key)", "                    )", "live_rollouts",
             "[120, 150, 30, 60, 90]"),
    Mutation("live rollouts: an all-wrong group said 'efficiency 1 for all' while the table shows 0",
             "apps/live_rollouts.py",
             '(f"{_efficiencies[0]:g} for all" if len(_efficiencies) == 1 else',
             '("1 for all" if len(_efficiencies) == 1 else', "live_rollouts", "tool efficiency 0 for all"),
    Mutation("live rollouts: an all-wrong degenerate group advised a harder question",
             "apps/live_rollouts.py",
             '    _tasks = set(ranked["task"].to_list())', "    _tasks = {1.0}", "live_rollouts",
             "every answer is wrong"),
    Mutation("live rollouts: the unscorable note said the ranks reflect tool calls only",
             "apps/live_rollouts.py",
             '"has no expected answer, so every completion will count as **wrong** (task 0)"',
             '"has no expected answer, so every completion counts as wrong and the ranks below reflect tool calls only"',
             "live_rollouts", "ranks below reflect tool calls only"),
    Mutation("run inspector: the run path field ~140 px wide beside the picker, its hint cut off",
             "apps/run_inspector.py",
             '    mo.vstack([mo.hstack([run_choice, refresh], justify="start", align="end"), run_typed])',
             '    mo.hstack([run_choice, run_typed, refresh], justify="start", align="end")', "run_inspector",
             'field_width(page, "or type a run folder path") > 500'),
    Mutation("run inspector: a step opens on a degenerate group whose text was logged, not the most distinct",
             "apps/run_inspector.py",
             '.sort(["n", "kept", "group"], descending=[True, True, False]))',
             '.sort(["kept", "n", "group"], descending=[True, True, False]))', "run_inspector",
             "2 · 3 distinct vectors"),
    Mutation("run inspector: degenerate groups not marked in the group picker",
             "apps/run_inspector.py",
             '("degenerate: all vectors equal" if distinct_vectors[int(g)] == 1 else',
             '("" if False else', "run_inspector", "degenerate: all vectors equal"),
    Mutation("run inspector: no note on a degenerate group",
             "apps/run_inspector.py",
             '        if distinct_vectors[int(group_picker.value)] == 1 else mo.md(""))',
             '        if False else mo.md(""))', "run_inspector", "Group 0 is degenerate"),
    Mutation("run inspector: dragging the step slider re-runs the page at every stop (tracebacks in the terminal)",
             "apps/run_inspector.py",
             "show_value=True, debounce=True, on_change=set_picked_step)",
             "show_value=True, on_change=set_picked_step)", "run_inspector_long_run",
             "the page re-ran while it fetched the old data"),
    Mutation("frontier comparison: no run selected read as a folder holding none",
             "apps/frontier_compare.py",
             "    _offered = len(run_picker.options)", "    _offered = 0", "frontier_compare", "No run selected"),
    Mutation("playground, M = 4: the weighted sum w·r between the objective columns",
             "apps/pareto_playground.py",
             'display.display_table(advantage_table, first=(\n'
             '                   "group", "completion", "rank", "pareto_rank", *objective_names, "w·r"))',
             "display.display_table(advantage_table)", "pareto_playground", "'w·r' != 'objective_3'"),
    # issue 26: defects in a chart's spec, a printed table, the docs or the Colab install
    Mutation("frontier chart: the region each frontier dominates is not shaded",
             "paretopo/evaluation/plots.py",
             "    shade = alt.Chart(strip).mark_rect(opacity=min(0.12, 0.5 / max(len(regions), 1)), clip=True)",
             "    shade = alt.Chart(strip).mark_rect(opacity=0.0, clip=True)",
             "tests/test_plots.py::test_frontier_chart_shades_what_each_frontier_dominates_when_drawn",
             "the shade layer paints"),
    Mutation("frontier chart: the split legend without symbols",
             "paretopo/evaluation/plots.py",
             "alt.layer(shade, fronts, split_key, dots, counts)", "alt.layer(shade, fronts, dots, counts)",
             "tests/test_plots.py::test_frontier_chart_legends_show_their_symbols_in_full", "transparent"),
    Mutation("frontier chart: the run legend's symbols as faint as the shading",
             "paretopo/evaluation/plots.py",
             "titleLimit=400, symbolType=\"square\", symbolOpacity=1,", "titleLimit=400, symbolType=\"square\",",
             "tests/test_plots.py::test_frontier_chart_legends_show_their_symbols_in_full", "symbolOpacity"),
    Mutation("playground, M = 4: labels of points on one spot drawn over each other (\"#2#1#4\")",
             "paretopo/evaluation/plots.py",
             '.encode(text="position_label:N").transform_filter(\n        alt.datum.labelled)',
             '.encode(text="label:N")',
             "tests/test_plots.py::test_objective_scatter_writes_one_label_per_position_when_a_projection_stacks_points",
             "#0 #1 #3"),
    Mutation("run inspector: a degenerate group's advantage axis is one long tick '0.000000'",
             "paretopo/evaluation/plots.py",
             "    flat = values.size and np.ptp(values) < 1e-12", "    flat = False",
             "tests/test_plots.py::test_advantage_bars_of_a_degenerate_group_have_a_centred_axis", "[-1.0, 1.0]"),
    Mutation("demo: the test-split table shows the validation frontier HV without saying so",
             "paretopo/commands/demo.py",
             '"correct per call", "frontier HV (validation)"):', '"correct per call", "frontier HV"):',
             "tests/test_cli.py::test_demo_table_says_its_frontier_hv_is_measured_on_validation",
             "frontier HV (validation)"),
    Mutation("README: the tiny policy's parameter count not the measured one",
             "README.md",
             "(`data/tiny_policy`, 202,624 parameters,", "(`data/tiny_policy`, ~170k parameters,",
             "tests/test_shipped_policy.py::test_the_docs_give_the_shipped_policys_measured_parameter_count",
             "does not give the measured"),
    Mutation("notebooks: a zip of the checkout with .venv/ installs a package of .venv/ instead of paretopo",
             "notebooks/01_quickstart_cpu.ipynb",
             'return min(Path(\\"paretopo-unzipped\\").rglob(\\"pyproject.toml\\"), key=lambda p: (len(p.parts), p)).parent',
             'return next(p.parent for p in sorted(Path(\\"paretopo-unzipped\\").rglob(\\"pyproject.toml\\")))',
             "tests/test_notebooks.py::test_install_cell_on_colab_installs_the_project_from_a_zip_holding_a_venv"
             "[01_quickstart_cpu]", "paretopo-main"),
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
