"""Adding an estimator is one function and one registration: options, apps, showcase and the CLI follow."""

import json

import numpy as np
import polars as pl
import pytest

from paretopo.commands import showcase
from paretopo.core.advantages import (
    ADVANTAGES,
    ESTIMATORS,
    compute_advantages,
    get_estimator,
    register,
)
from paretopo.core.config import ParetoPOConfig
from paretopo.evaluation import plots, replay


def _task_sign(rewards, group_size, *, eps=1e-4, weights=None):
    """+1 / -1 / 0 for a task score above / below / at its group's mean (scaled by w_task)."""
    array = np.asarray(rewards, dtype=np.float64)
    task = array[:, 0].reshape(-1, group_size)
    return (np.sign(task - task.mean(axis=1, keepdims=True)) * weights[0] / (1 + eps)).reshape(-1)


@pytest.fixture
def task_sign():
    register("task_sign", reads={"eps": "advantage_eps", "weights": "weights"})(_task_sign)
    yield "task_sign"
    ESTIMATORS.pop("task_sign")


def test_a_registered_estimator_gets_the_config_fields_it_declared(task_sign):
    config = ParetoPOConfig(stage1_steps=1, stage2_estimator=task_sign, advantage_eps=0.01, weights=(0.7, 0.3))
    assert config.estimator_options(2) == {"eps": 0.01, "weights": (0.7, 0.3)}
    assert config.estimator_options(1, meta_reward=1.5)["meta_reward"] == 1.5  # hv_scalarized asks for it
    rewards = np.array([[1.0, 0.5], [0.0, 1.0], [1.0, 1.0], [1.0, 0.2]])
    assert compute_advantages(task_sign, rewards, 2, **config.estimator_options(2)).advantages.tolist() == \
        pytest.approx([0.7 / 1.01, -0.7 / 1.01, 0.0, 0.0])
    # every place that loops over the registry shows it
    table = replay.estimator_advantages(rewards, 2, weights=(0.7, 0.3))
    assert task_sign in set(table["estimator"].to_list()) and table.height == 4 * len(ADVANTAGES)
    plots.advantage_bars(table)
    assert showcase.advantage_table(rewards, config, "t").row_count == 3 + len(ADVANTAGES)


def test_the_registry_is_one_table_looked_up_by_one_getter(task_sign):
    spec = get_estimator(task_sign)
    assert ADVANTAGES is ESTIMATORS and ESTIMATORS[task_sign] is spec  # one dict, under its old name too
    assert spec.function is _task_sign and spec.reads == {"eps": "advantage_eps", "weights": "weights"}
    rewards = np.array([[1.0, 0.5], [0.0, 1.0]])
    assert spec(rewards, 2, weights=(1.0, 0.0)).tolist() == _task_sign(rewards, 2, weights=(1.0, 0.0)).tolist()
    with pytest.raises(ValueError, match="unknown advantage estimator 'nope'.*task_sign"):
        get_estimator("nope")


def test_option_choices_are_declared_once_by_the_code_that_reads_them():
    from typing import get_args

    from paretopo.commands.cli import build_parser
    from paretopo.core import advantages, objectives, scalarize
    from paretopo.core.config import OPTION_CHOICES

    declared = {"stage2_center": advantages.Stage2Center, "scale_rewards": advantages.ZScoreScale,
                "stage1_adv_norm": advantages.Stage1Normalization,
                "tool_efficiency_form": objectives.ToolEfficiencyForm, "unknown_nstar": objectives.UnknownNstar,
                "hv_reference": scalarize.Reference, "initial_meta_reward": scalarize.InitialMetaReward}
    for name, kind in declared.items():
        assert OPTION_CHOICES[name] == get_args(kind), name
        with pytest.raises(ValueError, match=f"{name}='bogus' is not one of"):
            ParetoPOConfig(**{name: "bogus"})
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    shown = {action.dest.removeprefix("method__"): action.choices for action in train._actions if action.choices}
    for name, choices in OPTION_CHOICES.items():
        assert tuple(shown[name]) == choices, name


def test_registering_needs_known_inputs_and_a_new_name():
    with pytest.raises(ValueError, match="unknown run-time inputs"):
        register("x", inputs=("colour",))
    with pytest.raises(RuntimeError, match="registered twice"):
        register("pareto_rank")(_task_sign)
    with pytest.raises(ValueError, match="reads config fields"):
        register("reads_nothing_real", reads={"eps": "no_such_field"})(_task_sign)
        try:
            ParetoPOConfig(stage1_estimator="reads_nothing_real", stage2_estimator=None)
        finally:
            ESTIMATORS.pop("reads_nothing_real")


def test_a_registered_estimator_trains_through_the_cli(task_sign, tmp_path):
    from paretopo.commands.cli import main
    from paretopo.evaluation.runlog import read_run

    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--steps", "2", "--prompts", "2", "--generations", "4",
                 "--max-completion-length", "24", "--save-steps", "2", "--validation-examples", "2",
                 "--test-examples", "2", "--train-examples", "16",
                 "--set", "stage1_steps=1", f"stage2_estimator={task_sign}"]) == 0
    run = read_run(run_dir)
    assert json.loads((run_dir / "config.json").read_text())["method"]["stage2_estimator"] == task_sign
    assert run.steps.sort("step")["stage"].to_list() == [1, 2]
    last = run.groups.filter(pl.col("step") == 2).sort("group", "completion")
    objectives = last.select("obj_task", "obj_tool_efficiency").to_numpy()
    np.testing.assert_allclose(last["advantage"].to_numpy(), _task_sign(objectives, 4, eps=1e-4, weights=(0.6, 0.4)),
                               atol=1e-6)
