import math

import numpy as np
import pytest
from scripted import ScriptedPolicy

from paretopo.agent.models import build_tiny_tokenizer
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import OptimalCallTracker
from paretopo.evaluation.evaluate import (
    compare_runs,
    evaluate_policy,
    frontier,
    frontier_hypervolume,
)
from paretopo.evaluation.runlog import RunLog
from paretopo.tasks import get_task
from paretopo.tasks.base import Example

CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "393*56"}}\n</tool_call>'
EXAMPLES = [
    Example("q-product", "What is 393*56?", "22008", {"tier": 3}),
    Example("q-easy", "What is 42+5?", "47", {"tier": 1}),
    Example("q-carry", "What is 7+8?", "15", {"tier": 2}),
]
SCRIPTS = {
    "393*56": [CALL, "\\boxed{22008}"],  # one call, right
    "42+5": ["\\boxed{47}"],  # direct, right
    "7+8": ["\\boxed{16}"],  # direct, wrong
}


@pytest.fixture(scope="module")
def evaluated():
    tokenizer = build_tiny_tokenizer()
    return evaluate_policy(ScriptedPolicy(tokenizer, SCRIPTS), tokenizer, get_task("arithmetic"), EXAMPLES,
                           max_new_tokens=200, tools_in_prompt=False, progress=False)


def test_summary_numbers_by_hand(evaluated):
    assert evaluated.accuracy == pytest.approx(2 / 3)
    assert evaluated.mean_tool_calls == pytest.approx(1 / 3)
    assert evaluated.tool_productivity == pytest.approx(2.0)  # 2 correct answers / 1 call
    # n*: product 1 (its correct answer used 1 call), easy 0, carry unknown; scored as the paretopo
    # method trains (gated by correctness), so the wrong carry answer has efficiency 0, not 1
    assert evaluated.objectives == pytest.approx((2 / 3, 2 / 3))
    assert evaluated.rows.sort("id")["obj_tool_efficiency"].to_list() == [0.0, 1.0, 1.0]  # carry, easy, product
    rows = evaluated.rows.sort("id")
    assert rows["tool_calls"].to_list() == [0, 0, 1] and rows["correct"].to_list() == [False, True, True]


def test_tracker_is_shared_across_evaluations():
    tokenizer = build_tiny_tokenizer()
    tracker = OptimalCallTracker()
    tracker.update(["q-product"], [0], [1])  # an earlier evaluation answered it without a call
    result = evaluate_policy(ScriptedPolicy(tokenizer, SCRIPTS), tokenizer, get_task("arithmetic"), EXAMPLES[:1],
                             max_new_tokens=200, tools_in_prompt=False, progress=False, tracker=tracker,
                             efficiency_options=ParetoPOConfig(alpha=0.5))
    assert result.objectives[1] == pytest.approx(math.exp(-0.5))


def test_empty_input_is_a_clear_error():
    tokenizer = build_tiny_tokenizer()
    with pytest.raises(ValueError, match="no examples"):
        evaluate_policy(ScriptedPolicy(tokenizer, SCRIPTS), tokenizer, get_task("arithmetic"), [], progress=False)


def test_frontier_helpers():
    points = np.array([[0.5, 0.5], [0.8, 0.2], [0.4, 0.4]])
    np.testing.assert_array_equal(frontier(points), [True, True, False])
    assert frontier_hypervolume(points) == pytest.approx(0.31)


def test_compare_runs_uses_one_shared_nstar(tmp_path, evaluated):
    runs = []
    for name, calls in (("frugal", 0), ("heavy", 2)):
        log = RunLog(tmp_path / name)
        log.write_config({"method": {"method": name}})
        rows = evaluated.rows.with_columns(evaluated.rows["tool_calls"] * 0 + calls)
        for step, split in ((5, "validation"), (10, "validation"), (10, "test")):
            log.log_eval_rows(step, split, rows)
        log.log_eval([{"step": 10, "split": "test", "final": True, "accuracy": 2 / 3}])
        runs.append(str(tmp_path / name))
    summary, dominance = compare_runs(runs)
    by_method = {row["method"]: row for row in summary.iter_rows(named=True)}
    # shared n* = 0 for the two answered questions: the frugal run is fully efficient on them, the heavy
    # one is not; scored as the paretopo method (the default, named), the wrong answer counts 0
    assert by_method["frugal"]["test_obj_tool_efficiency"] == pytest.approx(2 / 3)
    assert by_method["heavy"]["test_obj_tool_efficiency"] == pytest.approx(2 / 3 * math.exp(-1.0))
    ungated, _ = compare_runs(runs, scoring=ParetoPOConfig(gate_tool_by_correctness=False))
    assert ungated.filter(ungated["method"] == "frugal")["test_obj_tool_efficiency"].item() == pytest.approx(1.0)
    assert dominance.filter(dominance["run"] == runs[0])[runs[1]].item() is True
