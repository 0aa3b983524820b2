"""Sampled behaviour beside greedy: ``paretopo eval --samples k`` and a run's ``test_samples``."""

import json

import polars as pl
import pytest
import torch
from trainer_fixtures import fast_settings, tiny_random_policy

from paretopo.evaluation.evaluate import (
    EvalSettings,
    accuracy_and_calls_by,
    evaluate_policy,
    evaluate_saved_policy,
)


def test_accuracy_and_calls_by_tier_by_hand():
    rows = pl.DataFrame({"correct": [True, False, True, True, False], "tool_calls": [0, 2, 1, 1, 0],
                         "meta_tier": [1, 1, 2, 2, 2]})
    table = accuracy_and_calls_by(rows, "tier", "sampled_").to_dicts()
    assert table == [{"tier": 1, "sampled_accuracy": 0.5, "sampled_mean_tool_calls": 1.0},
                     {"tier": 2, "sampled_accuracy": pytest.approx(2 / 3), "sampled_mean_tool_calls": pytest.approx(2 / 3)}]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return tiny_random_policy(tmp_path_factory.mktemp("policy"))


def test_eval_with_samples_reports_greedy_beside_the_sampled_numbers(policy, tmp_path):
    from paretopo.commands.cli import main

    torch.set_num_threads(1)
    settings = EvalSettings(policy=policy, task="lookup", limit=4, samples=3, max_new_tokens=12, by="tier")
    summary, result = evaluate_saved_policy(settings)
    assert result.n_completions == 12 and result.rows["sample"].to_list() == [0, 1, 2] * 4
    from paretopo.agent.models import load_policy
    from paretopo.tasks import get_task

    model, tokenizer = load_policy(policy, lora=False)
    task = get_task("lookup")
    greedy = evaluate_policy(model, tokenizer, task, task.load("test")[:4], max_new_tokens=12, tools_in_prompt=False,
                             progress=False)
    assert (summary["greedy_accuracy"], summary["greedy_mean_tool_calls"]) == (greedy.accuracy, greedy.mean_tool_calls)
    by_tier = {row["tier"]: row for row in summary["breakdown"]}
    expected = accuracy_and_calls_by(greedy.rows, "tier", "greedy_").to_dicts()
    assert [{k: by_tier[row["tier"]][k] for k in row} for row in expected] == expected
    assert sum(row["completions"] for row in summary["breakdown"]) == 12  # the sampled rows, 3 per question

    out = tmp_path / "eval.json"
    assert main(["eval", policy, "--task", "lookup", "--limit", "2", "--samples", "2", "--max-new-tokens", "8",
                 "--by", "tier", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert {"greedy_accuracy", "greedy_mean_tool_calls"} <= set(written)
    assert {"greedy_accuracy", "greedy_mean_tool_calls"} <= set(written["breakdown"][0])


def test_greedy_eval_has_no_greedy_columns(policy):
    summary, _ = evaluate_saved_policy(EvalSettings(policy=policy, task="lookup", limit=2, max_new_tokens=8, by="tier"))
    assert "greedy_accuracy" not in summary and "greedy_accuracy" not in summary["breakdown"][0]


def test_a_run_with_test_samples_reports_the_sampled_policy(policy, tmp_path):
    from paretopo.evaluation.runlog import read_run
    from paretopo.training.train import train_run

    torch.set_num_threads(1)
    result = train_run("torl_grpo", fast_settings(tmp_path / "run", policy, max_steps=1, checkpoint_eval=False,
                                                  test_samples=3))
    test = result.test
    assert test["sampled_per_question"] == 3
    assert 0.0 <= test["sampled_accuracy"] <= 1.0 and test["sampled_mean_tool_calls"] >= 0.0
    assert {row["tier"] for row in result.sampled_by_tier} <= {1, 2, 3}
    final = read_run(tmp_path / "run").evals.filter(pl.col("final"))
    assert final["sampled_accuracy"].to_list() == [test["sampled_accuracy"]]
    assert test["n_completions"] == 4  # the greedy evaluation is unchanged: one completion per question
