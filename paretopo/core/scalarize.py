"""Stage 1 of ParetoPO: hypervolume-guided dynamic scalarisation (docs/method.md, section 2).

Per training step ``t`` an *outcome vector* ``v_t`` (mean objectives of the current policy,
on a held-out validation set or the training batch) is compared with a Pareto archive ``B``:

    gain_t   = HV(B + {v_t}) - HV(B)                     (exact contribution, >= 0)
    ema_t    = gamma * ema_{t-1} + (1 - gamma) * gain_t,  ema_0 = 0          (Eq. 5)
    r_pareto = 0.5 + 1.5 * tanh(ema_t)                    in [0.5, 2)         (Eq. 6)

and ``v_t`` joins the archive when ``gain_t > 0``. The meta reward computed after step ``t``
scales the weighted reward ``w . r`` at step ``t + 1``. Before the first update the meta reward
is 1 (``initial_meta_reward="one"``, as the dynamic-weighting code S5 does) or the formula's
value at ``ema = 0``, i.e. 0.5 (``"formula"``). With ``dynamic=False`` (the "w/o Dynamic
Weighting" ablation) the meta reward stays 1 while the archive still records progress.

The reference point is ``(0, ..., 0)`` (the nadir of [0, 1] objectives, default) or, with
``reference="initial"``, the first outcome vector (the initial model's), as S5 does: that
first update then only sets the reference.

The update is pure: :func:`stage1_update` returns a new :class:`Stage1State` and never mutates
its input. :class:`HVScalarizer` is the stateful convenience wrapper the trainer holds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from paretopo.core.choices import InitialMetaReward, Reference
from paretopo.core.hypervolume import ParetoArchive

__all__ = ["HVScalarizer", "Stage1State", "Stage1Update", "meta_reward", "smoothed_gain", "stage1_update"]


def smoothed_gain(previous: float, gain: float, gamma: float) -> float:
    """Eq. 5: exponential moving average of hypervolume gains."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    return gamma * previous + (1.0 - gamma) * gain


def meta_reward(ema_gain: float) -> float:
    """Eq. 6: ``0.5 + 1.5 * tanh(ema_gain)``, in [0.5, 2) for non-negative gains."""
    return 0.5 + 1.5 * math.tanh(ema_gain)


@dataclass(frozen=True)
class Stage1State:
    """Everything stage 1 carries between steps (restored exactly on resume)."""

    archive: ParetoArchive | None  # None until the reference point is known ("initial")
    ema_gain: float = 0.0
    meta_reward: float = 1.0
    updates: int = 0
    n_objectives: int = 2

    def state_dict(self) -> dict[str, Any]:
        return {
            "archive": None if self.archive is None else self.archive.state_dict(),
            "ema_gain": self.ema_gain,
            "meta_reward": self.meta_reward,
            "updates": self.updates,
            "n_objectives": self.n_objectives,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Stage1State:
        archive = None if state.get("archive") is None else ParetoArchive.from_state_dict(state["archive"])
        return cls(
            archive=archive,
            ema_gain=float(state["ema_gain"]),
            meta_reward=float(state["meta_reward"]),
            updates=int(state["updates"]),
            n_objectives=int(state["n_objectives"]),
        )


@dataclass(frozen=True)
class Stage1Update:
    """What one update measured (logged as ``weights/*`` and ``pareto/*`` metrics)."""

    outcome: tuple[float, ...]
    hv_gain: float
    ema_gain: float
    meta_reward: float
    hypervolume: float
    archive_size: int
    inserted: bool
    set_reference: bool = False


def initial_state(
    n_objectives: int = 2,
    *,
    reference: Reference = "nadir",
    initial_meta_reward: InitialMetaReward = "one",
) -> Stage1State:
    """The state before the first outcome arrives."""
    if initial_meta_reward not in get_args(InitialMetaReward):
        raise ValueError(f"initial_meta_reward must be one of {list(get_args(InitialMetaReward))}, "
                         f"got {initial_meta_reward!r}")
    if reference not in get_args(Reference):
        raise ValueError(f"reference must be one of {list(get_args(Reference))}, got {reference!r}")
    archive = ParetoArchive(np.zeros(n_objectives)) if reference == "nadir" else None
    start = 1.0 if initial_meta_reward == "one" else meta_reward(0.0)
    return Stage1State(archive=archive, meta_reward=start, n_objectives=n_objectives)


def stage1_update(
    state: Stage1State, outcome: Any, *, gamma: float, dynamic: bool = True, step: int = 0
) -> tuple[Stage1State, Stage1Update]:
    """One stage-1 step: measure the outcome's HV gain, smooth it, derive the next meta reward.

    Args:
        state: the current state (not modified).
        outcome: ``[M]`` mean objective vector of the current policy.
        gamma: EMA smoothing factor in [0, 1).
        dynamic: False freezes the meta reward at 1 (ablation "w/o Dynamic Weighting").
        step: training step, recorded in the archive.

    Returns:
        ``(new_state, update)``.
    """
    vector = np.asarray(outcome, dtype=np.float64).reshape(-1)
    if vector.size != state.n_objectives or not np.isfinite(vector).all():
        raise ValueError(f"outcome must be {state.n_objectives} finite numbers, got {vector.tolist()}")
    if state.archive is None:  # reference="initial": the first outcome becomes the reference point
        archive = ParetoArchive(vector)
        new_state = Stage1State(archive, state.ema_gain, state.meta_reward, state.updates + 1, state.n_objectives)
        return new_state, Stage1Update(
            tuple(vector.tolist()), 0.0, state.ema_gain, state.meta_reward, 0.0, 0, False, set_reference=True
        )
    archive = copy.deepcopy(state.archive)
    gain = archive.contribution(vector)
    ema = smoothed_gain(state.ema_gain, gain, gamma)
    inserted = gain > 0.0 and archive.insert(vector[None, :], step=step) == 1
    next_meta = meta_reward(ema) if dynamic else 1.0
    new_state = Stage1State(archive, ema, next_meta, state.updates + 1, state.n_objectives)
    update = Stage1Update(
        tuple(vector.tolist()), gain, ema, next_meta, archive.hypervolume, len(archive), bool(inserted)
    )
    return new_state, update


class HVScalarizer:
    """Stateful stage-1 helper: holds a :class:`Stage1State` and the settings to update it.

    Example:
        >>> scalarizer = HVScalarizer(gamma=0.9)
        >>> scalarizer.meta_reward
        1.0
        >>> update = scalarizer.update([0.5, 0.8])
        >>> round(update.hv_gain, 3), round(update.ema_gain, 3), round(scalarizer.meta_reward, 4)
        (0.4, 0.04, 0.56)
    """

    def __init__(
        self,
        n_objectives: int = 2,
        *,
        gamma: float = 0.9,
        dynamic: bool = True,
        reference: Reference = "nadir",
        initial_meta_reward: InitialMetaReward = "one",
    ):
        smoothed_gain(0.0, 0.0, gamma)  # validates gamma
        self.gamma = gamma
        self.dynamic = dynamic
        self.state = initial_state(n_objectives, reference=reference, initial_meta_reward=initial_meta_reward)
        if not dynamic:
            self.state = Stage1State(self.state.archive, 0.0, 1.0, 0, n_objectives)

    @property
    def meta_reward(self) -> float:
        """The factor applied to the weighted reward at the next step."""
        return self.state.meta_reward

    @property
    def archive(self) -> ParetoArchive | None:
        return self.state.archive

    def update(self, outcome: Any, step: int = 0) -> Stage1Update:
        self.state, update = stage1_update(self.state, outcome, gamma=self.gamma, dynamic=self.dynamic, step=step)
        return update

    def state_dict(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "dynamic": self.dynamic, "state": self.state.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "state" not in state:
            raise ValueError("scalarizer state needs a 'state' entry (what state_dict() returned)")
        self.gamma = float(state.get("gamma", self.gamma))
        self.dynamic = bool(state.get("dynamic", self.dynamic))
        self.state = Stage1State.from_state_dict(state["state"])
