import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paretopo.objectives import (
    OptimalCallTracker,
    count_tool_calls,
    objective_matrix,
    tool_efficiency,
    tool_efficiency_exp,
    tool_efficiency_otc,
)


def test_exp_form_at_hand_checked_points():
    values = tool_efficiency_exp([0, 1, 2, 4], [1, 1, 1, 1], alpha=0.5)
    np.testing.assert_allclose(values, [math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-1.5)])
    assert tool_efficiency_exp([3], [1], alpha=1.0)[0] == pytest.approx(math.exp(-2))


def test_otc_form_at_hand_checked_points():
    c = 3
    # m = n = 0 -> 1; n = 0 -> cos(m pi / (2m + c)); otherwise sin(f pi / 2n), f = 2nm / (m + n)
    cases = [
        (0, 0, 1.0),
        (1, 0, math.cos(math.pi / 5)),
        (2, 0, math.cos(2 * math.pi / 7)),
        (2, 2, 1.0),
        (0, 2, 0.0),
        (1, 2, math.sin((4 / 3) * math.pi / 4)),
        (4, 2, math.sin((16 / 6) * math.pi / 4)),
    ]
    m, n, expected = zip(*cases, strict=True)
    np.testing.assert_allclose(tool_efficiency_otc(m, n, max_calls=c), expected, atol=1e-12)
    # symmetric around the optimum in f: over- and under-calling both cost
    assert tool_efficiency_otc([3], [2], 3)[0] < 1.0 and tool_efficiency_otc([1], [2], 3)[0] < 1.0


def test_unknown_nstar_switch():
    calls, nstar = np.array([0, 2]), np.array([np.nan, np.nan])
    np.testing.assert_array_equal(tool_efficiency(calls, nstar, unknown_nstar="one"), [1.0, 1.0])
    np.testing.assert_allclose(tool_efficiency(calls, nstar, unknown_nstar="zero", alpha=0.5), [1.0, math.exp(-1.0)])
    np.testing.assert_allclose(
        tool_efficiency(calls, nstar, form="otc", unknown_nstar="zero", max_calls=3), [1.0, math.cos(2 * math.pi / 7)]
    )


def test_gating_by_correctness_switch():
    correct, calls, nstar = [1, 0], [1, 1], [1, 1]
    np.testing.assert_array_equal(objective_matrix(correct, calls, nstar), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(objective_matrix(correct, calls, nstar, gate_tool_by_correctness=True), [[1, 1], [0, 0]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tool_efficiency([1], [1], form="cubic"), "'exp'"),
        (lambda: tool_efficiency([-1], [1]), ">= 0"),
        (lambda: tool_efficiency_exp([1], [1], alpha=0), "alpha"),
        (lambda: tool_efficiency([1], [1], unknown_nstar="maybe"), "unknown_nstar"),
        (lambda: objective_matrix([2], [1], [1]), r"\[0, 1\]"),
        (lambda: OptimalCallTracker().update(["a"], [1, 2], [1, 1]), "one entry per completion"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


batches = st.lists(
    st.tuples(st.sampled_from(["q1", "q2", "q3"]), st.integers(0, 5), st.booleans()), min_size=0, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(batches, min_size=1, max_size=8))
def test_nstar_never_increases_and_equals_min_correct_calls(history):
    tracker = OptimalCallTracker()
    seen: dict[str, int] = {}
    previous = {}
    for batch in history:
        if batch:
            ids, calls, correct = zip(*batch, strict=True)
            tracker.update(list(ids), np.array(calls), np.array(correct, dtype=float))
        for q, m, ok in batch:
            if ok:
                seen[q] = min(seen.get(q, m), m)
        current = tracker.as_dict()
        assert current == seen
        for q, n in previous.items():
            assert current[q] <= n
        previous = current


def test_tracker_updates_before_rewards_and_round_trips():
    tracker = OptimalCallTracker()
    ids = ["q"] * 4
    calls, correct = np.array([3, 1, 0, 2]), np.array([1, 1, 0, 1])
    tracker.update(ids, calls, correct)  # the group's own best correct completion (1 call) counts
    rewards = objective_matrix(correct, calls, tracker.lookup(ids), alpha=0.5)
    np.testing.assert_allclose(rewards[:, 1], np.exp(-0.5 * np.abs(calls - 1)))
    restored = OptimalCallTracker()
    restored.load_state_dict(tracker.state_dict())
    assert restored.as_dict() == {"q": 1} and "q" in restored and len(restored) == 1
    assert np.isnan(restored.lookup(["unseen"])[0])


def test_count_tool_calls_from_messages_and_text():
    messages = [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calculator"}}] * 2},
        {"role": "tool", "content": "391"},
        {"role": "assistant", "content": "The answer is \\boxed{391}"},
    ]
    assert count_tool_calls(messages) == 2
    assert count_tool_calls("<tool_call>{}</tool_call> x <tool_call>{}</tool_call>") == 2
