"""Advantage estimators: ``rewards [N, K]`` grouped by ``G`` -> ``advantages [N]``.

Rows ``[g*G:(g+1)*G]`` are one prompt's G completions (TRL's layout after gathering); column
``k`` is objective ``k``, maximised, ordered ``(task, tool_efficiency, ...)``. Every estimator
is a pure function of tensors (numpy in -> numpy out), vectorised over all groups, registered
in :data:`ESTIMATORS` under its method name together with the ``ParetoPOConfig`` fields it
reads, and looked up by :func:`get_estimator`, so adding an estimator is one function and one
:func:`register` decorator (in this file or any module imported before the config is built):

=================  =====================================================================
``torl_grpo``      group z-score of the task objective only (ToRL / Search-R1 GRPO)
``fixed_weight``   group z-score of ``w . r`` (static scalarisation)
``otc_grpo``       group z-score of ``alpha_otc * r_task * r_tool`` (OTC, multiplicative;
                   the preset computes ``r_tool`` in OTC's sin/cos form)
``mo_grpo``        sum over objectives of per-objective group z-scores (MO-GRPO)
``gdpo``           ``sum_k w_k z_k``, then re-standardised over the whole batch (GDPO /
                   TRL ``normalize_then_sum``)
``hv_scalarized``  ParetoPO stage 1: ``r_pareto * (w . r)``, centred per group and divided by
                   the group std (``normalization="group_std"``) or not (``"mean_only"``)
``pareto_rank``    ParetoPO stage 2, Eqs. 7-9: ``N_rank - rank + 1 + beta * (r_hat_w - 0.5)``
                   with optional centring ``none | group_mean | group_zscore``
=================  =====================================================================

and ``calibrated_rank`` (ours, beyond the paper): Pareto fronts spaced by their members' mean
``w . r`` instead of one unit, group-mean centred: the ranks' order with the weighted sum's
break-even in the direct-or-call gamble (``paretopo.core.gamble``).

Z-scores follow TRL: ``(x - group mean) / (group std + eps)`` with the Bessel-corrected std and
``eps = 1e-4``; a group of one has std 0. A group whose reward *vectors* are all identical is
degenerate: every estimator gives it zero advantage, and :func:`compute_advantages` reports
the fraction of such groups. Groups are never dropped because a *scalar* has zero variance
(equal weighted sums with different vectors are exactly where Pareto ranking still ranks).

The options an estimator interprets (``scale``, ``normalization``, ``center``) accept the values
of :data:`ZScoreScale`, :data:`Stage1Normalization` and :data:`Stage2Center`; the config's fields
and the command line take their choices from these types.

Example (a new estimator; ``reads`` maps its keywords to config fields, ``inputs`` names what
the trainer supplies at run time: ``meta_reward`` (stage 1's factor) and/or ``ranks``):

    >>> import numpy as np
    >>> @register("sign_of_task", reads={"eps": "advantage_eps"})
    ... def sign_of_task(rewards, group_size, *, eps=DEFAULT_EPS):
    ...     task = np.asarray(rewards, dtype=float)[:, 0].reshape(-1, group_size)
    ...     return np.sign(task - task.mean(axis=1, keepdims=True)).reshape(-1)
    >>> get_estimator("sign_of_task").reads
    {'eps': 'advantage_eps'}
    >>> get_estimator("sign_of_task")([[1.0, 0.5], [0.0, 1.0]], 2).tolist()
    [1.0, -1.0]
    >>> del ESTIMATORS["sign_of_task"]  # (only so that this example leaves the registry as it was)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import torch

from paretopo.core._arrays import like_input, require_finite, to_tensor
from paretopo.core.choices import Stage1Normalization, Stage2Center, ZScoreScale
from paretopo.core.pareto import pareto_ranks

__all__ = ["ADVANTAGES", "ESTIMATORS", "RUNTIME_INPUTS", "AdvantageResult", "EstimatorSpec", "Stage1Normalization",
           "Stage2Center", "ZScoreScale", "compute_advantages", "degenerate_groups", "estimator_options",
           "get_estimator", "register"]

Estimator = Callable[..., Any]
RUNTIME_INPUTS = ("meta_reward", "ranks")
"""What an estimator may ask for besides config fields: stage 1's meta reward, the batch's ranks."""




@dataclass(frozen=True)
class EstimatorSpec:
    """A registered estimator and what it reads; calling it calls the estimator.

    ``reads`` maps the estimator's keyword options to ``ParetoPOConfig`` field names;
    ``inputs`` are run-time values from :data:`RUNTIME_INPUTS`.
    """

    name: str
    function: Estimator
    reads: Mapping[str, str] = field(default_factory=dict)
    inputs: frozenset[str] = frozenset()

    def __call__(self, rewards: Any, group_size: int, **options: Any) -> Any:
        return self.function(rewards, group_size, **options)


ESTIMATORS: dict[str, EstimatorSpec] = {}
"""The registry: name -> :class:`EstimatorSpec`, in registration order (the order of every table and axis)."""
ADVANTAGES = ESTIMATORS  # the same dict under the name older code uses: ADVANTAGES[name](rewards, G, **options)
DEFAULT_EPS = 1e-4
# Within-rank ties: weighted sums closer than this count as equal (r_hat = 0.5), so that
# vectors with equal w.r up to float rounding are not split into 0 and 1.
TIE_TOLERANCE = 1e-9


def register(name: str, *, reads: Mapping[str, str] | None = None,
             inputs: Iterable[str] = ()) -> Callable[[Estimator], Estimator]:
    """Register an estimator ``f(rewards [N, K], group_size, **options) -> advantages [N]``.

    Args:
        name: the name configs use (``stage1_estimator`` / ``stage2_estimator``).
        reads: estimator keyword -> ``ParetoPOConfig`` field it takes its value from.
        inputs: run-time values it needs, from :data:`RUNTIME_INPUTS`.
    """
    needed = frozenset(inputs)
    if not needed <= set(RUNTIME_INPUTS):
        raise ValueError(f"estimator {name!r} asks for unknown run-time inputs {sorted(needed - set(RUNTIME_INPUTS))}; "
                         f"known: {list(RUNTIME_INPUTS)}")

    def decorator(function: Estimator) -> Estimator:
        if name in ESTIMATORS:
            raise RuntimeError(f"advantage estimator {name!r} is registered twice")
        ESTIMATORS[name] = EstimatorSpec(name, function, dict(reads or {}), needed)
        return function

    return decorator


def estimator_options(name: str, config: Any, *, meta_reward: float = 1.0) -> dict[str, Any]:
    """Keyword options of estimator ``name``: the config fields it declared, plus ``meta_reward``
    if it asked for it (``ranks`` are added by :func:`compute_advantages`)."""
    spec = get_estimator(name)
    options = {keyword: getattr(config, field_name) for keyword, field_name in spec.reads.items()}
    if "meta_reward" in spec.inputs:
        options["meta_reward"] = meta_reward
    return options


def get_estimator(name: str) -> EstimatorSpec:
    """The estimator registered under ``name`` (call it, or read what it ``reads``); unknown names
    fail with the known ones."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {sorted(ESTIMATORS)}") from None


def _check_choice(option: str, value: Any, choices: Any) -> None:
    """Fail on a value outside a ``Literal`` type's choices, naming them."""
    if value not in get_args(choices):
        raise ValueError(f"{option} must be one of {list(get_args(choices))}, got {value!r}")


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------


def _grouped(rewards: Any, group_size: int) -> tuple[torch.Tensor, bool]:
    """Validate ``rewards [N, K]`` and return it as float64 ``[B, G, K]`` plus the input kind."""
    tensor, was_numpy = to_tensor(rewards, name="rewards")
    if tensor.ndim == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 2:
        raise ValueError(f"rewards must have shape [N, K] (completions x objectives), got {tuple(tensor.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    n, k = tensor.shape
    if n == 0 or n % group_size:
        raise ValueError(
            f"rewards has {n} rows, which is not a positive multiple of group_size={group_size}; "
            "rows [g*G:(g+1)*G] must be one prompt's completions"
        )
    if k == 0:
        raise ValueError("rewards has no objective columns")
    tensor = tensor.to(torch.float64)
    require_finite(tensor, "rewards")
    return tensor.reshape(n // group_size, group_size, k), was_numpy


def _weights(weights: Sequence[float] | None, n_objectives: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        raise ValueError("this estimator needs weights=(w_task, w_tool, ...), one per objective")
    w = torch.as_tensor(list(weights), dtype=torch.float64, device=like.device)
    if w.ndim != 1 or w.numel() != n_objectives:
        raise ValueError(f"weights must have one entry per objective ({n_objectives}), got {list(weights)}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    return w


def _group_std(values: torch.Tensor) -> torch.Tensor:
    """Bessel-corrected std over the last axis; 0 for groups of one (not NaN)."""
    if values.shape[-1] < 2:
        return torch.zeros_like(values[..., :1])
    return values.std(dim=-1, keepdim=True, unbiased=True)


def group_zscore(values: torch.Tensor, *, eps: float = DEFAULT_EPS, scale: ZScoreScale = "group") -> torch.Tensor:
    """``(v - group mean) / (std + eps)`` for ``values [B, G]``.

    ``scale``: ``"group"`` (group std, GRPO), ``"batch"`` (std over all rows), ``"none"``
    (centring only, Dr.GRPO / TRL ``scale_rewards="none"``).
    """
    _check_choice("scale", scale, ZScoreScale)
    centred = values - values.mean(dim=-1, keepdim=True)
    if scale == "group":
        return centred / (_group_std(values) + eps)
    if scale == "batch":
        flat = values.reshape(-1)
        std = flat.std(unbiased=True) if flat.numel() > 1 else flat.new_zeros(())
        return centred / (std + eps)
    return centred  # "none"


def degenerate_groups(rewards: Any, group_size: int) -> Any:
    """``[B]`` mask of groups whose G reward vectors are all identical."""
    grouped, was_numpy = _grouped(rewards, group_size)
    return like_input(_degenerate(grouped), was_numpy)


def _degenerate(grouped: torch.Tensor) -> torch.Tensor:
    return (grouped == grouped[:, :1, :]).all(dim=-1).all(dim=-1)


def _finish(advantages: torch.Tensor, grouped: torch.Tensor, was_numpy: bool, dtype: torch.dtype) -> Any:
    """Zero degenerate groups, flatten to ``[N]``, and return in the caller's array type."""
    advantages = advantages.masked_fill(_degenerate(grouped)[:, None], 0.0).reshape(-1)
    out_dtype = dtype if dtype.is_floating_point else torch.float32
    return like_input(advantages.to(out_dtype), was_numpy)


def _input_dtype(rewards: Any) -> torch.dtype:
    return rewards.dtype if isinstance(rewards, torch.Tensor) else torch.float64


def _within_rank_score(scalar: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``scalar [B, G]`` min-max normalised among the completions of the same rank (0.5 on ties)."""
    n_groups, group_size = scalar.shape
    # min / max of w.r over each (group, rank) cell, all cells at once
    cell = (torch.arange(n_groups, device=scalar.device)[:, None] * group_size + rank - 1).reshape(-1)
    flat = scalar.reshape(-1)
    lowest = torch.full((n_groups * group_size,), float("inf"), dtype=flat.dtype, device=flat.device)
    highest = torch.full_like(lowest, float("-inf"))
    lowest = lowest.scatter_reduce(0, cell, flat, reduce="amin")
    highest = highest.scatter_reduce(0, cell, flat, reduce="amax")
    low, span = lowest[cell], highest[cell] - lowest[cell]
    tied = span <= TIE_TOLERANCE
    return torch.where(tied, 0.5, (flat - low) / torch.where(tied, 1.0, span)).reshape(n_groups, group_size)


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------

_EPS = {"eps": "advantage_eps"}
_SCALED = {**_EPS, "scale": "scale_rewards"}


@register("torl_grpo", reads=_SCALED)
def torl_grpo(rewards: Any, group_size: int, *, eps: float = DEFAULT_EPS, scale: str = "group",
              task_index: int = 0) -> Any:
    """GRPO on the task objective alone: z-score of column ``task_index`` within each group.

    ToRL's reward is +-1 and ours {0, 1}; a group z-score is the same for both (affine map).
    """
    grouped, was_numpy = _grouped(rewards, group_size)
    advantages = group_zscore(grouped[..., task_index], eps=eps, scale=scale)
    return _finish(advantages, grouped, was_numpy, _input_dtype(rewards))


@register("fixed_weight", reads={**_SCALED, "weights": "weights"})
def fixed_weight(rewards: Any, group_size: int, *, weights: Sequence[float] | None = None,
                 eps: float = DEFAULT_EPS, scale: str = "group") -> Any:
    """GRPO on the static scalarisation ``w . r``."""
    grouped, was_numpy = _grouped(rewards, group_size)
    scalar = grouped @ _weights(weights, grouped.shape[-1], grouped)
    return _finish(group_zscore(scalar, eps=eps, scale=scale), grouped, was_numpy, _input_dtype(rewards))


@register("otc_grpo", reads={**_SCALED, "otc_alpha": "otc_alpha"})
def otc_grpo(rewards: Any, group_size: int, *, otc_alpha: float = 1.0, eps: float = DEFAULT_EPS,
             scale: str = "group", task_index: int = 0, tool_index: int = 1) -> Any:
    """OTC-GRPO: z-score of ``otc_alpha * r_tool * r_task`` (a wrong answer earns 0)."""
    grouped, was_numpy = _grouped(rewards, group_size)
    if grouped.shape[-1] < 2:
        raise ValueError("otc_grpo needs a task column and a tool-efficiency column")
    scalar = otc_alpha * grouped[..., task_index] * grouped[..., tool_index]
    return _finish(group_zscore(scalar, eps=eps, scale=scale), grouped, was_numpy, _input_dtype(rewards))


@register("mo_grpo", reads=_EPS)
def mo_grpo(rewards: Any, group_size: int, *, eps: float = DEFAULT_EPS) -> Any:
    """MO-GRPO: unweighted sum of per-objective group z-scores (no second normalisation)."""
    grouped, was_numpy = _grouped(rewards, group_size)
    per_objective = group_zscore(grouped.transpose(1, 2), eps=eps).transpose(1, 2)  # [B, G, K]
    return _finish(per_objective.sum(dim=-1), grouped, was_numpy, _input_dtype(rewards))


@register("gdpo", reads={**_EPS, "weights": "weights"})
def gdpo(rewards: Any, group_size: int, *, weights: Sequence[float] | None = None,
         eps: float = DEFAULT_EPS) -> Any:
    """GDPO / TRL ``normalize_then_sum``: weighted per-objective z-scores, batch re-standardised."""
    grouped, was_numpy = _grouped(rewards, group_size)
    w = _weights(weights, grouped.shape[-1], grouped)
    per_objective = group_zscore(grouped.transpose(1, 2), eps=eps).transpose(1, 2)
    combined = per_objective @ w  # [B, G]
    flat = combined.reshape(-1)
    batch_std = flat.std(unbiased=True) if flat.numel() > 1 else flat.new_zeros(())
    advantages = (combined - flat.mean()) / (batch_std + eps)
    return _finish(advantages, grouped, was_numpy, _input_dtype(rewards))


@register("hv_scalarized", reads={**_EPS, "weights": "weights", "normalization": "stage1_adv_norm"}, inputs=("meta_reward",))
def hv_scalarized(rewards: Any, group_size: int, *, weights: Sequence[float] | None = None,
                  meta_reward: float = 1.0, normalization: Stage1Normalization = "group_std",
                  eps: float = DEFAULT_EPS) -> Any:
    """ParetoPO stage 1: ``r_pareto * (w . r)``, centred per group.

    With ``normalization="group_std"`` (faithful to "GRPO") the batch-wide factor ``r_pareto``
    cancels up to ``eps`` (docs/method.md, section 2); ``"mean_only"`` keeps its effect.
    """
    if not meta_reward > 0:
        raise ValueError(f"meta_reward must be > 0, got {meta_reward}")
    _check_choice("normalization", normalization, Stage1Normalization)
    grouped, was_numpy = _grouped(rewards, group_size)
    shaped = meta_reward * (grouped @ _weights(weights, grouped.shape[-1], grouped))
    advantages = group_zscore(shaped, eps=eps, scale="group" if normalization == "group_std" else "none")
    return _finish(advantages, grouped, was_numpy, _input_dtype(rewards))


@register("pareto_rank", reads={**_EPS, "weights": "weights", "beta": "beta", "center": "stage2_center"}, inputs=("ranks",))
def pareto_rank(rewards: Any, group_size: int, *, weights: Sequence[float] | None = None, beta: float = 0.5,
                center: Stage2Center = "none", eps: float = DEFAULT_EPS,
                ranks: Any = None) -> Any:
    """ParetoPO stage 2 (Eqs. 7-9): Pareto rank within the group, refined by ``w . r``.

    ``A = N_rank - rank + 1 + beta * (r_hat - 0.5)`` where ``r_hat`` is ``w . r`` min-max
    normalised among the completions of the same rank (0.5 when they all tie). With
    ``0 < beta <= 1`` no completion of a worse rank gets a higher advantage than one of a
    better rank. ``ranks`` may pass precomputed ``[N]`` ranks to avoid sorting twice.
    """
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1] so worse ranks never outscore better ones, got {beta}")
    _check_choice("center", center, Stage2Center)
    grouped, was_numpy = _grouped(rewards, group_size)
    n_groups = grouped.shape[0]
    if ranks is None:
        rank = pareto_ranks(grouped)
    else:
        rank, _ = to_tensor(ranks, name="ranks")
        rank = rank.to(device=grouped.device, dtype=torch.int64).reshape(n_groups, group_size)
    n_rank = rank.amax(dim=-1, keepdim=True)
    base = (n_rank - rank + 1).to(torch.float64)  # Eq. 7

    scalar = grouped @ _weights(weights, grouped.shape[-1], grouped)  # [B, G]
    advantages = base + beta * (_within_rank_score(scalar, rank) - 0.5)  # Eq. 9

    if center == "group_mean":
        advantages = advantages - advantages.mean(dim=-1, keepdim=True)
    elif center == "group_zscore":
        advantages = group_zscore(advantages, eps=eps)
    return _finish(advantages, grouped, was_numpy, _input_dtype(rewards))


@register("calibrated_rank", reads={"weights": "weights", "beta": "beta"}, inputs=("ranks",))
def calibrated_rank(rewards: Any, group_size: int, *, weights: Sequence[float] | None = None, beta: float = 0.5,
                    ranks: Any = None) -> Any:
    """Pareto fronts spaced by the weighted sum: the ranks decide the order, ``w . r`` the distances.

    ParetoPO's Eq. 7 spaces the fronts one unit apart whatever they hold, so a direct answer
    right half the time is worth a sure call (docs/method.md, "The gamble map"). Here front
    ``rho`` is worth its members' mean weighted sum ``v_rho``; where a worse front's mean would
    exceed a better one's (possible once objectives are not binary) the two are pooled (pool
    adjacent violators: the least-squares closest front values that never put a worse front
    above a better one, with the same group total). Non-dominated trade-offs (one front) share
    a value, broken as in Eq. 9 by ``beta * h * (r_hat - 0.5)``, ``h`` the smallest distance
    between neighbouring front values (the group's ``w . r`` range when there is one), so no
    completion passes one of a better front; pooled fronts get no tie-break. Then the group
    mean is subtracted, and nothing is divided (a group std would move the break-even).

    Why it is calibrated: when every front holds one reward vector (binary correctness with
    gating: right-direct, right-call, wrong), each completion gets exactly ``w . r`` minus the
    group mean, whose gap ``E[A | direct] - E[A | call]`` is ``(1 - 1/G)`` times the gap of the
    expected weighted sums (the other completions do not depend on the focal one's type), so
    its break-even p* is the weighted sum's (tests/test_gamble.py checks it exactly).
    """
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1] so worse ranks never outscore better ones, got {beta}")
    grouped, was_numpy = _grouped(rewards, group_size)
    if ranks is None:
        rank = pareto_ranks(grouped)
    else:
        rank, _ = to_tensor(ranks, name="ranks")
        rank = rank.to(device=grouped.device, dtype=torch.int64).reshape(grouped.shape[0], group_size)
    scalar = grouped @ _weights(weights, grouped.shape[-1], grouped)  # [B, G]
    if group_size == 1:  # every group of one is degenerate
        return _finish(torch.zeros_like(scalar), grouped, was_numpy, _input_dtype(rewards))
    front_of = torch.nn.functional.one_hot(rank - 1, group_size).to(scalar.dtype)  # [B, G, fronts]
    value = _pooled_front_values((front_of * scalar[..., None]).sum(1), front_of.sum(1))  # [B, fronts]
    n_rank = rank.amax(dim=-1, keepdim=True)
    present = torch.arange(group_size, device=rank.device)[None, :] < n_rank  # fronts 1..N_rank
    step = value[:, :-1] - value[:, 1:]  # >= 0 between neighbouring fronts
    real_step = (step > TIE_TOLERANCE) & present[:, 1:]
    smallest = torch.where(real_step, step, torch.inf).amin(dim=-1, keepdim=True)
    spread = scalar.amax(dim=-1, keepdim=True) - scalar.amin(dim=-1, keepdim=True)
    h = torch.where(torch.isinf(smallest), spread, smallest)
    tied_above = torch.cat([torch.zeros_like(step[:, :1], dtype=torch.bool), (step <= TIE_TOLERANCE)], -1)
    tied_below = torch.cat([(step <= TIE_TOLERANCE) & present[:, 1:], torch.zeros_like(step[:, :1], dtype=torch.bool)], -1)
    pooled = (tied_above | tied_below) & present & (n_rank > 1)  # [B, fronts]
    refine = beta * h * (_within_rank_score(scalar, rank) - 0.5)
    refine = torch.where(pooled.gather(1, rank - 1), 0.0, refine)
    advantages = value.gather(1, rank - 1) + refine
    advantages = advantages - advantages.mean(dim=-1, keepdim=True)
    return _finish(advantages, grouped, was_numpy, _input_dtype(rewards))


def _pooled_front_values(totals: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Non-increasing front values closest (least squares, weighted by size) to the front means.

    ``totals``, ``sizes``: ``[B, R]`` sum of ``w . r`` and count per front (empty fronts, after
    the last, have size 0). Isotonic regression by its min-max formula:
    ``v_i = min_{j <= i} max_{k >= i} mean(fronts j..k)`` (pool adjacent violators gives the same).
    """
    zero = torch.zeros_like(totals[:, :1])
    running_total = torch.cat([zero, totals.cumsum(-1)], -1)
    running_size = torch.cat([zero, sizes.cumsum(-1)], -1)
    span_total = running_total[:, None, 1:] - running_total[:, :-1, None]  # [B, j, k]: fronts j..k
    span_size = running_size[:, None, 1:] - running_size[:, :-1, None]
    mean = span_total / span_size.clamp(min=1e-300)
    fronts = totals.shape[1]
    values = []
    for i in range(fronts):  # at most G fronts
        best = mean[:, : i + 1, i:].masked_fill(span_size[:, : i + 1, i:] <= 0, -torch.inf).amax(-1)
        values.append(best.amin(-1))
    out = torch.stack(values, -1)
    return torch.where(torch.isfinite(out), out, 0.0)  # fronts past the last: unused


# --------------------------------------------------------------------------------------------
# one call for the trainer: advantages plus the diagnostics it logs
# --------------------------------------------------------------------------------------------


@dataclass
class AdvantageResult:
    """Advantages and per-completion diagnostics of one batch (all ``[N]`` unless noted)."""

    advantages: Any
    ranks: Any
    degenerate: Any  # [B] groups whose reward vectors are all identical
    metrics: dict[str, float]


def compute_advantages(name: str, rewards: Any, group_size: int, **options: Any) -> AdvantageResult:
    """Run estimator ``name`` and compute what the trainer logs about the batch.

    Metrics: ``pareto/frac_degenerate_groups``, ``pareto/frac_nondominated``,
    ``pareto/mean_fronts`` and ``pareto/rank_<r>`` (share of completions with rank r, r <= 4,
    then ``rank_5plus``).
    """
    estimator = get_estimator(name)
    grouped, was_numpy = _grouped(rewards, group_size)
    rank = pareto_ranks(grouped)  # [B, G]
    if "ranks" in estimator.inputs:
        options = {**options, "ranks": rank}
    advantages = estimator(rewards, group_size, **options)
    degenerate = _degenerate(grouped)
    rank_values = rank.reshape(-1)
    metrics = {
        "pareto/frac_degenerate_groups": float(degenerate.double().mean()),
        "pareto/frac_nondominated": float((rank_values == 1).double().mean()),
        "pareto/mean_fronts": float(rank.amax(dim=-1).double().mean()),
    }
    for r in range(1, 5):
        metrics[f"pareto/rank_{r}"] = float((rank_values == r).double().mean())
    metrics["pareto/rank_5plus"] = float((rank_values >= 5).double().mean())
    return AdvantageResult(
        advantages=advantages,
        ranks=like_input(rank_values, was_numpy),
        degenerate=like_input(degenerate, was_numpy),
        metrics=metrics,
    )
