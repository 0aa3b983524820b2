"""The marimo apps run end to end on the fixture run logs, and show the package's numbers.

Each app's graph runs in this process with ``app.run(defs=...)`` (marimo's documented way to run
an app programmatically; ``defs`` replaces the cells that read command-line arguments, so the apps
read ``tests/fixtures/runs/``). UI elements keep their default values, so each test checks what a
user sees before touching a control. The last test runs ``python apps/<name>.py`` (the same
``app.run()`` in a fresh process, ~6 s each) and checks it exits 0.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import marimo as mo
import numpy as np
import polars as pl
import pytest

from paretopo.advantages import ADVANTAGES, compute_advantages
from paretopo.config import ParetoPOConfig
from paretopo.evaluate import checkpoint_points, compare_runs
from paretopo.objectives import OptimalCallTracker, objective_matrix
from paretopo.pareto import pareto_ranks
from paretopo.runlog import read_run
from paretopo.scalarize import HVScalarizer
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
    """Keyword options the method preset of estimator ``name`` passes it (stage 2 for pareto_rank)."""
    if name == "pareto_rank":
        return ParetoPOConfig(weights=weights, beta=beta).estimator_options(2)
    return ParetoPOConfig.from_preset(name, weights=weights, beta=beta).estimator_options(1)


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


def test_playground_equal_sums_preset_is_one_front_with_scalar_advantages_near_zero(playground):
    _, defs = playground.run(defs={"source": {"kind": "equal_sums", "weights": (0.6, 0.4)}})
    table = defs["advantage_table"]
    np.testing.assert_allclose(table["w·r"].to_numpy(), table["w·r"][0])
    assert table["rank"].to_list() == [1] * 8
    for scalar in ("fixed_weight", "hv_scalarized", "mo_grpo"):
        assert np.abs(table[scalar].to_numpy()).max() < 1e-3, scalar
    assert table["pareto_rank"].to_list() == [1.0] * 8
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
    assert defs["chosen_rows"].equals(expected_rows) and expected_rows.height == 6


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
    expected = objective_matrix(correct, calls, tracker.lookup([example.id] * 8), alpha=0.5, max_calls=2)
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
