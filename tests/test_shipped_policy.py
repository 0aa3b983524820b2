"""The warm-started tiny policy shipped in data/tiny_policy: its record, and the conflict it was built for.

A policy file overwritten by accident (a notebook or script saving into data/) would silently
change the demo; the checksum recorded by ``paretopo.training.warmstart`` catches it. The slow test
re-measures what the policy is for (issue: "a tiny policy that must choose"): direct answers
right on easy sums, a gamble on sums with a carry, hopeless on products; calculator answers
right everywhere; and every tier still sampling 0, 1 and >= 2 calls.
"""

import json

import pytest
import torch

from paretopo.tasks.base import data_dir
from paretopo.training.warmstart import weights_sha256

TIER_TARGETS = {  # tier -> (lowest, highest) share of direct answers that are right
    1: (0.95, 1.0),
    2: (0.3, 0.8),
    3: (0.0, 0.1),
}
MIN_TOOL_ACCURACY = 0.95
MIN_BEHAVIOUR_SHARE = 0.10


def _record() -> dict:
    return json.loads((data_dir() / "tiny_policy" / "warmstart.json").read_text())


def _check_targets(table: list[dict]) -> list[str]:
    problems = []
    for row in table:
        low, high = TIER_TARGETS[row["tier"]]
        if not low <= row["direct_accuracy"] <= high:
            problems.append(f"tier {row['tier']}: direct accuracy {row['direct_accuracy']:.3f} not in [{low}, {high}]")
        if row["tool_accuracy"] < MIN_TOOL_ACCURACY:
            problems.append(f"tier {row['tier']}: calculator accuracy {row['tool_accuracy']:.3f} < {MIN_TOOL_ACCURACY}")
        for share in ("calls_0", "calls_1", "calls_2plus"):
            if row[share] < MIN_BEHAVIOUR_SHARE:
                problems.append(f"tier {row['tier']}: {share} share {row[share]:.3f} < {MIN_BEHAVIOUR_SHARE}")
    return problems


def test_shipped_policy_matches_its_warm_start_record():
    folder = data_dir() / "tiny_policy"
    record = _record()
    assert weights_sha256(folder) == record["model_sha256"], (
        "data/tiny_policy/model.safetensors changed without re-running `paretopo warmstart`; "
        "restore it with `git checkout data/tiny_policy` or regenerate it"
    )
    assert sorted(row["tier"] for row in record["test_by_tier"]) == [1, 2, 3]
    assert _check_targets(record["test_by_tier"]) == []


@pytest.mark.slow
def test_shipped_policy_meets_its_tier_targets_when_re_measured():
    """What `paretopo eval data/tiny_policy --split test --by tier --samples 4` measures."""
    from paretopo.agent.models import load_policy
    from paretopo.evaluation.evaluate import behaviour_table, evaluate_policy
    from paretopo.tasks import get_task

    torch.set_num_threads(1)
    model, tokenizer = load_policy(data_dir() / "tiny_policy", lora=False)
    task = get_task("arithmetic")
    result = evaluate_policy(model, tokenizer, task, task.load("test"), num_samples=4, greedy=False,
                             max_new_tokens=160, tools_in_prompt=False, progress=False, seed=0)
    assert _check_targets(behaviour_table(result.rows, "tier").to_dicts()) == []


def test_the_docs_give_the_shipped_policys_measured_parameter_count():
    """README, data/README.md, docs/results.md and notebook 01 once said ~170k and ~140k for the
    policy that loads with 202,624 parameters: each now gives the count measured here."""
    from pathlib import Path

    from paretopo.agent.models import load_policy

    torch.set_num_threads(1)
    model, _ = load_policy(str(data_dir() / "tiny_policy"), lora=False)
    count = f"{sum(p.numel() for p in model.parameters()):,}"
    root = Path(__file__).resolve().parents[1]
    for doc in ("README.md", "data/README.md", "docs/results.md", "notebooks/01_quickstart_cpu.py",
                "notebooks/01_quickstart_cpu.ipynb"):
        text = (root / doc).read_text()
        assert count in text, f"{doc} does not give the measured {count} parameters"
        assert "~170k" not in text and "~140k" not in text, doc


# --- the lookup testbed's policy, data/tiny_policy_lookup ----------------------------------------------------

LOOKUP_TARGETS = {  # issue 22: tier -> (lowest, highest) share of direct answers that are right
    1: (0.95, 1.0),  # known entities: memorised
    2: (0.0, 0.1),  # unknown entities: a guess
}
LOOKUP_MIN_GREEDY_CALLS = {2: 1.2}  # greedy calls redundantly on unknown entities: RL has calls to save


def _lookup_record() -> dict:
    return json.loads((data_dir() / "tiny_policy_lookup" / "warmstart.json").read_text())


def _check_lookup_targets(sampled: list[dict], greedy: list[dict]) -> list[str]:
    problems = []
    for row in sampled:
        low, high = LOOKUP_TARGETS[row["tier"]]
        direct = row["direct_accuracy"]
        if direct is None or not low <= direct <= high:
            problems.append(f"tier {row['tier']}: direct accuracy {direct} not in [{low}, {high}]")
        if row["tool_accuracy"] is None or row["tool_accuracy"] < MIN_TOOL_ACCURACY:
            problems.append(f"tier {row['tier']}: lookup accuracy {row['tool_accuracy']} < {MIN_TOOL_ACCURACY}")
        for share in ("calls_0", "calls_1", "calls_2plus"):
            if row[share] < MIN_BEHAVIOUR_SHARE:
                problems.append(f"tier {row['tier']}: {share} share {row[share]:.3f} < {MIN_BEHAVIOUR_SHARE}")
    for row in greedy:
        least = LOOKUP_MIN_GREEDY_CALLS.get(row["tier"], 0.0)
        if row["mean_tool_calls"] < least:
            problems.append(f"tier {row['tier']}: greedy mean calls {row['mean_tool_calls']:.2f} < {least}")
    return problems


def test_shipped_lookup_policy_matches_its_warm_start_record():
    folder = data_dir() / "tiny_policy_lookup"
    record = _lookup_record()
    assert record["task"] == "lookup"
    assert weights_sha256(folder) == record["model_sha256"], (
        "data/tiny_policy_lookup/model.safetensors changed without re-running `paretopo warmstart --task lookup`; "
        "restore it with `git checkout data/tiny_policy_lookup` or regenerate it"
    )
    assert sorted(row["tier"] for row in record["test_by_tier"]) == [1, 2]
    assert _check_lookup_targets(record["test_by_tier"], record["test_greedy_by_tier"]) == []
    assert (folder / "model.safetensors").stat().st_size < 1.5 * 2**20  # small, like the arithmetic one


@pytest.mark.slow
def test_shipped_lookup_policy_meets_its_targets_when_re_measured():
    """What `paretopo eval data/tiny_policy_lookup --task lookup --split test --by tier --samples 4` measures."""
    from paretopo.agent.models import load_policy
    from paretopo.evaluation.evaluate import behaviour_table, evaluate_policy
    from paretopo.tasks import get_task

    torch.set_num_threads(1)
    model, tokenizer = load_policy(data_dir() / "tiny_policy_lookup", lora=False)
    task = get_task("lookup")
    sampled = evaluate_policy(model, tokenizer, task, task.load("test"), num_samples=4, greedy=False,
                              max_new_tokens=160, tools_in_prompt=False, progress=False, seed=0)
    greedy = evaluate_policy(model, tokenizer, task, task.load("test"), max_new_tokens=160, tools_in_prompt=False,
                             progress=False)
    assert _check_lookup_targets(behaviour_table(sampled.rows, "tier").to_dicts(),
                                 behaviour_table(greedy.rows, "tier").to_dicts()) == []
