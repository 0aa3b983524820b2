"""M = 3 objectives end to end: train from the CLI, log, evaluate, compare (frontier HV over all three)."""

import json

import numpy as np
import polars as pl
import pytest

from paretopo.core.advantages import compute_advantages
from paretopo.core.config import ParetoPOConfig

OBJECTIVES = ("task", "tool_efficiency", "brevity")
COLUMNS = [f"obj_{name}" for name in OBJECTIVES]


@pytest.fixture(scope="module")
def three_objective_run(tmp_path_factory):
    from paretopo.commands.cli import main

    run_dir = tmp_path_factory.mktemp("m3") / "run"
    assert main(["train", "--run-dir", str(run_dir), "--objectives", ",".join(OBJECTIVES), "--weights", "0.5,0.3,0.2",
                 "--steps", "2", "--prompts", "2", "--generations", "4", "--max-completion-length", "24",
                 "--save-steps", "1", "--validation-examples", "3", "--test-examples", "3", "--train-examples", "16",
                 "--set", "stage1_steps=1"]) == 0
    return run_dir


def test_the_run_log_carries_one_column_per_objective(three_objective_run):
    from paretopo.evaluation.runlog import read_run

    run = read_run(three_objective_run)
    method = json.loads((three_objective_run / "config.json").read_text())["method"]
    assert tuple(method["objectives"]) == OBJECTIVES and method["brevity_length"] == 24
    for table in (run.groups, run.evals, run.eval_rows):
        assert set(COLUMNS) <= set(table.columns)
    assert {"objectives/brevity", "weights/brevity"} <= set(run.steps.columns)
    # brevity is 1 - length / 24 of the evaluated completions
    rows = run.eval_rows
    np.testing.assert_allclose(rows["obj_brevity"], np.clip(1 - rows["completion_tokens"] / 24, 0, 1))
    # the logged stage-2 advantages are pareto_rank's on the three logged columns
    config = ParetoPOConfig.from_dict(method)
    last = run.groups.filter(pl.col("step") == 2).sort("group", "completion")
    expected = compute_advantages("pareto_rank", last.select(COLUMNS).to_numpy(), 4, **config.estimator_options(2))
    np.testing.assert_allclose(last["advantage"].to_numpy(), expected.advantages, atol=1e-6)
    np.testing.assert_array_equal(last["rank"].to_numpy(), expected.ranks)


def test_compare_uses_every_objective(three_objective_run):
    from paretopo.evaluation.evaluate import compare_runs, frontier, frontier_hypervolume

    summary, dominance = compare_runs([str(three_objective_run)])
    row = summary.to_dicts()[0]
    assert {f"test_{c}" for c in COLUMNS} <= set(row)
    from paretopo.evaluation.evaluate import checkpoint_points

    points = checkpoint_points([str(three_objective_run)]).filter(pl.col("split") == "validation")
    vectors = points.select(COLUMNS).to_numpy()
    assert row["frontier_hv"] == pytest.approx(frontier_hypervolume(vectors[frontier(vectors)], ref=(0, 0, 0)))
    assert dominance.height == 1


def test_unknown_objective_is_refused_before_training(tmp_path, capsys):
    from paretopo.commands.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "x"), "--objectives", "task,colour", "--weights", "1,1"]) == 2
    assert "cannot be scored" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_frontier_charts_draw_every_pairwise_projection(three_objective_run):
    from paretopo.evaluation import plots
    from paretopo.evaluation.evaluate import checkpoint_points

    points = checkpoint_points([str(three_objective_run)])
    spec = plots.frontier_charts(points).to_dict()
    assert len(spec["concat"]) == 3 and spec["columns"] == 2  # (task, tool), (task, brevity), (tool, brevity)
    assert "concat" not in plots.frontier_charts(points.drop("obj_brevity")).to_dict()
