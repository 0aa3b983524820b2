"""The run plan: every value of a run resolved once, before a model is loaded, and conflicts refused."""

from __future__ import annotations

import pytest

from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import scoring_options
from paretopo.tasks import get_task
from paretopo.training.plan import LORA_LR, TINY_POLICY_LR, PlanConflict, RunSettings, plan_run


def _settings(tmp_path, **values):
    return RunSettings(run_dir=str(tmp_path / "run"), validation_examples=3, test_examples=4, train_examples=5, prompts_per_step=4,
                       **values)


def test_the_plan_holds_every_resolved_value(tmp_path):
    plan = plan_run(_settings(tmp_path, max_completion_length=64), "otc_grpo", overrides={"alpha": 0.7})
    assert plan.task.name == "arithmetic" and plan.task.max_tool_calls == 2
    # the config, built once: preset + override + the task's budget + brevity's length
    assert (plan.config.method, plan.config.tool_efficiency_form, plan.config.alpha) == ("otc_grpo", "otc", 0.7)
    assert plan.config.max_tool_calls == plan.settings.max_tool_calls == 2 and plan.config.brevity_length == 64
    assert plan.scoring == scoring_options(plan.config) and plan.scoring["max_calls"] == 2
    # the shipped tiny policy: all weights, its learning rate, no tools block
    assert plan.model_path.endswith("tiny_policy") and not plan.lora and not plan.tools_in_prompt
    assert plan.learning_rate == TINY_POLICY_LR
    assert [len(plan.examples(split)) for split in ("train", "validation", "test")] == [5, 3, 4]
    assert plan.resume_from is None and plan.record()["method"] == plan.config.to_dict()
    with pytest.raises(AttributeError):
        plan.config = ParetoPOConfig()  # frozen


def test_a_named_model_gets_lora_its_learning_rate_and_the_tools_block(tmp_path):
    plan = plan_run(_settings(tmp_path, model="org/some-model"), "paretopo")
    assert plan.lora and plan.learning_rate == LORA_LR and plan.tools_in_prompt
    assert plan.task.instructions  # a chat model meets the arithmetic task cold


@pytest.mark.parametrize(("settings_budget", "config", "overrides"), [
    (None, "paretopo", {"max_tool_calls": 5}),  # --set max_tool_calls=5 on the 2-call arithmetic task
    (3, "paretopo", {"max_tool_calls": 5}),  # --max-tool-calls 3 --set max_tool_calls=5
    (None, ParetoPOConfig(max_tool_calls=5), None),  # a config built with another budget
])
def test_a_tool_budget_that_contradicts_the_task_is_refused_not_dropped(tmp_path, settings_budget, config,
                                                                        overrides):
    from paretopo.training.train import train_run

    settings = _settings(tmp_path, max_tool_calls=settings_budget)
    with pytest.raises(PlanConflict, match=r"max_tool_calls=5 \(method config\) conflicts with the arithmetic "
                                           r"task's tool budget [23]; set the budget with --max-tool-calls 5"):
        plan_run(settings, config, overrides=overrides)
    with pytest.raises(ValueError, match="conflicts"):  # the Python API refuses it before loading a model
        train_run(config, settings, method_overrides=overrides)
    assert not (tmp_path / "run").exists()


def test_a_budget_given_once_or_agreeing_reaches_the_task_and_the_method(tmp_path):
    for settings_budget, overrides in ((5, None), (5, {"max_tool_calls": 5}), (None, {"max_tool_calls": 2})):
        plan = plan_run(_settings(tmp_path, max_tool_calls=settings_budget), "paretopo", overrides=overrides)
        expected = settings_budget or 2
        assert plan.task.max_tool_calls == plan.config.max_tool_calls == plan.scoring["max_calls"] == expected
    # a default ParetoPOConfig (its budget field untouched) runs any task's budget
    assert plan_run(_settings(tmp_path, task="hotpotqa", validation_split="dev_500", test_split="dev_500",
                              train_split="dev_500"), ParetoPOConfig()).config.max_tool_calls == 4


def test_a_task_instance_and_a_different_settings_budget_are_refused(tmp_path):
    with pytest.raises(PlanConflict, match="max_tool_calls=4 conflicts with the tool budget 2 of the given"):
        plan_run(_settings(tmp_path, task=get_task("arithmetic"), max_tool_calls=4))
    assert plan_run(_settings(tmp_path, task=get_task("arithmetic"), max_tool_calls=2)).config.max_tool_calls == 2


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "paretopo_state.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds a run"):
        plan_run(_settings(tmp_path))


def test_each_tiny_policy_trains_at_the_rate_chosen_for_it_on_validation(tmp_path):
    """The rate table is the one written by scripts/choose_lr.py (results/lr_choice/<task>.md)."""
    import re
    from pathlib import Path

    from paretopo.agent import TINY_POLICY_FOLDERS, TINY_POLICY_LEARNING_RATES

    assert set(TINY_POLICY_LEARNING_RATES) == set(TINY_POLICY_FOLDERS)
    root = Path(__file__).resolve().parents[1]
    for task, rate in TINY_POLICY_LEARNING_RATES.items():
        table = (root / "results" / "lr_choice" / f"{task}.md").read_text()
        chosen = re.search(r"Chosen: learning rate ([0-9.e-]+), kl_beta ([0-9.e-]+)", table)
        assert chosen and float(chosen[1]) == rate and float(chosen[2]) == 0.0, task
        plan = plan_run(RunSettings(run_dir=str(tmp_path / task), task=task), "torl_grpo")
        assert plan.learning_rate == rate
    given = plan_run(RunSettings(run_dir=str(tmp_path / "given"), task="lookup", learning_rate=1e-3), "torl_grpo")
    assert given.learning_rate == 1e-3
