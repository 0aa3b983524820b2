"""The gamble map (paretopo.core.gamble) and the calibrated rank estimator.

The exact gap is checked three ways: against a brute-force sum over every ordered group of
G = 3 (an independent way to condition on a completion's type), against a Monte Carlo of
``compute_advantages`` on sampled batches (every registered estimator, group and batch
scaling), and against hand-derived break-evens (ranks 0.5, the weighted sum's c * w.r(call)).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paretopo.core.advantages import ESTIMATORS, _pooled_front_values, compute_advantages
from paretopo.core.config import PRESETS, ParetoPOConfig
from paretopo.core.gamble import WEIGHTED_SUM, GambleMap, compositions, gamble_table
from paretopo.core.objectives import objective_matrix, scoring_options
from paretopo.core.pareto import pareto_ranks

torch.set_num_threads(1)

CORRECT = np.array([1.0, 0.0, 1.0, 0.0])
IS_DIRECT = np.array([True, True, False, False])


def cell_probabilities(p: float, c: float, q: float) -> np.ndarray:
    return np.array([q * p, q * (1 - p), (1 - q) * c, (1 - q) * (1 - c)])


def rewards_of(cells: np.ndarray, config: ParetoPOConfig, calls=(0, 1), nstar: int = 0) -> np.ndarray:
    """Objective vectors of completions in the four cells, scored as in training."""
    m = np.where(IS_DIRECT[cells], calls[0], calls[1]).astype(float)
    return objective_matrix(CORRECT[cells], m, np.full(m.shape, float(nstar)), **scoring_options(config))


def test_compositions_are_every_way_to_fill_the_cells_once():
    for total in range(6):
        rows = compositions(total)
        assert len(rows) == math.comb(total + 3, 3)
        assert (rows.sum(1) == total).all() and (rows >= 0).all()
        assert len({tuple(r) for r in rows}) == len(rows)


@pytest.mark.parametrize("estimator", ["pareto_rank", "fixed_weight", "mo_grpo", "calibrated_rank"])
@pytest.mark.parametrize(("p", "c", "q"), [(0.3, 0.99, 0.5), (0.8, 0.7, 0.2), (0.55, 1.0, 0.9)])
def test_gap_equals_a_brute_force_sum_over_every_ordered_group(estimator, p, c, q):
    """E[A | direct] = sum over ordered groups of P(group) * (advantage sum of its direct
    completions) / (G q): the per-completion expectation, computed without compositions."""
    config, g = ParetoPOConfig(), 3
    pi = cell_probabilities(p, c, q)
    groups = np.array(list(itertools.product(range(4), repeat=g)))  # [64, 3]
    probability = pi[groups].prod(1)
    advantages = compute_advantages(estimator, rewards_of(groups.reshape(-1), config), g,
                                    **config.options_for_estimator(estimator)).advantages.reshape(-1, g)
    direct = IS_DIRECT[groups]
    expect_direct = (probability * (advantages * direct).sum(1)).sum() / (g * q)
    expect_call = (probability * (advantages * ~direct).sum(1)).sum() / (g * (1 - q))
    exact = GambleMap(estimator, config, group_size=g).gap(p, c=c, q=q)[0]
    assert exact == pytest.approx(expect_direct - expect_call, abs=1e-9)


def monte_carlo_gap(estimator: str, config: ParetoPOConfig, p: float, c: float, q: float, *, group_size: int = 8,
                    groups: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Gap from one sampled batch through compute_advantages, and its delta-method standard error."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(4, size=(groups, group_size), p=cell_probabilities(p, c, q))
    advantages = compute_advantages(estimator, rewards_of(cells.reshape(-1), config), group_size,
                                    **config.options_for_estimator(estimator)).advantages.reshape(groups, group_size)
    direct = IS_DIRECT[cells]
    sums = [(advantages * mask).sum(1) for mask in (direct, ~direct)]
    counts = [mask.sum(1) for mask in (direct, ~direct)]
    means = [s.sum() / n.sum() for s, n in zip(sums, counts, strict=True)]
    # residual of each group for the ratio estimators (groups are independent)
    residual = ((sums[0] - means[0] * counts[0]) / counts[0].sum()
                - (sums[1] - means[1] * counts[1]) / counts[1].sum())
    return float(means[0] - means[1]), float(np.sqrt((residual**2).sum()))


@pytest.mark.parametrize("scale", ["group", "batch"])
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_exact_gap_agrees_with_a_monte_carlo_of_compute_advantages(estimator, scale):
    config = ParetoPOConfig(scale_rewards=scale)
    gamble = GambleMap(estimator, config)
    for seed, (p, c, q) in enumerate([(0.4, 0.99, 0.5), (0.75, 0.9, 0.2), (0.9, 0.99, 0.8)]):
        sampled, error = monte_carlo_gap(estimator, config, p, c, q, seed=seed)
        exact = gamble.gap(p, c=c, q=q)[0]
        assert abs(exact - sampled) < 4.5 * error + 1e-3, (p, c, q, exact, sampled, error)


@pytest.mark.parametrize("weights", [(0.6, 0.4), (0.5, 0.5), (0.8, 0.2), (0.2, 0.8)])
@pytest.mark.parametrize("center", ["group_mean", "group_zscore"])
def test_pareto_rank_breaks_even_at_one_half(weights, center):
    """With gating, right-direct, right-call and wrong are three equally spaced fronts: a sure
    call sits in the middle, a direct answer right with p at p * top + (1 - p) * bottom."""
    config = ParetoPOConfig(weights=weights, stage2_center=center)
    for q in (0.2, 0.5, 0.8):
        assert GambleMap("pareto_rank", config).break_even(c=1.0, q=q).p_star == pytest.approx(0.5, abs=1e-8)
    # a call right with probability c: the middle front is reached c of the time, so about c / 2
    assert GambleMap("pareto_rank", config).break_even(c=0.99, q=0.5).p_star == pytest.approx(0.495, abs=2e-3)


def test_torl_grpo_only_counts_accuracy():
    """Accuracy-only GRPO prices a direct answer and a call by their accuracy alone: with a sure
    call the gap is < 0 for every p < 1 (no break-even), else the break-even is the call's c."""
    gamble = GambleMap("torl_grpo", ParetoPOConfig())
    verdict = gamble.break_even(c=1.0, q=0.5)
    assert verdict.p_star is None and verdict.verdict == "never"
    assert (gamble.gap(np.linspace(0, 0.99, 50), c=1.0) < 0).all()
    for c in (0.6, 0.9, 0.99):
        assert gamble.break_even(c=c, q=0.3).p_star == pytest.approx(c, abs=1e-8)


def test_weighted_sum_break_even_is_analytic():
    """E[w.r | direct] = p (a right direct answer scores (1, 1)); E[w.r | call] = c (w_task + w_tool e^-alpha)."""
    assert GambleMap(WEIGHTED_SUM, ParetoPOConfig()).break_even(c=0.99).p_star == pytest.approx(
        0.99 * (0.6 + 0.4 * math.exp(-0.5)), abs=1e-9)
    assert 0.99 * (0.6 + 0.4 * math.exp(-0.5)) == pytest.approx(0.834, abs=5e-4)


@settings(max_examples=15, deadline=None)
@given(w_task=st.floats(0.05, 0.95), alpha=st.sampled_from([0.25, 0.5, 1.0]), c=st.floats(0.5, 1.0),
       q=st.floats(0.05, 0.95), group_size=st.integers(2, 8))
def test_calibrated_rank_breaks_even_where_the_weighted_sum_does(w_task, alpha, c, q, group_size):
    config = ParetoPOConfig(weights=(w_task, 1 - w_task), alpha=alpha)
    calibrated = GambleMap("calibrated_rank", config, group_size=group_size).break_even(c=c, q=q)
    expected = GambleMap(WEIGHTED_SUM, config, group_size=group_size).break_even(c=c, q=q)
    assert calibrated.p_star == pytest.approx(expected.p_star, abs=1e-8)
    assert expected.p_star == pytest.approx(c * (w_task + (1 - w_task) * math.exp(-alpha)), abs=1e-8)


def test_calibrated_rank_at_the_default_weights_needs_the_weighted_sums_834():
    row = gamble_table(ParetoPOConfig(), ["calibrated_rank", "pareto_rank"], c=0.99)
    assert row[0]["direct_vs_call"][0.5].p_star == pytest.approx(0.8342, abs=1e-4)
    assert row[1]["direct_vs_call"][0.5].p_star == pytest.approx(0.497, abs=1e-3)


def brute_force_pooling(means: list[float], sizes: list[int]) -> list[float]:
    """Pool adjacent violators, written out: merge neighbouring blocks while a later one is higher."""
    blocks = [[m * s, s, 1] for m, s in zip(means, sizes, strict=True)]
    merged = True
    while merged:
        merged = False
        for i in range(len(blocks) - 1):
            if blocks[i + 1][0] / blocks[i + 1][1] > blocks[i][0] / blocks[i][1] + 1e-12:
                blocks[i] = [blocks[i][0] + blocks[i + 1][0], blocks[i][1] + blocks[i + 1][1], blocks[i][2] + blocks[i + 1][2]]
                del blocks[i + 1]
                merged = True
                break
    return [total / size for total, size, width in blocks for _ in range(width)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 4)), min_size=1, max_size=6))
def test_front_values_are_the_pooled_adjacent_violators(fronts):
    means = [m for m, _ in fronts]
    sizes = [s for _, s in fronts]
    totals = torch.tensor([[m * s for m, s in fronts] + [0.0]], dtype=torch.float64)
    counts = torch.tensor([sizes + [0]], dtype=torch.float64)
    got = _pooled_front_values(totals, counts)[0, : len(fronts)].tolist()
    assert got == pytest.approx(brute_force_pooling(means, sizes), abs=1e-9)


vectors = st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1)), min_size=2, max_size=8)


@settings(max_examples=80, deadline=None)
@given(group=vectors, w_task=st.floats(0.0, 1.0), beta=st.floats(0.05, 1.0))
def test_calibrated_rank_never_scores_a_worse_front_higher(group, w_task, beta):
    rewards = np.array(group)
    advantages = compute_advantages("calibrated_rank", rewards, len(group), weights=(w_task, 1 - w_task),
                                    beta=beta).advantages
    ranks = pareto_ranks(rewards)
    better = ranks[:, None] < ranks[None, :]
    assert (advantages[:, None] >= advantages[None, :] - 1e-9)[better].all()
    assert abs(advantages.sum()) < 1e-9  # centred


def test_calibrated_rank_is_the_centred_weighted_sum_when_fronts_hold_one_vector():
    rewards = np.array([[1, 1.0], [1, math.exp(-0.5)], [0, 0.0], [1, 1.0], [0, 0.0], [1, math.exp(-1)]])
    weighted = rewards @ np.array([0.6, 0.4])
    advantages = compute_advantages("calibrated_rank", rewards, 6, weights=(0.6, 0.4)).advantages
    assert advantages == pytest.approx(weighted - weighted.mean(), abs=1e-12)


def test_calibrated_rank_keeps_ranks_for_non_dominated_trade_offs():
    """Without gating a wrong direct answer (0, 1) and a right call (1, e^-0.5) are one front: they
    share its mean (plus the beta tie-break), where the weighted sum would put the call far above."""
    rewards = np.array([[1.0, 1.0], [1.0, math.exp(-0.5)], [0.0, 1.0], [0.0, math.exp(-0.5)]])
    advantages = compute_advantages("calibrated_rank", rewards, 4, weights=(0.6, 0.4), beta=0.5).advantages
    weighted = rewards @ np.array([0.6, 0.4])
    assert advantages[1] - advantages[2] < weighted[1] - weighted[2]
    assert advantages[0] > advantages[1] > advantages[2] > advantages[3]


def test_the_calibrated_preset_trains_with_it():
    assert "calibrated_rank" in PRESETS
    assert ParetoPOConfig.from_preset("calibrated_rank").stage2_estimator == "calibrated_rank"


def test_redundant_second_call():
    """One call against two (n* = 1): ranks and the calibrated estimator push the second call out
    at equal accuracy, accuracy-only GRPO does not care."""
    config = ParetoPOConfig()
    for name in ("pareto_rank", "calibrated_rank", "fixed_weight"):
        assert GambleMap(name, config, calls=(1, 2), nstar=1).gap(0.99, c=0.99)[0] > 0
    assert abs(GambleMap("torl_grpo", config, calls=(1, 2), nstar=1).gap(0.99, c=0.99)[0]) < 1e-12


def test_nstar_learnt_from_the_group_alone():
    """With no earlier right answer, a group whose only right answers are calls sets n* = 1, so a
    right call is then fully efficient: the map must use the group's own n*, row by row."""
    learnt = GambleMap("fixed_weight", ParetoPOConfig(), nstar=None)
    fixed = GambleMap("fixed_weight", ParetoPOConfig(), nstar=0)
    assert learnt.gap(0.1, c=0.99)[0] < fixed.gap(0.1, c=0.99)[0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"estimator": "nope"}, "unknown advantage estimator"),
    ({"group_size": 1}, "group size"),
    ({"calls": (1, 1)}, "two different"),
    ({"nstar": -1}, "nstar"),
])
def test_bad_input_says_what_to_change(kwargs, message):
    arguments = {"estimator": "pareto_rank", **kwargs}
    with pytest.raises(ValueError, match=message):
        GambleMap(arguments.pop("estimator"), ParetoPOConfig(), **arguments)
    with pytest.raises(ValueError, match="probability"):
        GambleMap("pareto_rank", ParetoPOConfig()).gap(0.5, c=1.5)
    with pytest.raises(ValueError, match="task, tool_efficiency"):
        GambleMap("pareto_rank", ParetoPOConfig(objectives=("task", "tool_efficiency", "brevity"),
                                                weights=(0.5, 0.3, 0.2)))


def test_gamble_map_command_prints_the_table_and_writes_the_chart(tmp_path, capsys):
    from paretopo.commands.cli import main

    chart = tmp_path / "gamble.svg"
    assert main(["gamble-map", "--q", "0.5", "--estimators", "pareto_rank", "calibrated_rank", "weighted_sum",
                 "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "0.497" in out and out.count("0.834") == 4  # calibrated and weighted sum, both columns
    assert chart.read_text().lstrip().startswith("<svg")


def test_gamble_map_command_reads_the_method_options(capsys):
    from paretopo.commands.cli import main

    assert main(["gamble-map", "--q", "0.5", "--estimators", "weighted_sum", "--weights", "0.8,0.2", "--alpha", "1",
                 "--c", "1"]) == 0
    assert f"{0.8 + 0.2 * math.exp(-1):.3f}" in capsys.readouterr().out


@pytest.mark.parametrize("arguments", [["--c", "1.5"], ["--q", "0.5", "2"], ["--chart", "gamble.txt"],
                                       ["--estimators", "nope"], ["--weights", "a,b"], ["--nstar", "x"],
                                       ["--G", "1"], ["--weights", "0.5,0.3,0.2"]])
def test_gamble_map_bad_input_is_one_line_and_exit_2(arguments, capsys):
    from paretopo.commands.cli import main

    assert main(["gamble-map", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("paretopo gamble-map:") and "\n" not in error and "Traceback" not in error
