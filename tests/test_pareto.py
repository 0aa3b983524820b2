import itertools

import moocore
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paretopo.core.pareto import dominance_matrix, dominates, nondominated_mask, pareto_ranks


def brute_force_ranks(group: np.ndarray) -> np.ndarray:
    """Textbook definition: peel the set of points no remaining point dominates."""
    remaining = set(range(len(group)))
    ranks = np.zeros(len(group), dtype=np.int64)
    rank = 1
    while remaining:
        front = [
            i for i in remaining
            if not any(np.all(group[j] >= group[i]) and np.any(group[j] > group[i]) for j in remaining)
        ]
        ranks[front] = rank
        remaining -= set(front)
        rank += 1
    return ranks


# discrete values make ties and duplicates common, as with LLM rewards
discrete_groups = st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 4)).flatmap(
    lambda s: arrays(np.float64, s, elements=st.sampled_from([0.0, 0.25, 0.37, 0.5, 1.0]))
)
continuous_groups = st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 3)).flatmap(
    lambda s: arrays(np.float64, s, elements=st.floats(-5, 5, allow_nan=False, width=32))
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(discrete_groups, continuous_groups))
def test_ranks_match_brute_force_and_moocore(batch):
    ranks = pareto_ranks(batch)
    assert ranks.shape == batch.shape[:2] and ranks.dtype == np.int64
    for group, got in zip(batch, ranks, strict=True):
        np.testing.assert_array_equal(got, brute_force_ranks(group))
        np.testing.assert_array_equal(got, moocore.pareto_rank(group, maximise=True) + 1)


@pytest.mark.parametrize("shape", [(32, 8, 2), (512, 16, 2), (17, 64, 3), (3, 65, 2), (2, 130, 3), (40, 5, 4)])
def test_large_batches_match_moocore(shape):
    rng = np.random.default_rng(sum(shape))
    for x in (rng.random(shape), rng.integers(0, 4, shape) / 3.0):
        expected = np.stack([moocore.pareto_rank(g, maximise=True) + 1 for g in x])
        np.testing.assert_array_equal(pareto_ranks(x), expected)
        np.testing.assert_array_equal(pareto_ranks(torch.from_numpy(x.astype(np.float32))).numpy(), expected)


def test_duplicates_share_a_rank_and_do_not_dominate():
    x = np.array([[1.0, 0.5], [1.0, 0.5], [0.0, 0.0]])
    np.testing.assert_array_equal(pareto_ranks(x), [1, 1, 2])
    assert not dominates(x[0], x[1])
    np.testing.assert_array_equal(nondominated_mask(x), [True, True, False])


def test_method_spec_worked_example_fronts():
    x = np.array([[1, 1.0], [1, 0.37], [0, 1.0], [0, 0.37], [1, 0.37]])
    np.testing.assert_array_equal(pareto_ranks(x), [1, 2, 2, 3, 2])


def test_keeps_array_type_dtype_and_leading_dims():
    x = torch.rand(2, 3, 5, 2)
    ranks = pareto_ranks(x)
    assert isinstance(ranks, torch.Tensor) and ranks.shape == (2, 3, 5) and ranks.dtype == torch.int64
    assert isinstance(pareto_ranks(x.numpy()), np.ndarray)
    assert pareto_ranks(x.to(torch.bfloat16)).shape == (2, 3, 5)
    np.testing.assert_array_equal(pareto_ranks([[1, 2], [2, 1], [0, 0]]), [1, 1, 2])  # lists and ints


def test_group_order_does_not_change_a_groups_ranks():
    x = np.random.default_rng(0).integers(0, 3, (20, 8, 2)).astype(float)
    permutation = np.random.default_rng(1).permutation(20)
    np.testing.assert_array_equal(pareto_ranks(x[permutation]), pareto_ranks(x)[permutation])


def test_nondominated_mask_and_dominance_matrix_agree_with_definition():
    x = np.random.default_rng(2).integers(0, 3, (6, 7, 3)).astype(float)
    d = dominance_matrix(x)
    for b, i, j in itertools.product(range(6), range(7), range(7)):
        assert d[b, i, j] == (np.all(x[b, j] >= x[b, i]) and np.any(x[b, j] > x[b, i]))
    np.testing.assert_array_equal(nondominated_mask(x), pareto_ranks(x) == 1)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (np.zeros((3, 0, 2)), "empty group"),
        (np.zeros((3, 2, 0)), "no objectives"),
        (np.zeros(3), r"\[\.\.\., G, M\]"),
        (np.array([[np.inf, 0.0]]), "NaN or infinity"),
    ],
)
def test_bad_input_raises_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        pareto_ranks(bad)


def test_single_completion_groups_have_rank_one():
    np.testing.assert_array_equal(pareto_ranks(np.random.rand(4, 1, 2)), np.ones((4, 1)))


@pytest.mark.gpu
def test_cuda_tensors_stay_on_device():
    x = torch.rand(64, 16, 2, device="cuda")
    ranks = pareto_ranks(x)
    assert ranks.device.type == "cuda"
    np.testing.assert_array_equal(ranks.cpu().numpy(), pareto_ranks(x.cpu().numpy()))
