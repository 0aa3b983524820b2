"""The method replayed for display: ranks, every estimator's advantages and stage 1, recomputed
from objective vectors by the core's own functions.

The apps and notebooks show what ParetoPO and the baselines *would* do with a group of objective
vectors (typed in, drawn at random, or rolled out live). Those numbers must be the training
numbers, so this module only arranges calls to ``paretopo.core`` (``pareto_ranks``, the estimator
registry with the options ``ParetoPOConfig`` gives each estimator, ``HVScalarizer``,
``score_completions``) into polars frames; it draws nothing (charts: ``paretopo.evaluation.plots``)
and it sits with the other users of the core in ``paretopo.evaluation``, not in the core, because
it speaks frames and column names rather than tensors. Column conventions follow the run log
(``paretopo.evaluation.runlog``): objectives are maximised, ranks are 1-based, completions are
numbered from 0 within their group.

Replays:

* :func:`ranked_group_frame`: objective vectors ``[N, M]`` -> one row per completion with its
  group, index and Pareto rank.
* :func:`estimator_advantages`: the advantage every registered estimator gives each completion
  (long format: one row per completion and estimator).
* :func:`stage1_history`: stage 1's archive, HV gain, EMA gain and meta reward as outcome
  vectors arrive.

Example groups to replay (the playground's sources): :func:`random_groups`,
:func:`llm_like_groups`, :func:`equal_sum_group`, :func:`same_sums_two_groups`.

Example:
    >>> import numpy as np
    >>> frame = ranked_group_frame(np.array([[1, 1.0], [1, .37], [0, 1.0], [0, .37]]), group_size=4)
    >>> frame["rank"].to_list()
    [1, 2, 2, 3]
    >>> advantages = estimator_advantages(np.array([[1, 1.0], [0, 1.0]]), 2, weights=(0.6, 0.4))
    >>> advantages.filter(estimator="torl_grpo")["advantage"].round(3).to_list()
    [0.707, -0.707]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from paretopo.core.advantages import ADVANTAGES
from paretopo.core.config import ParetoPOConfig
from paretopo.core.objectives import (
    DEFAULT_OBJECTIVES,
    OptimalCallTracker,
    score_completions,
    scoring_options,
)
from paretopo.core.pareto import pareto_ranks
from paretopo.core.scalarize import HVScalarizer

__all__ = [
    "ESTIMATOR_ORDER",
    "equal_sum_group",
    "estimator_advantages",
    "llm_like_groups",
    "objective_names",
    "random_groups",
    "ranked_group_frame",
    "same_sums_two_groups",
    "stage1_history",
]

ESTIMATOR_ORDER = tuple(ADVANTAGES)  # the order of paretopo.core.advantages' table, used on every axis


def objective_names(n_objectives: int) -> tuple[str, ...]:
    """Column names for ``n_objectives`` objectives: task, tool_efficiency, objective_3, ...

    Example:
        >>> objective_names(3)
        ('task', 'tool_efficiency', 'objective_3')
    """
    if n_objectives < 1:
        raise ValueError(f"need at least one objective, got {n_objectives}")
    extra = tuple(f"objective_{k + 1}" for k in range(len(DEFAULT_OBJECTIVES), n_objectives))
    return (DEFAULT_OBJECTIVES + extra)[:n_objectives]


def ranked_group_frame(rewards: Any, group_size: int, objectives: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per completion: ``group``, ``completion``, the objectives, ``rank``.

    Args:
        rewards: ``[N, M]`` objective vectors, maximised; rows ``[g*G:(g+1)*G]`` are group g.
        group_size: G.
        objectives: M column names (default :func:`objective_names`).
    """
    array = np.asarray(rewards, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] % group_size:
        raise ValueError(f"rewards must be [N, M] with N a multiple of group_size={group_size}, got {array.shape}")
    names = tuple(objectives or objective_names(array.shape[1]))
    ranks = np.asarray(pareto_ranks(array.reshape(-1, group_size, array.shape[1]))).reshape(-1)
    index = np.arange(array.shape[0])
    return pl.DataFrame({
        "group": index // group_size,
        "completion": index % group_size,
        **{name: array[:, k] for k, name in enumerate(names)},
        "rank": ranks,
    })


def estimator_advantages(rewards: Any, group_size: int, *, weights: Sequence[float], beta: float = 0.5,
                         meta_reward: float = 1.0) -> pl.DataFrame:
    """The advantage every estimator of :data:`paretopo.core.advantages.ADVANTAGES` gives each completion.

    Each estimator runs with the options it declares (``paretopo.core.advantages.register``) taken
    from ParetoPO's default config with the given ``weights`` and ``beta`` (``hv_scalarized``
    with ``meta_reward``), on the same objective columns (``otc_grpo`` multiplies columns 0 and
    1, whatever form of tool efficiency they hold).

    Returns:
        Long frame ``group, completion, estimator, advantage`` (one block of N rows per
        registered estimator, in :data:`ESTIMATOR_ORDER`, then any registered later).
    """
    array = np.asarray(rewards, dtype=np.float64)
    config = ParetoPOConfig(objectives=objective_names(array.shape[1]), weights=tuple(weights), beta=beta)
    index = np.arange(array.shape[0])
    frames = []
    for name in (*ESTIMATOR_ORDER, *(n for n in ADVANTAGES if n not in ESTIMATOR_ORDER)):
        values = ADVANTAGES[name](array, group_size, **config.options_for_estimator(name, meta_reward=meta_reward))
        frames.append(pl.DataFrame({
            "group": index // group_size, "completion": index % group_size,
            "estimator": [name] * len(index), "advantage": np.asarray(values, dtype=np.float64),
        }))
    return pl.concat(frames)


def stage1_history(outcomes: Any, *, gamma: float = 0.9, dynamic: bool = True) -> pl.DataFrame:
    """Replay stage 1 (Eqs. 5-6) over a sequence of 2-objective outcome vectors.

    Args:
        outcomes: ``[T, 2]`` mean objective vectors (task, tool efficiency), one per step.
        gamma: EMA smoothing of the HV gain.
        dynamic: False freezes the meta reward at 1 (the "w/o dynamic weighting" ablation).

    Returns:
        One row per step: ``step, task, tool_efficiency, hv_gain, ema_gain, meta_reward`` (the
        factor for the *next* step), ``hypervolume``, ``archive_size``, ``inserted`` and
        ``in_final_archive``.
    """
    array = np.asarray(outcomes, dtype=np.float64).reshape(-1, 2)
    scalarizer = HVScalarizer(2, gamma=gamma, dynamic=dynamic)
    rows = []
    for step, outcome in enumerate(array, start=1):
        update = scalarizer.update(outcome, step=step)
        rows.append({"step": step, "task": outcome[0], "tool_efficiency": outcome[1], "hv_gain": update.hv_gain,
                     "ema_gain": update.ema_gain, "meta_reward": update.meta_reward,
                     "hypervolume": update.hypervolume, "archive_size": update.archive_size,
                     "inserted": update.inserted})
    schema = {"step": pl.Int64, "task": pl.Float64, "tool_efficiency": pl.Float64, "hv_gain": pl.Float64,
              "ema_gain": pl.Float64, "meta_reward": pl.Float64, "hypervolume": pl.Float64,
              "archive_size": pl.Int64, "inserted": pl.Boolean}
    frame = pl.DataFrame(rows, schema=schema)
    archive = scalarizer.archive
    kept = set(np.asarray(archive.inserted_at).tolist()) if archive is not None and len(archive) else set()
    return frame.with_columns(pl.col("step").is_in(sorted(kept)).alias("in_final_archive"))


# --- example groups for the playground -------------------------------------------------------


def random_groups(n_groups: int, group_size: int, n_objectives: int, seed: int = 0) -> np.ndarray:
    """``[n_groups * G, M]`` objective vectors drawn uniformly from [0, 1], to 2 decimals."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n_groups * group_size, n_objectives)).round(2)


def llm_like_groups(n_groups: int, group_size: int, n_objectives: int, seed: int = 0, *,
                    p_correct: float = 0.5, max_calls: int = 3, alpha: float = 0.5) -> np.ndarray:
    """Discrete groups like a tool-using LLM's: task in {0, 1}, tool efficiency in {exp(-alpha k)}.

    Each completion is right with probability ``p_correct`` and makes 0..``max_calls`` tool calls;
    tool efficiency is ParetoPO's Eq. 4 against n* of its group (the fewest calls of a correct
    completion, 1 for everyone while none is correct), computed by the package exactly as in
    training. Objectives past the second are {0, 1} (e.g. a format check).
    """
    rng = np.random.default_rng(seed)
    n = n_groups * group_size
    correct = (rng.uniform(size=n) < p_correct).astype(np.float64)
    calls = rng.integers(0, max_calls + 1, size=n)
    ids = [f"q{i // group_size}" for i in range(n)]
    ungated = ParetoPOConfig(alpha=alpha, max_tool_calls=max(1, max_calls), gate_tool_by_correctness=False)
    vectors = score_completions(ids, correct, calls, OptimalCallTracker(), scoring_options(ungated))
    extra = (rng.uniform(size=(n, max(0, n_objectives - 2))) < 0.5).astype(np.float64)
    return np.concatenate([vectors, extra], axis=1)[:, :n_objectives]


def _iso_direction(weights: Sequence[float]) -> np.ndarray:
    """A direction along which ``w . r`` stays constant: (w2, -w1, 0, ...), not normalised, so that
    steps that are multiples of 0.01 keep weights of two decimals at short decimal values."""
    w = np.asarray(weights, dtype=np.float64)
    direction = np.zeros_like(w)
    direction[:2] = (w[1], -w[0])
    return direction


def _short_steps(values: np.ndarray) -> np.ndarray:
    """Steps along the iso-line truncated towards 0 to multiples of 0.01 (readable values, still feasible)."""
    return np.trunc(np.round(np.asarray(values) * 100, 9)) / 100


def _feasible_reach(point: np.ndarray, direction: np.ndarray) -> float:
    """Largest t >= 0 with ``point + s * direction`` in [0, 1]^M for every s in [-t, t]."""
    reach = math.inf
    for p, d in zip(point, direction, strict=True):
        if abs(d) > 0:
            reach = min(reach, p / abs(d), (1 - p) / abs(d))
    return 0.0 if math.isinf(reach) else reach


def equal_sum_group(weights: Sequence[float], group_size: int) -> np.ndarray:
    """One group whose G completions all have the same ``w . r`` but different vectors.

    The vectors lie on the line ``w . r = w . (0.5, ..., 0.5)`` through the centre of the unit
    box, spread evenly. With weights > 0 none dominates another (a gain in one objective is paid
    for in the other), so all are Pareto rank 1.
    """
    centre = np.full(len(weights), 0.5)
    direction = _iso_direction(weights)
    offsets = _short_steps(np.linspace(-1.0, 1.0, group_size) * 0.9 * _feasible_reach(centre, direction))
    # 12 decimals drop float noise (0.19999999999999998 -> 0.2) but keep the sums equal to ~1e-12,
    # far inside the estimators' tie tolerance and eps
    return (centre[None, :] + offsets[:, None] * direction[None, :]).round(12)


def same_sums_two_groups(weights: Sequence[float], group_size: int) -> np.ndarray:
    """Two groups with equal weighted sums completion by completion, but different vectors.

    Group 0 is a chain along the diagonal (each completion dominates the next, so ranks
    1, 2, ..., G); group 1 moves every vector of group 0 along its iso-line ``w . r = const``,
    alternately up-left and down-right, so the completions trade off and share fewer fronts.
    Scalarising estimators cannot tell the groups apart; Pareto ranks and per-objective
    z-scores can.
    """
    levels = np.linspace(0.85, 0.25, group_size).round(2)
    chain = np.repeat(levels[:, None], len(weights), axis=1)
    direction = _iso_direction(weights)
    signs = np.where(np.arange(group_size) % 2 == 0, 1.0, -1.0)
    moved = np.stack([point + sign * _short_steps(0.9 * _feasible_reach(point, direction)) * direction
                      for point, sign in zip(chain, signs, strict=True)])
    return np.concatenate([chain, moved]).round(12)
