"""The gamble map: which way an estimator pushes "answer directly or call the tool", exactly.

A question gets G completions. Each is, independently, of type **a** (``calls[0]`` tool calls,
by default 0: a direct answer) with probability ``q``, else of type **b** (``calls[1]`` calls,
by default 1); type a is right with probability ``p``, type b with probability ``c``. So every
completion falls in one of four cells: a-right, a-wrong, b-right, b-wrong. The objectives are
scored by :func:`paretopo.core.objectives.objective_matrix` with the config's scoring options
(efficiency form, alpha, gating) and the advantages by the *registered estimator itself*
(:func:`paretopo.core.advantages.compute_advantages`), so the map is the method's code, not a
model of it.

The **gap** is ``E[A | a completion is of type a] - E[A | it is of type b]``: a per-completion
expectation (pick a random completion of a random group; condition on its type). A group
holding ``n_a`` completions of type a counts ``n_a`` times, i.e. each composition of the group
is weighted by its multinomial probability times its count of that type. We compute it by
fixing the type and outcome of one completion (the "focal" one) and enumerating the
compositions of the other ``G - 1`` over the four cells, which gives the same expectation,
stays defined at ``q = 0`` or ``q = 1``, and needs the estimator once: the advantages of the
enumerated groups do not depend on ``p, c, q``, only their probabilities do, so a whole curve
costs one batched estimator call. The gap's sign is the direction of the policy-gradient push
on the choice between the two types (the choice's log-probability gradient is
``q (1 - q) * gap``); **p\\*** is where it changes sign: above it, direct answers are pushed up.

Fixed state, stated (the map is of one step, so a stateful estimator is frozen):

* **n\\*** (the optimal-call tracker): ``nstar`` is a fixed integer (default 0: a direct answer
  has been seen right before, the setting of docs/results.md), or ``None``: no earlier right
  answer, so the tracker learns from this group alone (the fewest calls among its right
  answers; unknown while none is right, then ``unknown_nstar`` decides), as in training.
* **stage 1's meta reward** (``hv_scalarized``): a fixed ``meta_reward`` (default 1.0; under
  ``group_std`` normalisation it cancels anyway).
* **batch-wide statistics** (``scale_rewards="batch"``; ``gdpo``'s re-standardisation): the
  batch is a large batch of this question's groups, so its mean and std are the expectation
  over the compositions (the Monte Carlo test samples such a batch). In training the batch
  mixes questions, which changes that positive scale, never the gap's sign or p\\*.

Example (ParetoPO's stage 2 with the defaults: gating on, weights (0.6, 0.4), G = 8):

    >>> from paretopo.core.config import ParetoPOConfig
    >>> gamble = GambleMap("pareto_rank", ParetoPOConfig(), group_size=8)
    >>> round(gamble.break_even(c=1.0, q=0.5).p_star, 4)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from paretopo.core.advantages import ESTIMATORS, compute_advantages
from paretopo.core.objectives import objective_matrix, scoring_options

__all__ = ["BATCH_STANDARDISED", "WEIGHTED_SUM", "BreakEven", "GambleMap", "agreement", "compositions",
           "direction_of_calls", "estimators_to_map", "gamble_table"]

CELLS = ("a_right", "a_wrong", "b_right", "b_wrong")
_CORRECT = np.array([1.0, 0.0, 1.0, 0.0])
_OF_TYPE_A = np.array([True, True, False, False])
WEIGHTED_SUM = "weighted_sum"
"""Pseudo-estimator name: the expected weighted sum ``w . r`` itself (the analytic reference)."""
BATCH_STANDARDISED = frozenset({"gdpo"})
"""Estimators that re-standardise their output over the whole batch (mean 0, std 1)."""
_GRID = np.linspace(0.0, 1.0, 201)
_ZERO = 1e-12  # |gap| below this counts as no push either way (float rounding of an exact 0)


def compositions(total: int, cells: int = 4) -> np.ndarray:
    """Every way to put ``total`` completions into ``cells`` cells: ``[n, cells]`` counts.

    Example:
        >>> compositions(2, 3).tolist()
        [[0, 0, 2], [0, 1, 1], [0, 2, 0], [1, 0, 1], [1, 1, 0], [2, 0, 0]]
    """
    if cells == 1:
        return np.array([[total]], dtype=np.int64)
    rows = [np.hstack([np.full((len(rest), 1), first), rest])
            for first in range(total + 1) for rest in [compositions(total - first, cells - 1)]]
    return np.vstack(rows)


@dataclass(frozen=True)
class BreakEven:
    """Where the gap changes sign on [0, 1].

    ``p_star``: the success probability of type a above which type a is pushed up (the first
    sign change from - to +), or None. ``verdict``: ``"p*"`` when there is one, else
    ``"always"`` (type a is pushed up for every p), ``"never"`` (type b for every p) or
    ``"mixed"`` (sign changes that do not go from - to +). ``roots``: every sign change.
    """

    p_star: float | None
    verdict: str
    roots: tuple[float, ...]

    def text(self, digits: int = 3) -> str:
        if self.p_star is not None:
            extra = "" if len(self.roots) == 1 else f" (sign changes at {', '.join(f'{r:.{digits}f}' for r in self.roots)})"
            return f"{self.p_star:.{digits}f}{extra}"
        return self.verdict


class GambleMap:
    """The exact gap of one estimator for one config, group size, call counts and n*.

    Args:
        estimator: a registered estimator name, or :data:`WEIGHTED_SUM` (the expected
            weighted sum, the reference every scalarising method aims at).
        config: a ``ParetoPOConfig`` (the estimator's registry options and the scoring
            options come from it); its objectives must be ``(task, tool_efficiency)``.
        group_size: G, completions per group (>= 2).
        calls: tool calls of type a and type b, default ``(0, 1)`` (direct vs one call);
            ``(1, 2)`` with ``nstar=1`` asks whether a redundant second call is removed.
        nstar: the fixed n* (an integer >= 0), or None (learnt from the group alone).
        meta_reward: stage 1's fixed meta reward (estimators that ask for it).
    """

    def __init__(self, estimator: str, config: Any, *, group_size: int = 8, calls: Sequence[int] = (0, 1),
                 nstar: int | None = 0, meta_reward: float = 1.0) -> None:
        if estimator != WEIGHTED_SUM and estimator not in ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {estimator!r}; choose one of "
                             f"{sorted(ESTIMATORS)} or {WEIGHTED_SUM!r}")
        if tuple(config.objectives) != ("task", "tool_efficiency"):
            raise ValueError(f"the gamble map scores (task, tool_efficiency); got objectives {tuple(config.objectives)}")
        if not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group size G must be an integer >= 2, got {group_size!r}")
        calls = tuple(int(m) for m in calls)
        if len(calls) != 2 or min(calls) < 0 or calls[0] == calls[1]:
            raise ValueError(f"calls must be two different counts >= 0 (type a, type b), got {calls}")
        if nstar is not None and (not isinstance(nstar, int) or nstar < 0):
            raise ValueError(f"nstar must be an integer >= 0 or None (learnt from the group), got {nstar!r}")
        self.estimator, self.config, self.group_size = estimator, config, group_size
        self.calls, self.nstar = calls, nstar
        self.options = {} if estimator == WEIGHTED_SUM else config.options_for_estimator(estimator, meta_reward)
        self.others = compositions(group_size - 1)  # [n_comp, 4]
        self._log_coefficient = math.lgamma(group_size) - np.array(
            [sum(math.lgamma(n + 1) for n in row) for row in self.others])  # multinomial, log
        cells = self._group_cells()  # [4 * n_comp, G], focal completion first
        self.rewards = self._objectives(cells)  # [4 * n_comp * G, 2]
        self._values = self._focal_values()  # per-point value functions of the focal completions

    # -- building the enumerated batch ----------------------------------------------------
    def _group_cells(self) -> np.ndarray:
        """Cell index of every completion of every enumerated group: the focal cell, then the others."""
        rest = np.stack([np.repeat(np.arange(4), counts) for counts in self.others])  # [n_comp, G - 1]
        focal = np.repeat(np.arange(4), len(self.others))[:, None]
        return np.hstack([focal, np.tile(rest, (4, 1))])

    def _objectives(self, cells: np.ndarray) -> np.ndarray:
        correct = _CORRECT[cells]
        calls = np.where(_OF_TYPE_A[cells], self.calls[0], self.calls[1]).astype(np.float64)
        if self.nstar is None:  # the tracker learns from this group before scoring it
            fewest = np.where(correct > 0, calls, np.inf).min(axis=1, keepdims=True)
            nstar = np.broadcast_to(np.where(np.isinf(fewest), np.nan, fewest), calls.shape)
        else:
            nstar = np.full(calls.shape, float(self.nstar))
        return objective_matrix(correct.reshape(-1), calls.reshape(-1), nstar.reshape(-1),
                                **scoring_options(self.config))

    def _advantages(self, **override: Any) -> np.ndarray:
        """The estimator on the enumerated batch; the focal completion's advantage ``[4, n_comp]``."""
        options = {**self.options, **override}
        group_size = options.pop("group_size", self.group_size)
        if self.estimator == WEIGHTED_SUM:
            flat = self.rewards @ np.asarray(self.config.weights)
        else:
            flat = np.asarray(compute_advantages(self.estimator, self.rewards, group_size, **options).advantages,
                              dtype=np.float64)
        return flat.reshape(4, len(self.others), self.group_size)[..., 0]

    def _focal_values(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``weights [P, 4, n_comp] -> (focal advantages, per-point divisor [P])``.

        Group-local estimators: the divisor is 1. Batch-wide statistics are taken over the
        large batch of this question's groups (the population under ``weights``).
        """
        if self.options.get("scale") == "batch":
            centred = self._advantages(scale="none")  # centred per group, not yet divided
            # one group of the whole batch, centring only: each row minus the batch mean
            raw = self._advantages(scale="none", group_size=self.rewards.shape[0])
            eps = self.options.get("eps", 0.0)
            return lambda w: (centred, _weighted_std(raw, w) + eps)
        advantages = self._advantages()
        if self.estimator in BATCH_STANDARDISED:
            return lambda w: (advantages, _weighted_std(advantages, w))
        self._require_group_local(advantages)
        return lambda w: (advantages, np.ones(w.shape[0]))

    def _require_group_local(self, advantages: np.ndarray) -> None:
        """Refuse an estimator that reads batch-wide statistics in a way this map does not model."""
        if self.estimator == WEIGHTED_SUM:
            return
        g, n_comp = self.group_size, len(self.others)
        first = (np.arange(4) * n_comp)[:, None] * g + np.arange(g)  # the first composition of each focal cell
        alone = compute_advantages(self.estimator, self.rewards[first.reshape(-1)], g, **self.options).advantages
        if not np.allclose(np.asarray(alone, dtype=np.float64).reshape(4, g)[:, 0], advantages[:, 0], atol=1e-9):
            raise ValueError(f"estimator {self.estimator!r} depends on the rest of the batch; add it to "
                             "paretopo.core.gamble.BATCH_STANDARDISED or teach GambleMap its statistics")

    # -- the gap --------------------------------------------------------------------------
    @staticmethod
    def cell_probabilities(p: np.ndarray, c: float, q: float) -> np.ndarray:
        """``[P, 4]``: P(a-right), P(a-wrong), P(b-right), P(b-wrong) of one completion."""
        return np.stack([q * p, q * (1 - p), np.full_like(p, (1 - q) * c), np.full_like(p, (1 - q) * (1 - c))], -1)

    def _others_probabilities(self, cell: np.ndarray) -> np.ndarray:
        """Multinomial probability of each composition of the other G - 1 completions: ``[P, n_comp]``."""
        powers = np.prod(cell[:, None, :] ** self.others[None, :, :], axis=-1)
        return np.exp(self._log_coefficient)[None, :] * powers

    def expected(self, p: Any, *, c: float = 0.99, q: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """``(E[A | type a], E[A | type b])`` for each p (arrays of p's shape)."""
        _check_probability("c", c)
        _check_probability("q", q)
        p = np.atleast_1d(np.asarray(p, dtype=np.float64))
        if not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
            raise ValueError("p must lie in [0, 1]")
        flat = p.reshape(-1)
        cell = self.cell_probabilities(flat, c, q)
        others = self._others_probabilities(cell)
        # a random completion: its cell, and the others' composition, independent of it
        values, divisor = self._values(cell[:, :, None] * others[:, None, :])
        by_cell = (others[:, None, :] * values[None]).sum(-1) / divisor[:, None]  # E[A | focal cell]
        a = flat * by_cell[:, 0] + (1 - flat) * by_cell[:, 1]
        b = c * by_cell[:, 2] + (1 - c) * by_cell[:, 3]
        return a.reshape(p.shape), b.reshape(p.shape)

    def gap(self, p: Any, *, c: float = 0.99, q: float = 0.5) -> np.ndarray:
        """``E[A | type a] - E[A | type b]`` for each p; > 0 pushes type a (direct answers) up."""
        a, b = self.expected(p, c=c, q=q)
        return a - b

    def break_even(self, *, c: float = 0.99, q: float = 0.5) -> BreakEven:
        """Sign changes of the gap on [0, 1]: a 201-point scan, then bisection to 1e-10."""
        values = self.gap(_GRID, c=c, q=q)
        signs = np.where(np.abs(values) < _ZERO, 0, np.sign(values))
        nonzero = np.flatnonzero(signs)
        if nonzero.size == 0:
            return BreakEven(None, "never", ())  # no push either way anywhere: nothing to gain
        roots, upward = [], []
        for left, right in zip(nonzero[:-1], nonzero[1:], strict=True):
            if signs[left] != signs[right]:
                roots.append(float(self._bisect(_GRID[left], _GRID[right], signs[left], c, q)))
                upward.append(signs[right] > 0)
        if not roots:
            return BreakEven(None, "always" if signs[nonzero[0]] > 0 else "never", ())
        first_up = next((root for root, up in zip(roots, upward, strict=True) if up), None)
        return BreakEven(first_up, "p*" if first_up is not None else "mixed", tuple(roots))

    def _bisect(self, low: float, high: float, low_sign: float, c: float, q: float) -> float:
        while high - low > 1e-10:
            middle = 0.5 * (low + high)
            value = float(self.gap(middle, c=c, q=q)[0])
            if abs(value) < _ZERO:
                return float(middle)
            if np.sign(value) == low_sign:
                low = middle
            else:
                high = middle
        return 0.5 * (low + high)


def _weighted_std(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Std of a random completion's value under ``weights [P, 4, n_comp]`` (summing to 1): ``[P]``."""
    mean = (weights * values[None]).sum(axis=(1, 2))
    square = (weights * values[None] ** 2).sum(axis=(1, 2))
    return np.sqrt(np.maximum(square - mean**2, 0.0))


def _check_probability(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def gamble_table(config: Any, estimators: Sequence[str], *, c: float = 0.99, shares: Sequence[float] = (0.2, 0.5, 0.8),
                 group_size: int = 8, nstar: int | None = 0, meta_reward: float = 1.0) -> list[dict[str, Any]]:
    """One row per estimator: p* (direct vs one call) at each share q, and p* of one call against
    a redundant second call (both n* = 1, the two-call answer right with probability c; q = 0.5).

    A p* of the second call below c means the estimator prefers one call even when it is a
    little less accurate than two, i.e. it removes a redundant second call.
    """
    rows = []
    for name in estimators:
        direct = GambleMap(name, config, group_size=group_size, calls=(0, 1), nstar=nstar, meta_reward=meta_reward)
        second = GambleMap(name, config, group_size=group_size, calls=(1, 2), nstar=1, meta_reward=meta_reward)
        rows.append({"estimator": name,
                     "direct_vs_call": {q: direct.break_even(c=c, q=q) for q in shares},
                     "one_vs_two_calls": second.break_even(c=c, q=0.5)})
    return rows


def estimators_to_map() -> list[str]:
    """Every registered estimator, then the weighted-sum reference."""
    return [*ESTIMATORS, WEIGHTED_SUM]



def direction_of_calls(mean_calls: float | None) -> str:
    """Where a policy ended on a kind of question, from its mean calls there: ``"direct"`` (below
    0.2), ``"call"`` (above 0.8), else ``"mixed"``; ``"-"`` when unknown. What a predicted push is
    compared with.

    >>> direction_of_calls(0.05), direction_of_calls(1.3), direction_of_calls(0.5)
    ('direct', 'call', 'mixed')
    """
    if mean_calls is None:
        return "-"
    return "direct" if mean_calls < 0.2 else "call" if mean_calls > 0.8 else "mixed"


def agreement(predicted: str, measured: str) -> str:
    """``"yes"`` / ``"no"`` when a predicted push (``"direct ..."`` or ``"call ..."``) meets a measured
    :func:`direction_of_calls`; ``"-"`` when either cannot be judged (``"depends on q"``, ``"n/a"``,
    ``"mixed"``).

    >>> agreement("call (no break-even)", "call"), agreement("direct", "call"), agreement("direct", "mixed")
    ('yes', 'no', '-')
    """
    guess = predicted.split()[0] if predicted else ""
    if guess not in ("direct", "call") or measured not in ("direct", "call"):
        return "-"
    return "yes" if guess == measured else "no"
