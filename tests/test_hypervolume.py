import moocore
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paretopo.core.hypervolume import ParetoArchive, hv_contribution, hypervolume


def brute_force_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV by summing the cells of the grid spanned by all coordinates."""
    points = points[np.all(points > ref, axis=1)]
    if len(points) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([[r], points[:, k]])) for k, r in enumerate(ref)]
    total = 0.0
    for cell in np.ndindex(*[len(a) - 1 for a in axes]):
        upper = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        lower = np.array([axes[k][i] for k, i in enumerate(cell)])
        if np.any(np.all(points >= upper, axis=1)):
            total += float(np.prod(upper - lower))
    return total


def test_hand_worked_2d():
    # staircase (1, .5), (.5, 1): 1*.5 + .5*.5 = .75
    assert hypervolume([[1.0, 0.5], [0.5, 1.0]], ref=[0, 0]) == pytest.approx(0.75)
    # a dominated point, a duplicate and a point on the reference line add nothing
    assert hypervolume([[1.0, 0.5], [0.5, 1.0], [0.4, 0.4], [1.0, 0.5], [2.0, 0.0]], ref=[0, 0]) == pytest.approx(0.75)
    assert hypervolume(np.zeros((0, 2)), ref=[0, 0]) == 0.0


def test_hand_worked_3d():
    # two unit-ish boxes: (1,1,1) and (2,.5,.5): 1 + (2-1)*.5*.5 = 1.25
    assert hypervolume([[1, 1, 1], [2, 0.5, 0.5]], ref=[0, 0, 0]) == pytest.approx(1.25)
    assert hypervolume(torch.tensor([[1.0, 2.0, 3.0]]), ref=torch.zeros(3)) == pytest.approx(6.0)


point_sets = st.tuples(st.integers(0, 12), st.integers(2, 3)).flatmap(
    lambda s: arrays(np.float64, s, elements=st.sampled_from([-0.25, 0.0, 0.2, 0.37, 0.5, 0.8, 1.0]))
)


@settings(max_examples=150, deadline=None)
@given(point_sets)
def test_hv_matches_moocore_and_brute_force(points):
    ref = np.zeros(points.shape[1])
    expected = brute_force_hv(points, ref)
    assert hypervolume(points, ref) == pytest.approx(expected, abs=1e-12)
    if len(points):
        assert moocore.hypervolume(points, ref=ref, maximise=True) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(point_sets, st.integers(0, 2**31))
def test_contribution_is_exact_difference(points, seed):
    ref = np.zeros(points.shape[1])
    new = np.random.default_rng(seed).choice([0.0, 0.3, 0.5, 0.9, 1.2], size=points.shape[1])
    expected = hypervolume(np.vstack([points, new]), ref) - hypervolume(points, ref)
    assert hv_contribution(new, points, ref) == pytest.approx(expected, abs=1e-12)
    archive = ParetoArchive(ref)
    archive.insert(points)
    assert archive.contribution(new) == pytest.approx(expected, abs=1e-12)


def test_contribution_when_the_new_point_dominates_archive_members():
    archive = np.array([[0.5, 0.5], [0.8, 0.2]])
    # true gain: HV({(.6,.6),(.8,.2)}) - HV(archive) = .40 - .31 = .09
    assert hv_contribution([0.6, 0.6], archive, [0, 0]) == pytest.approx(0.09)
    # moocore's default ignores dominated points when measuring (the caveat in the issue)
    both = np.vstack([archive, [0.6, 0.6]])
    assert moocore.hv_contributions(both, ref=[0, 0], maximise=True)[-1] != pytest.approx(0.09)
    np.testing.assert_allclose(hv_contribution(np.array([[0.6, 0.6], [0.1, 0.1]]), archive, [0, 0]), [0.09, 0.0])


@settings(max_examples=100, deadline=None)
@given(point_sets)
def test_archive_matches_batch_nondominated_set(points):
    ref = np.zeros(points.shape[1])
    one_by_one, batched = ParetoArchive(ref), ParetoArchive(ref)
    for step, p in enumerate(points):
        one_by_one.insert(p, step=step)
    batched.insert(points)
    if len(points):
        expected = np.unique(points[moocore.is_nondominated(points, maximise=True)], axis=0)
    else:
        expected = np.zeros((0, points.shape[1]))
    for archive in (one_by_one, batched):
        np.testing.assert_array_equal(np.unique(archive.points, axis=0), expected)
        assert archive.hypervolume == pytest.approx(hypervolume(points, ref) if len(points) else 0.0, abs=1e-12)


def test_archive_records_steps_and_round_trips_exactly():
    archive = ParetoArchive([0.0, 0.0])
    assert archive.insert([0.5, 0.5], step=1) == 1
    assert archive.insert([0.4, 0.4], step=2) == 0  # dominated
    assert archive.insert([0.5, 0.5], step=3) == 0  # duplicate
    assert archive.insert([[0.9, 0.1], [0.6, 0.6]], step=4) == 2  # (.6,.6) removes (.5,.5)
    assert archive.points.tolist() == [[0.6, 0.6], [0.9, 0.1]] and archive.inserted_at.tolist() == [4, 4]
    restored = ParetoArchive.from_state_dict(archive.state_dict())
    assert restored.is_close(archive)
    with pytest.raises(ValueError, match="dominated or duplicate"):
        ParetoArchive.from_state_dict({"ref": [0, 0], "points": [[1, 1], [0.5, 0.5]], "inserted_at": [0, 0]})


def test_archive_in_three_dimensions():
    archive = ParetoArchive(np.zeros(3))
    archive.insert([[1, 1, 1], [2, 0.5, 0.5], [0.5, 0.5, 0.5]])
    assert len(archive) == 2 and archive.hypervolume == pytest.approx(1.25)
    assert archive.contribution([1, 1, 2]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hypervolume([[np.nan, 1.0]], [0, 0]), "NaN"),
        (lambda: hypervolume([[1.0, 1.0, 1.0]], [0, 0]), "3 objectives, expected 2"),
        (lambda: hypervolume([[1.0, 1.0]], [np.inf, 0]), "ref must be finite"),
        (lambda: ParetoArchive([0, 0]).contribution([[1, 1], [2, 2]]), "one point"),
        (lambda: ParetoArchive([0, 0]).load_state_dict({"points": []}), "missing"),
    ],
)
def test_bad_input_gives_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
