import math

import numpy as np
import pytest

from paretopo.core.scalarize import (
    HVScalarizer,
    initial_state,
    meta_reward,
    smoothed_gain,
    stage1_update,
)


def test_meta_reward_formula_and_range():
    assert meta_reward(0.0) == 0.5
    assert meta_reward(0.2) == pytest.approx(0.5 + 1.5 * math.tanh(0.2))
    assert meta_reward(3.0) < 2.0 and meta_reward(50.0) <= 2.0  # tanh saturates to 1.0 in float64


def test_ema_sequence_by_hand():
    scalarizer = HVScalarizer(gamma=0.5)
    assert scalarizer.meta_reward == 1.0  # S5: 1 before the first outcome
    first = scalarizer.update([0.5, 0.5], step=1)  # gain .25
    assert first.hv_gain == pytest.approx(0.25) and first.ema_gain == pytest.approx(0.125)
    second = scalarizer.update([0.5, 0.5], step=2)  # no gain: EMA decays
    assert second.hv_gain == 0.0 and second.ema_gain == pytest.approx(0.0625) and not second.inserted
    third = scalarizer.update([1.0, 0.5], step=3)  # gain .25 (dominates the archive point)
    assert third.hv_gain == pytest.approx(0.25) and third.ema_gain == pytest.approx(0.15625)
    assert scalarizer.meta_reward == pytest.approx(meta_reward(0.15625))
    assert third.archive_size == 1 and third.hypervolume == pytest.approx(0.5)


def test_update_is_pure():
    state = initial_state(2)
    new_state, update = stage1_update(state, [0.4, 0.9], gamma=0.9)
    assert len(state.archive) == 0 and state.updates == 0  # input untouched
    assert len(new_state.archive) == 1 and new_state.updates == 1 and update.inserted


def test_switches():
    assert HVScalarizer(initial_meta_reward="formula").meta_reward == 0.5
    fixed = HVScalarizer(dynamic=False)
    fixed.update([0.9, 0.9])
    assert fixed.meta_reward == 1.0 and fixed.archive.hypervolume == pytest.approx(0.81)
    initial = HVScalarizer(reference="initial")
    first = initial.update([0.2, 0.3])
    assert first.set_reference and initial.archive.ref.tolist() == [0.2, 0.3]
    assert initial.update([0.4, 0.5]).hv_gain == pytest.approx(0.04)


def test_state_round_trip():
    scalarizer = HVScalarizer(gamma=0.8)
    for step, outcome in enumerate([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]]):
        scalarizer.update(outcome, step=step)
    restored = HVScalarizer()
    restored.load_state_dict(scalarizer.state_dict())
    assert restored.gamma == 0.8 and restored.meta_reward == scalarizer.meta_reward
    assert restored.state.ema_gain == scalarizer.state.ema_gain and restored.archive.is_close(scalarizer.archive)


def test_bad_input():
    with pytest.raises(ValueError, match="gamma"):
        smoothed_gain(0, 0, 1.0)
    with pytest.raises(ValueError, match="2 finite numbers"):
        HVScalarizer().update([0.5, np.nan])
    with pytest.raises(ValueError, match="reference"):
        HVScalarizer(reference="origin")
