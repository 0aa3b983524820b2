import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paretopo.core.advantages import (
    ADVANTAGES,
    ESTIMATORS,
    compute_advantages,
    degenerate_groups,
    get_estimator,
)
from paretopo.core.pareto import pareto_ranks

WEIGHTED = {name for name, spec in ESTIMATORS.items() if "weights" in spec.reads}  # every estimator that needs w


def options(name, **extra):
    return {"weights": (0.6, 0.4), **extra} if name in WEIGHTED else dict(extra)


WORKED_EXAMPLE = np.array([[1, 1.00], [1, 0.37], [0, 1.00], [0, 0.37], [1, 0.37]])


def test_method_spec_worked_example_exactly():
    # method_spec §1.5: w = (0.6, 0.4), beta = 0.5 -> 3.00, 2.25, 1.75, 1.00, 2.25
    advantages = ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), beta=0.5)
    np.testing.assert_allclose(advantages, [3.00, 2.25, 1.75, 1.00, 2.25], rtol=0, atol=1e-12)


def test_centring_switch():
    raw = ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4))
    centred = ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), center="group_mean")
    zscored = ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), center="group_zscore")
    np.testing.assert_allclose(centred, raw - raw.mean())
    np.testing.assert_allclose(zscored, (raw - raw.mean()) / (raw.std(ddof=1) + 1e-4))


def test_baselines_by_hand():
    r = np.array([[1, 0.5], [0, 1.0], [1, 1.0], [0, 0.5]])
    z = lambda v: (v - v.mean()) / (v.std(ddof=1) + 1e-4)  # noqa: E731
    np.testing.assert_allclose(ADVANTAGES["torl_grpo"](r, 4), z(r[:, 0]))
    np.testing.assert_allclose(ADVANTAGES["fixed_weight"](r, 4, weights=(0.6, 0.4)), z(r @ [0.6, 0.4]))
    np.testing.assert_allclose(ADVANTAGES["otc_grpo"](r, 4), z(r[:, 0] * r[:, 1]))
    np.testing.assert_allclose(ADVANTAGES["mo_grpo"](r, 4), z(r[:, 0]) + z(r[:, 1]))
    combined = 0.6 * z(r[:, 0]) + 0.4 * z(r[:, 1])
    np.testing.assert_allclose(ADVANTAGES["gdpo"](r, 4, weights=(0.6, 0.4)), z(combined))
    shaped = 1.7 * (r @ [0.6, 0.4])
    np.testing.assert_allclose(
        ADVANTAGES["hv_scalarized"](r, 4, weights=(0.6, 0.4), meta_reward=1.7, normalization="mean_only"),
        shaped - shaped.mean(),
    )
    # with the group std the batch-wide meta reward cancels (method_spec §1.4)
    np.testing.assert_allclose(
        ADVANTAGES["hv_scalarized"](r, 4, weights=(0.6, 0.4), meta_reward=1.7),
        ADVANTAGES["fixed_weight"](r, 4, weights=(0.6, 0.4)),
        rtol=1e-3,  # equal up to the eps added to the std
    )


reward_batches = st.tuples(st.integers(1, 5), st.integers(1, 8)).flatmap(
    lambda s: st.tuples(
        arrays(np.float64, (s[0] * s[1], 2), elements=st.sampled_from([0.0, 0.37, 0.61, 1.0])), st.just(s[1])
    )
)


@settings(max_examples=200, deadline=None)
@given(reward_batches, st.floats(0.01, 1.0), st.sampled_from(["none", "group_mean", "group_zscore"]))
def test_worse_rank_never_gets_higher_pareto_advantage(batch, beta, center):
    rewards, group_size = batch
    advantages = ADVANTAGES["pareto_rank"](rewards, group_size, weights=(0.6, 0.4), beta=beta, center=center)
    ranks = pareto_ranks(rewards.reshape(-1, group_size, 2))
    for adv, rank in zip(advantages.reshape(-1, group_size), ranks, strict=True):
        for i in range(group_size):
            for j in range(group_size):
                if rank[i] > rank[j]:
                    assert adv[i] <= adv[j] + 1e-12


@settings(max_examples=60, deadline=None)
@given(reward_batches, st.integers(0, 2**31))
@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_every_estimator_is_invariant_to_group_order(name, batch, seed):
    rewards, group_size = batch
    n_groups = rewards.shape[0] // group_size
    permutation = np.random.default_rng(seed).permutation(n_groups)
    shuffled = rewards.reshape(n_groups, group_size, 2)[permutation].reshape(-1, 2)
    original = ADVANTAGES[name](rewards, group_size, **options(name)).reshape(n_groups, group_size)
    permuted = ADVANTAGES[name](shuffled, group_size, **options(name)).reshape(n_groups, group_size)
    np.testing.assert_allclose(permuted, original[permutation], atol=1e-9)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_group_of_one_and_equal_rewards_give_zero_not_nan(name):
    for rewards, group_size in [(np.random.rand(6, 2), 1), (np.ones((8, 2)), 4), (np.zeros((4, 2)), 2)]:
        advantages = ADVANTAGES[name](rewards, group_size, **options(name))
        assert np.isfinite(advantages).all() and np.all(advantages == 0.0)


def test_degenerate_groups_are_reported_and_zeroed_but_equal_scalars_are_not():
    equal_vectors = [[1.0, 0.5]] * 4
    equal_weighted_sums = [[1.0, 0.0], [0.0, 1.5], [1.0, 0.0], [0.0, 1.5]]  # w.r = 0.6 for all
    rewards = np.array(equal_vectors + equal_weighted_sums)
    result = compute_advantages("pareto_rank", rewards, 4, weights=(0.6, 0.4))
    np.testing.assert_array_equal(result.degenerate, [True, False])
    assert result.metrics["pareto/frac_degenerate_groups"] == 0.5
    np.testing.assert_array_equal(result.advantages[:4], 0.0)
    # scalar methods collapse on the second group; Pareto ranking keeps its (single-front) signal
    np.testing.assert_allclose(ADVANTAGES["fixed_weight"](rewards, 4, weights=(0.6, 0.4))[4:], 0.0, atol=1e-9)
    np.testing.assert_allclose(result.advantages[4:], 1.0)  # one front, tied w.r -> A = 1
    np.testing.assert_array_equal(degenerate_groups(rewards, 4), [True, False])


def test_numpy_and_torch_agree_and_keep_type():
    rewards = np.random.default_rng(3).integers(0, 3, (24, 2)) / 2.0
    for name in ADVANTAGES:
        from_numpy = ADVANTAGES[name](rewards, 6, **options(name))
        from_torch = ADVANTAGES[name](torch.tensor(rewards, dtype=torch.float32), 6, **options(name))
        assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
        assert from_torch.dtype == torch.float32
        np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-5)


def test_compute_advantages_metrics():
    result = compute_advantages("torl_grpo", WORKED_EXAMPLE, 5)
    assert result.metrics["pareto/frac_nondominated"] == pytest.approx(0.2)
    assert result.metrics["pareto/mean_fronts"] == 3.0
    assert result.ranks.tolist() == [1, 2, 2, 3, 2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_estimator("ppo"), "unknown advantage estimator 'ppo'"),
        (lambda: ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), beta=1.5), "beta"),
        (lambda: ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5), "needs weights"),
        (lambda: ADVANTAGES["fixed_weight"](WORKED_EXAMPLE, 5, weights=(1.0,)), "one entry per objective"),
        (lambda: ADVANTAGES["torl_grpo"](WORKED_EXAMPLE, 3), "multiple of group_size"),
        (lambda: ADVANTAGES["torl_grpo"](np.array([[np.nan, 1.0]]), 1), "NaN"),
        (lambda: ADVANTAGES["pareto_rank"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), center="median"), "center"),
        (lambda: ADVANTAGES["hv_scalarized"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4), normalization="x"), "normalization"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unknown_option_fails_loudly():
    with pytest.raises(TypeError, match="unexpected keyword"):
        ADVANTAGES["torl_grpo"](WORKED_EXAMPLE, 5, weights=(0.6, 0.4))


@pytest.mark.parametrize("center", ["none", "group_mean", "group_zscore"])
def test_rank_advantage_prices_a_coin_flip_gamble_like_a_sure_call(center):
    """Why ParetoPO stops calling on carry sums (docs/results.md): ranks ignore how far apart vectors are.

    A gated group: a direct answer that is right (1, 1) or wrong (0, 0), and a right answer with
    one call, efficiency exp(-0.5) when n* = 0. The right direct answer is front 1, the call
    front 2, the wrong answer front 3, equally spaced, so a gamble that wins half the time has
    the call's mean advantage. The weighted sum prices the call at 0.6 + 0.4 exp(-0.5) = 0.843,
    so under fixed weights the gamble must win 84 % of the time to break even.
    """
    call = (1.0, float(np.exp(-0.5)))
    group = np.array([(1.0, 1.0), (0.0, 0.0), call, call])  # one win, one loss: p = 1/2
    rank_advantage = np.asarray(get_estimator("pareto_rank")(group, 4, weights=(0.6, 0.4), beta=0.5, center=center))
    assert rank_advantage[:2].mean() == pytest.approx(rank_advantage[2])
    scalar = np.asarray(get_estimator("fixed_weight")(group, 4, weights=(0.6, 0.4)))
    assert scalar[:2].mean() < scalar[2]  # the weighted sum prefers the sure call at p = 1/2
    at_break_even = 0.6 + 0.4 * np.exp(-0.5)
    assert at_break_even == pytest.approx(0.843, abs=1e-3)


def test_group_std_makes_a_right_call_cost_more_than_a_wrong_answer():
    """Why fixed weights with GRPO's group z-score stop calling (docs/results.md): in a group where
    every answer is right, the one that used a call gets -2.47, while a wrong answer in a mixed
    group gets -1.20; one batch-wide scale (or none) keeps the 0.16 price of a call small."""
    call = (1.0, float(np.exp(-0.5)))
    all_right = np.array([(1.0, 1.0)] * 7 + [call])
    mixed = np.array([(1.0, 1.0)] * 3 + [(0.0, 0.0)] * 3 + [call] * 2)
    fixed_weight = get_estimator("fixed_weight")
    right_call = np.asarray(fixed_weight(all_right, 8, weights=(0.6, 0.4)))[-1]
    wrong = np.asarray(fixed_weight(mixed, 8, weights=(0.6, 0.4)))[3]
    assert right_call == pytest.approx(-2.47, abs=0.01) and wrong == pytest.approx(-1.20, abs=0.01)
    assert np.asarray(fixed_weight(all_right, 8, weights=(0.6, 0.4), scale="none"))[-1] == pytest.approx(
        -0.138, abs=0.001)
