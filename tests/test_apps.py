"""The marimo apps run end to end on the fixture run logs, and show the package's numbers.

Each app's graph runs in this process with ``app.run(defs=...)`` (marimo's documented way to run
an app programmatically; ``defs`` replaces the cells that read command-line arguments, so the apps
read ``tests/fixtures/runs/``). UI elements keep their default values, so each test checks what a
user sees before touching a control. The last test runs ``python apps/<name>.py`` (the same
``app.run()`` in a fresh process, ~6 s each) and checks it exits 0.
"""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import marimo as mo
import numpy as np
import polars as pl
import pytest

from paretopo.core.advantages import ADVANTAGES, compute_advantages
from paretopo.core.config import PRESETS, ParetoPOConfig
from paretopo.core.objectives import OptimalCallTracker, objective_matrix, scoring_options
from paretopo.core.pareto import pareto_ranks
from paretopo.core.scalarize import HVScalarizer
from paretopo.evaluation.evaluate import checkpoint_points, compare_runs
from paretopo.evaluation.runlog import read_run
from paretopo.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
FIXTURE_RUNS = ROOT / "tests" / "fixtures" / "runs"
PARETOPO_RUN, BASELINE_RUN = FIXTURE_RUNS / "paretopo", FIXTURE_RUNS / "torl_grpo"
APP_NAMES = ("pareto_playground", "run_inspector", "live_rollouts", "frontier_compare")


def load_app(name: str) -> mo.App:
    spec = importlib.util.spec_from_file_location(f"apps_{name}", APPS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def preset_options(name: str, weights=(0.6, 0.4), beta: float = 0.5) -> dict:
    """Keyword options the method preset of estimator ``name`` passes it (paretopo's for pareto_rank)."""
    preset = name if name in PRESETS else "paretopo"
    return ParetoPOConfig.from_preset(preset, weights=weights, beta=beta).options_for_estimator(name)


def assert_advantages_match_package(advantages: pl.DataFrame, rewards: np.ndarray, group_size: int) -> None:
    for name in ADVANTAGES:
        shown = advantages.filter(pl.col("estimator") == name).sort("group", "completion")["advantage"].to_numpy()
        np.testing.assert_allclose(shown, ADVANTAGES[name](rewards, group_size, **preset_options(name)), err_msg=name)


# --- pareto_playground -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playground():
    return load_app("pareto_playground")


def test_playground_shows_ranks_and_every_estimators_advantages(playground):
    _, defs = playground.run()
    rewards, group_size = defs["rewards"], defs["completions_per_group"]
    assert rewards.shape == (16, 2) and group_size == 8  # two LLM-like groups of 8 by default
    assert set(np.unique(rewards[:, 0])) <= {0.0, 1.0}
    ranks = np.asarray(pareto_ranks(rewards.reshape(2, 8, 2))).reshape(-1)
    assert defs["ranked"]["rank"].to_list() == ranks.tolist()
    assert_advantages_match_package(defs["advantages"], rewards, group_size)
    table = defs["advantage_table"]
    assert table.columns[:6] == ["group", "completion", "task", "tool_efficiency", "rank", "w·r"]
    assert table.columns[6:] == list(ADVANTAGES)
    np.testing.assert_allclose(table["w·r"].to_numpy(), rewards @ np.array([0.6, 0.4]))


def test_playground_with_three_objectives_draws_the_pair_picked(playground):
    from types import SimpleNamespace as Value

    sliders = {"n_objectives": Value(value=3), "group_size": Value(value=8), "n_groups": Value(value=2),
               "beta": Value(value=0.5)}
    _, defs = playground.run(defs=sliders)
    assert defs["rewards"].shape == (16, 3)
    assert list(defs["pair_picker"].options) == ["task × tool_efficiency", "task × objective_3",
                                                 "tool_efficiency × objective_3"]
    outputs, _ = playground.run(defs={**sliders, "pair_picker": Value(value=("tool_efficiency", "objective_3"))})
    scatter = next(o.text for o in outputs if "objective vectors, coloured" in getattr(o, "text", ""))
    spec = html.unescape(html.unescape(scatter)).replace('\\"', '"').replace('\\"', '"')
    axes = set(re.findall(r'"(x|y)": \{[^{}]*"field": "([a-z_0-9]+)"', spec))
    objective_axes = {axis for axis in axes if axis[1] in defs["objective_names"]}
    assert objective_axes == {("x", "tool_efficiency"), ("y", "objective_3")}  # the picked pair, not the first two


def test_playground_equal_sums_preset_is_one_front_with_scalar_advantages_near_zero(playground):
    _, defs = playground.run(defs={"source": {"kind": "equal_sums", "weights": (0.6, 0.4)}})
    table = defs["advantage_table"]
    np.testing.assert_allclose(table["w·r"].to_numpy(), table["w·r"][0])
    assert table["rank"].to_list() == [1] * 8
    for scalar in ("fixed_weight", "hv_scalarized", "mo_grpo"):
        assert np.abs(table[scalar].to_numpy()).max() < 1e-3, scalar
    assert table["pareto_rank"].to_list() == [0.0] * 8  # default centring; raw Eq. 9 gives 1 to all
    assert not defs["degenerate_flags"].any()


def test_playground_same_sums_preset_separates_pareto_from_scalar_estimators(playground):
    _, defs = playground.run(defs={"source": {"kind": "same_sums", "weights": (0.6, 0.4)}})
    table = defs["advantage_table"]
    first, second = table.filter(pl.col("group") == 0), table.filter(pl.col("group") == 1)
    np.testing.assert_allclose(first["w·r"].to_numpy(), second["w·r"].to_numpy())
    np.testing.assert_allclose(first["fixed_weight"].to_numpy(), second["fixed_weight"].to_numpy(), atol=1e-9)
    assert first["rank"].to_list() == list(range(1, 9))
    assert not np.allclose(first["pareto_rank"].to_numpy(), second["pareto_rank"].to_numpy())
    assert_advantages_match_package(defs["advantages"], defs["rewards"], 8)


def test_playground_stage1_matches_the_scalarizer(playground):
    _, defs = playground.run()
    history = defs["stage1"]
    scalarizer = HVScalarizer(gamma=0.9)
    updates = [scalarizer.update(v, step=i) for i, v in enumerate(history.select("task", "tool_efficiency").rows(), 1)]
    np.testing.assert_allclose(history["hv_gain"].to_numpy(), [u.hv_gain for u in updates])
    np.testing.assert_allclose(history["ema_gain"].to_numpy(), [u.ema_gain for u in updates])
    np.testing.assert_allclose(history["meta_reward"].to_numpy(), [u.meta_reward for u in updates])


# --- run_inspector -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inspector():
    return load_app("run_inspector")


def inspector_defs(**overrides):
    return {"cli_run": str(PARETOPO_RUN), "runs_root": FIXTURE_RUNS, **overrides}


def test_inspector_shows_the_logged_group_with_package_ranks_and_advantages(inspector):
    _, defs = inspector.run(defs=inspector_defs())
    run = read_run(PARETOPO_RUN)
    assert defs["run"].steps.height == run.steps.height == 6
    assert defs["switch"] == 4  # stage1_steps=3 in the fixture
    last = run.groups.filter(pl.col("step") == 6).sort("group", "completion")
    assert defs["step_picker"].value == 6  # follows the newest step by default

    method = ParetoPOConfig.from_dict(run.config["method"])
    objectives = last.select("obj_task", "obj_tool_efficiency").to_numpy()
    meta = run.steps.filter(pl.col("step") == 6)["weights/meta_reward"][0]
    expected = compute_advantages("pareto_rank", objectives, 4, **method.estimator_options(2, meta_reward=meta))
    shown = defs["group_rows"].sort("completion")
    (group,) = shown["group"].unique().to_list()
    rows = slice(4 * group, 4 * group + 4)
    np.testing.assert_array_equal(shown["rank"].to_numpy(), np.asarray(expected.ranks)[rows])
    np.testing.assert_allclose(shown["advantage"].to_numpy(), np.asarray(expected.advantages)[rows], atol=1e-9)
    # the default group is the one with the most distinct objective vectors
    distinct = [len(np.unique(objectives[4 * g:4 * g + 4], axis=0)) for g in range(3)]
    assert distinct[group] == max(distinct)
    assert defs["consistent"] is True
    assert defs["step_estimator"] == "pareto_rank" and defs["step_stage"] == 2


def test_inspector_stage1_step_and_transcripts_with_masked_tool_output(inspector):
    step_picker = mo.ui.slider(steps=[1, 2, 3, 4, 5, 6], value=2)
    _, defs = inspector.run(defs=inspector_defs(step_picker=step_picker))
    assert defs["step_estimator"] == "hv_scalarized" and defs["consistent"] is True
    shown = defs["shown_completions"]
    assert shown["step"].unique().to_list() == [2] and shown.height == 4
    # the fixture's first completions of each step are kept with their segments
    assert shown["segments"].null_count() == 0
    # somewhere in the fixture a calculator result was masked out of the loss
    samples = read_run(PARETOPO_RUN).samples
    assert samples["segments"].str.contains('"tool_output": true').any()


def test_inspector_without_a_run_stops_with_a_hint(inspector, tmp_path):
    outputs, defs = inspector.run(defs={"cli_run": None, "runs_root": tmp_path})
    assert "run" not in defs  # the cells after the picker stopped
    assert any("No run folder yet" in output.text for output in outputs if output is not None)


# --- frontier_compare --------------------------------------------------------------------------


def test_frontier_compare_shows_the_runs_frontiers_and_a_checkpoints_samples():
    _, defs = load_app("frontier_compare").run(defs={"runs_root": FIXTURE_RUNS})
    selected = sorted(defs["run_picker"].value)
    assert [Path(r).name for r in selected] == ["paretopo", "torl_grpo"]
    expected_points = checkpoint_points(selected)
    assert defs["points"].equals(expected_points)
    summary, dominance = compare_runs(selected, split="validation")
    assert defs["summary"].equals(summary) and defs["dominance"].equals(dominance)
    assert defs["summary"]["checkpoints"].to_list() == [3, 3]
    # before any click: the first run's final test point and its evaluated completions
    chosen = defs["chosen_point"]
    assert (Path(chosen["run"]).name, chosen["split"], chosen["final"]) == ("paretopo", "test", True)
    eval_rows = read_run(chosen["run"]).eval_rows
    expected_rows = eval_rows.filter((pl.col("step") == chosen["step"]) & (pl.col("split") == "test"))
    assert defs["chosen_rows"].equals(expected_rows) and expected_rows.height == 16  # the fixture's test questions


# --- live_rollouts -----------------------------------------------------------------------------


def test_live_rollouts_scores_a_sampled_group_like_training():
    _, defs = load_app("live_rollouts").run()  # as a script it samples once with the defaults
    rollouts, example = defs["rollouts"], defs["example"]
    assert len(rollouts) == 8 and example.id == "arithmetic-test-00000"
    task = get_task("arithmetic")
    correct = np.array([float(task.is_correct(r.text, example)) for r in rollouts])
    calls = np.array([r.num_tool_calls for r in rollouts])
    tracker = OptimalCallTracker()
    tracker.update([example.id] * 8, calls, correct)
    expected = objective_matrix(correct, calls, tracker.lookup([example.id] * 8),
                                **scoring_options(defs["METHOD"]))  # the app's config: ParetoPO's defaults
    np.testing.assert_allclose(defs["objectives"], expected)
    table = defs["rollout_table"]
    assert table["rank"].to_list() == np.asarray(pareto_ranks(expected)).tolist()
    for name in ADVANTAGES:
        np.testing.assert_allclose(table[name].to_numpy(), ADVANTAGES[name](expected, 8, **preset_options(name)),
                                   err_msg=name)
    assert table["tool_calls"].to_list() == calls.tolist()


# --- every app as a script ---------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_NAMES)
def test_app_runs_as_a_script(name):
    arguments = {"run_inspector": ["--run", str(PARETOPO_RUN)], "frontier_compare": ["--runs-dir", str(FIXTURE_RUNS)]}
    result = subprocess.run([sys.executable, str(APPS / f"{name}.py"), *arguments.get(name, [])], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# --- after `make demo`: runs at any depth, the demo's app commands, every input answered -------------


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> Path:
    """runs/ as ``paretopo demo`` leaves it: runs/demo-<ts>/<method>/ (the fixture runs), plus a final/ policy."""
    import shutil

    runs = tmp_path_factory.mktemp("runs")
    demo = runs / "demo-20261130-120000"
    for method in ("paretopo", "torl_grpo"):
        shutil.copytree(FIXTURE_RUNS / method, demo / method)
    shutil.copytree(ROOT / "data" / "tiny_policy", demo / "paretopo" / "final")
    (runs / "nested" / "deeper" / "empty-dir").mkdir(parents=True)  # folders without runs are skipped
    return runs


def test_list_runs_finds_runs_at_any_depth_and_not_inside_runs(demo_runs, tmp_path):
    from paretopo.evaluation.runlog import RunLog, is_run_folder, list_runs

    RunLog(demo_runs / "nested" / "deeper" / "solo").write_config({"task": "arithmetic"})
    found = [p.relative_to(demo_runs).as_posix() for p in list_runs(demo_runs)]
    assert found == ["demo-20261130-120000/paretopo", "demo-20261130-120000/torl_grpo", "nested/deeper/solo"]
    assert [p.name for p in list_runs(demo_runs, evaluated=True)] == ["paretopo", "torl_grpo"]
    assert list_runs(demo_runs / "demo-20261130-120000" / "paretopo") == [demo_runs / "demo-20261130-120000" / "paretopo"]
    assert list_runs(tmp_path / "missing") == [] and list_runs(tmp_path) == []
    assert is_run_folder(PARETOPO_RUN) and not is_run_folder(demo_runs)


def test_app_commands_name_the_four_apps_on_the_demo_folder(demo_runs):
    import shlex

    from paretopo.commands.launch import app_commands

    demo = demo_runs / "demo-20261130-120000"
    commands = app_commands(demo, apps_dir="apps")
    assert [shlex.split(c)[2] for c in commands] == [f"apps/{name}.py" for name in APP_NAMES]
    assert commands[0] == "marimo run apps/pareto_playground.py"
    for command in commands[1:]:
        assert shlex.split(command)[3:] == ["--", "--runs-dir", str(demo)]
    # every app file named exists, and from another folder the commands use absolute paths
    assert all((ROOT / shlex.split(c)[2]).exists() for c in commands)


def test_the_cli_compare_takes_a_folder_of_runs(demo_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    from paretopo.commands.cli import main

    assert main(["compare", str(demo_runs)]) in (0, None)
    out = capsys.readouterr().out
    assert "paretopo" in out and "torl_grpo" in out


def test_apps_find_the_demos_runs_one_and_two_levels_down(demo_runs):
    demo = demo_runs / "demo-20261130-120000"
    for root in (demo, demo_runs):  # the demo's own folder (its hint), and runs/ (the README's command)
        _, defs = load_app("frontier_compare").run(defs={"runs_root": root})
        assert sorted(Path(r).name for r in defs["run_picker"].value) == ["paretopo", "torl_grpo"]
        _, defs = load_app("run_inspector").run(defs={"cli_run": None, "runs_root": root})
        assert defs["run"].path == demo / "paretopo"
        assert {str(demo / "paretopo"), str(demo / "torl_grpo")} <= set(map(str, defs["run_options"]))


def test_inspector_opens_on_a_group_with_text_and_shows_its_question(inspector):
    _, defs = inspector.run(defs=inspector_defs())
    shown = defs["shown_completions"]
    assert shown["segments"].null_count() == 0  # the default group's text was logged
    example = defs["group_example"]
    assert example is not None and example.id == shown["prompt_id"][0]
    assert "gold answer" in defs["group_header"].text and example.question in defs["group_header"].text


def test_inspector_hides_stage1_panels_and_labels_for_a_single_stage_run(inspector):
    outputs, defs = inspector.run(defs=inspector_defs(cli_run=str(BASELINE_RUN)))
    assert defs["method"].method == "torl_grpo" and defs["step_estimator"] == "torl_grpo"
    text = "".join(o.text for o in outputs if o is not None)
    assert "stage-1 weighting" not in text and "hypervolume of the stage-1 archive" not in text
    assert "(stage 1)" not in text and "torl_grpo throughout so far" in text
    outputs, _ = inspector.run(defs=inspector_defs())
    assert "stage-1 weighting" in "".join(o.text for o in outputs if o is not None)  # ParetoPO keeps them


def test_inspector_on_a_missing_folder_says_so_and_does_not_poll(inspector, tmp_path):
    outputs, defs = inspector.run(defs={"cli_run": str(tmp_path / "no-such-run"), "runs_root": tmp_path})
    assert "run" not in defs and defs["run_writing"] is False
    assert any("There is no folder" in o.text for o in outputs if o is not None)
    outputs, defs = inspector.run(defs={"cli_run": str(tmp_path), "runs_root": tmp_path})  # a folder, not a run
    assert any("not a run log" in o.text for o in outputs if o is not None)


def test_arithmetic_is_correct_with_no_numeric_gold_answer_is_false():
    from paretopo.tasks import Example

    task = get_task("arithmetic")
    for answer in ("", "Error: division by zero", "eight"):
        assert task.is_correct("\\boxed{8}", Example(id="typed", question="How many legs?", answer=answer)) is False
    assert task.is_correct("\\boxed{1,080}", Example(id="q", question="?", answer="1080")) is True


def test_live_rollouts_scores_a_question_the_task_cannot_score_as_all_wrong():
    from paretopo.tasks import Example

    app = load_app("live_rollouts")
    outputs, defs = app.run(defs={"example": Example(id="typed", question="How many legs does a spider have?",
                                                     answer="")})
    assert len(defs["rollouts"]) == 8 and defs["objectives"][:, 0].tolist() == [0.0] * 8
    assert defs["expected_answer"]("How many legs does a spider have?") == ""
    assert defs["expected_answer"]("What is 1/0?") == ""  # the calculator's error is not an answer
    assert defs["expected_answer"]("What is 417*38?") == "15846"


def test_live_rollouts_answers_a_wrong_model_path_at_once(tmp_path):
    import time

    app = load_app("live_rollouts")
    for typed, sentence in ((str(tmp_path / "no-such-model"), "There is no folder"),
                            (str(tmp_path), "holds neither"), ("not a hub id!", "There is no folder")):
        started = time.perf_counter()
        outputs, defs = app.run(defs={"model_choice": mo.ui.dropdown(options=["x"], value="x"),
                                      "model_typed": mo.ui.text(value=typed)})
        assert time.perf_counter() - started < 30
        assert "rollouts" not in defs
        assert any(sentence in o.text for o in outputs if o is not None), typed


def test_live_rollouts_lists_the_demos_policies(demo_runs):
    _, defs = load_app("live_rollouts").run(defs={"cli_model": None, "runs_root": demo_runs})
    assert any(key.endswith("demo-20261130-120000/paretopo/final") for key in defs["model_choice"].options)


def test_playground_table_puts_rank_and_advantage_first_and_presets_read_short():
    from paretopo.evaluation import display, replay

    _, defs = load_app("pareto_playground").run(defs={"source": {"kind": "same_sums", "weights": (0.6, 0.4)}})
    shown = display.display_table(defs["advantage_table"])
    assert shown.columns[:4] == ["group", "completion", "rank", "pareto_rank"]
    values = defs["rewards"]
    np.testing.assert_allclose(values, values.round(4), atol=1e-12)  # 0.8214285714 no more
    for weights in [(0.6, 0.4), (0.35, 0.65), (1.0, 0.05)]:
        for group in (replay.equal_sum_group(weights, 8), replay.same_sums_two_groups(weights, 8)):
            np.testing.assert_allclose(group, group.round(4), atol=1e-12)
        sums = replay.equal_sum_group(weights, 16) @ np.array(weights)
        np.testing.assert_allclose(sums, sums[0], atol=1e-12)


def test_playground_meta_reward_axis_without_dynamic_weighting_is_centred():
    from paretopo.evaluation import plots, replay

    history = replay.stage1_history([[0.3, 0.6], [0.4, 0.5]], dynamic=False)
    spec = plots.metric_lines(history, ["meta_reward"], title="m").to_dict()
    assert spec["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0.5, 1.5]
