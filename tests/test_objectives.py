import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paretopo.core.objectives import (
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


# every scoring option, as scoring_options(config) gives them: objective_matrix has no defaults
UNGATED = dict(objectives=("task", "tool_efficiency"), gate_tool_by_correctness=False, form="exp", alpha=0.5,
               max_calls=3, unknown_nstar="one", brevity_length=None)


def test_gating_by_correctness_switch():
    correct, calls, nstar = [1, 0], [1, 1], [1, 1]
    np.testing.assert_array_equal(objective_matrix(correct, calls, nstar, **UNGATED), [[1, 1], [0, 1]])
    gated = {**UNGATED, "gate_tool_by_correctness": True}
    np.testing.assert_array_equal(objective_matrix(correct, calls, nstar, **gated), [[1, 1], [0, 0]])


def test_the_method_config_gates_and_objective_matrix_has_no_defaults_to_disagree_with():
    """Issue 25's hand-worked example: ids q, q, q; correct 1, 0, 0; calls 1, 1, 0 (so n* = 1)."""
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import score_completions

    ids, correct, calls = ["q", "q", "q"], [1, 0, 0], [1, 1, 0]
    gated = score_completions(ids, correct, calls, OptimalCallTracker(), ParetoPOConfig())
    np.testing.assert_array_equal(gated, [[1, 1], [0, 0], [0, 0]])  # a wrong answer scores (0, 0)
    ungated = score_completions(ids, correct, calls, OptimalCallTracker(), ParetoPOConfig(gate_tool_by_correctness=False))
    np.testing.assert_allclose(ungated, [[1, 1], [0, 1], [0, math.exp(-0.5)]])  # 0.607
    with pytest.raises(TypeError, match="gate_tool_by_correctness"):
        objective_matrix(correct, calls, [1, 1, 1], **{k: v for k, v in UNGATED.items() if k != "gate_tool_by_correctness"})
    with pytest.raises(ValueError, match="miss gate_tool_by_correctness.*scoring_options"):
        score_completions(ids, correct, calls, OptimalCallTracker(), {k: v for k, v in UNGATED.items()
                                                                       if k != "gate_tool_by_correctness"})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tool_efficiency([1], [1], form="cubic"), "'exp'"),
        (lambda: tool_efficiency([-1], [1]), ">= 0"),
        (lambda: tool_efficiency_exp([1], [1], alpha=0), "alpha"),
        (lambda: tool_efficiency([1], [1], unknown_nstar="maybe"), "unknown_nstar"),
        (lambda: objective_matrix([2], [1], [1], **UNGATED), r"\[0, 1\]"),
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
    rewards = objective_matrix(correct, calls, tracker.lookup(ids), **UNGATED)
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


# Advantages of a fixed batch for every method, computed with the code before the scoring path was
# unified (objective_matrix + hand-built efficiency options in trainer.py): they must never move.
PINNED_ADVANTAGES = {
    ("paretopo", 1): [0.43946021, 0.79384461, -1.45782003, 0.22451521, 0.0, 0.0, 0.0, 0.0, 0.66190762, -1.45138147, 0.12756623, 0.66190762],
    ("paretopo", 2): [0.38726834, 1.16180501, -1.16180501, -0.38726834, 0.0, 0.0, 0.0, 0.0, 0.78326764, -1.30544607, -0.26108921, 0.78326764],
    ("otc_grpo", 1): [0.50014914, 0.80097778, -1.44443773, 0.1433108, 0.0, 0.0, 0.0, 0.0, 0.72908596, -1.38956442, -0.06860751, 0.72908596],
    ("torl_grpo", 1): [0.49990002, 0.49990002, -1.49970006, 0.49990002, 0.0, 0.0, 0.0, 0.0, 0.49990002, -1.49970006, 0.49990002, 0.49990002],
    ("fixed_weight", 1): [0.43943738, 0.79380336, -1.45774428, 0.22450354, 0.0, 0.0, 0.0, 0.0, 0.66187534, -1.45131069, 0.12756001, 0.66187534],
    ("mo_grpo", 1): [0.7688546, 1.70595839, -2.67528542, 0.20047243, 0.0, 0.0, 0.0, 0.0, 1.3248524, -2.69654043, 0.04683564, 1.3248524],
    ("gdpo", 1): [0.58177873, 1.11690298, -1.95589117, 0.25720947, 0.0, 0.0, 0.0, 0.0, 0.89927601, -1.96802865, 0.16947663, 0.89927601],
    ("no_dynamic_weighting", 1): [0.43943738, 0.79380336, -1.45774428, 0.22450354, 0.0, 0.0, 0.0, 0.0, 0.66187534, -1.45131069, 0.12756001, 0.66187534],
    ("no_dynamic_weighting", 2): [0.38726834, 1.16180501, -1.16180501, -0.38726834, 0.0, 0.0, 0.0, 0.0, 0.78326764, -1.30544607, -0.26108921, 0.78326764],
}


@pytest.mark.parametrize(("preset", "stage"), sorted(PINNED_ADVANTAGES))
def test_one_scoring_path_keeps_the_advantages_of_a_fixed_batch(preset, stage):
    from paretopo.core.advantages import compute_advantages
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import score_completions

    ids = [f"q{i // 4}" for i in range(12)]
    correct = np.array([1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 1], dtype=float)
    calls = np.array([2, 1, 0, 3, 1, 0, 2, 1, 0, 1, 2, 0])
    config = ParetoPOConfig.from_preset(preset)
    tracker = OptimalCallTracker()
    tracker.update(["q0"], [3], [1])  # an earlier batch
    objectives = score_completions(ids, correct, calls, tracker, config)
    result = compute_advantages(config.estimator_for_stage(stage), objectives, 4,
                                **config.estimator_options(stage, meta_reward=1.3))
    np.testing.assert_allclose(np.asarray(result.advantages, dtype=float), PINNED_ADVANTAGES[(preset, stage)],
                               atol=1e-8)


def test_score_completions_is_objective_matrix_after_the_nstar_update():
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import score_completions, scoring_options

    ids, correct, calls = ["a", "a", "b"], [1, 0, 1], [2, 1, 0]
    config = ParetoPOConfig(tool_efficiency_form="otc", gate_tool_by_correctness=False)
    tracker = OptimalCallTracker()
    scored = score_completions(ids, correct, calls, tracker, config)
    reference = OptimalCallTracker()
    reference.update(ids, calls, correct)
    expected = objective_matrix(correct, calls, reference.lookup(ids), **{**UNGATED, "form": "otc"})
    np.testing.assert_array_equal(scored, expected)
    assert tracker.as_dict() == reference.as_dict()
    frozen = score_completions(["c"], [1], [1], tracker, config, update=False)  # n* of c stays unknown
    assert "c" not in tracker and frozen.tolist() == [[1.0, 1.0]]
    assert scoring_options(config)["objectives"] == ("task", "tool_efficiency")


def test_brevity_is_a_third_objective_column():
    from paretopo.core.config import ParetoPOConfig
    from paretopo.core.objectives import brevity, score_completions

    np.testing.assert_allclose(brevity([0, 40, 160, 400], 160), [1.0, 0.75, 0.0, 0.0])
    config = ParetoPOConfig(objectives=("task", "tool_efficiency", "brevity"), weights=(0.5, 0.3, 0.2),
                            brevity_length=100)
    scored = score_completions(["q", "q"], [1, 0], [1, 0], OptimalCallTracker(), config, lengths=[25, 150])
    np.testing.assert_allclose(scored, [[1.0, 1.0, 0.75], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="needs the completion lengths"):
        score_completions(["q"], [1], [1], OptimalCallTracker(), config)
    with pytest.raises(ValueError, match="cannot be scored"):
        objective_matrix([1], [0], [0], **{**UNGATED, "objectives": ("task", "colour")})
