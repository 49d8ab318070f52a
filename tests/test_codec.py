"""CODEC and FOCI: the coefficient's known properties and agreement with the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import forgetkit.codec as codec_module
from forgetkit.codec import (
    _candidate_nearest,
    _sq_dists,
    codec,
    codec_all,
    codec_reference,
    foci,
    foci_reference,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_independent_variables_give_a_coefficient_near_zero():
    rng = _rng(1)
    values = [codec(rng.normal(size=2000), rng.normal(size=2000), generator=_gen(s))
              for s in range(3)]  # fmt: skip
    assert all(abs(v) < 0.08 for v in values), values


def test_a_measurable_function_gives_a_coefficient_near_one():
    rng = _rng(2)
    z = rng.uniform(-3, 3, size=(2000, 2))
    y = np.sin(2 * z[:, 0]) + z[:, 1] ** 2  # not monotone: correlation would miss it
    assert codec(y, z) > 0.85
    assert codec(y, z[:, :1]) < 0.6  # half of the function is missing


def test_invariant_to_strictly_increasing_transforms_of_y_and_to_scaling_z():
    rng = _rng(3)
    z = rng.normal(size=(500, 2))
    y = z[:, 0] + 0.5 * rng.normal(size=500)
    base = codec(y, z, jitter=0)
    assert codec(np.exp(3 * y) + 7, z, jitter=0) == base
    assert codec(y, 10 * z - 4, jitter=0) == pytest.approx(base, abs=1e-12)
    x = rng.normal(size=500)
    cond = codec(y, z[:, :1], x, jitter=0)
    assert codec(np.arctan(y), z[:, :1], x, jitter=0) == cond


def test_conditional_coefficient_sees_through_a_confounder():
    rng = _rng(4)
    x = rng.normal(size=1500)
    z = x + 0.1 * rng.normal(size=1500)  # z only echoes x
    y = x + 0.1 * rng.normal(size=1500)
    assert codec(y, z) > 0.5  # dependent marginally
    assert abs(codec(y, z, x)) < 0.1  # but not once x is known
    w = rng.normal(size=1500)
    y2 = x + w
    assert codec(y2, w, x) > 0.5  # w matters given x


@pytest.mark.parametrize("conditional", [False, True])
def test_vectorised_coefficient_matches_the_definition(conditional):
    rng = _rng(5)
    n, p = 60, 5
    z = rng.normal(size=(n, p))
    x = rng.normal(size=(n, 2)) if conditional else None
    y = z[:, 0] - z[:, 1] ** 2 + (x[:, 0] if conditional else 0) + 0.3 * rng.normal(size=n)
    fast = codec_all(y, z, x, jitter=0).numpy()
    slow = [codec_reference(y, z[:, j], x) for j in range(p)]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    np.testing.assert_allclose(codec(y, z[:, 2], x, jitter=0), slow[2], rtol=0, atol=1e-12)


def test_ties_are_counted_exactly_in_the_ranks():
    y = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 0.5])
    z = np.arange(8.0) ** 1.5
    assert codec(y, z, jitter=0) == pytest.approx(codec_reference(y, z), abs=1e-12)


def test_chunking_does_not_change_the_numbers():
    rng = _rng(6)
    z = rng.normal(size=(80, 9))
    y = z[:, 3] + 0.2 * rng.normal(size=80)
    whole = codec_all(y, z, z[:, :2], generator=_gen(1))
    chunked = codec_all(y, z, z[:, :2], generator=_gen(1), chunk_elements=80 * 80)
    assert torch.equal(whole, chunked)


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("integer", [True, False])
def test_prefix_search_matches_the_full_search(dims, integer):
    """The neighbours found from nearest-in-X prefixes (with fallbacks) are those of the full
    (n, n) search of every candidate, lowest index on a tie."""
    rng = _rng(12 + dims)
    n, p = 120, 6
    if integer:  # few distinct values: exact ties in X, in Z and in the joint distances
        levels = 40 if dims == 1 else 5  # a few samples per grid point
        x = torch.as_tensor(rng.integers(0, levels, size=(n, dims)), dtype=torch.float64)
        z = torch.as_tensor(rng.integers(0, 3, size=(n, p)), dtype=torch.float64)
    else:
        x = torch.as_tensor(rng.normal(size=(n, dims)))
        z = torch.as_tensor(rng.normal(size=(n, p)))
    base = _sq_dists(x)
    d2 = (z.T[:, :, None] - z.T[:, None, :]) ** 2 + base
    d2.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    want = d2.argmin(-1)
    k = 4
    masked = base + torch.diag(torch.full((n,), float("inf"), dtype=torch.float64))
    beyond = torch.sort(masked, dim=1).values[:, k]  # the closest sample outside the prefix
    nearest = d2.min(-1).values
    assert bool((nearest >= beyond).any()), "the data must send some rows past the prefix"
    assert bool((nearest < beyond).any()), "and the prefix must settle others"
    if integer:
        ties = (d2 == nearest[..., None]).sum(-1)
        assert bool((ties > 1).any()), "the data must hold tied nearest neighbours"
    for sizes in [(k,), (k, 16), (2, k, 64), (200,), ()]:
        for chunk in (n * 7, 2**20):
            got = _candidate_nearest(z, base, chunk, sizes)
            assert torch.equal(got, want), (sizes, chunk)
    assert torch.equal(_candidate_nearest(z, base, 2**20), want)  # the default prefixes
    assert _candidate_nearest(z[:, :0], base, 2**20).shape == (0, n)


@pytest.mark.parametrize("integer", [True, False])
def test_foci_gives_the_full_search_selection_and_scores(integer, monkeypatch):
    rng = _rng(14)
    n = 150
    if integer:  # ties in the features, in y and in the joint distances
        x = rng.integers(0, 6, size=(n, 8)).astype(float)
        y = x[:, 1] + x[:, 4] * x[:, 6] + rng.integers(0, 2, size=n)
    else:
        x = rng.normal(size=(n, 8))
        y = x[:, 1] + x[:, 4] * x[:, 6] + 0.3 * rng.normal(size=n)
    fast = foci(y, x, jitter=0, early_stop=False, max_features=5)
    monkeypatch.setattr(codec_module, "PREFIX_SIZES", ())  # every row searched in full
    full = foci(y, x, jitter=0, early_stop=False, max_features=5)
    assert fast.selected == full.selected
    assert fast.scores == full.scores


def _structural_model(n: int, seed: int):
    """Y depends on columns 2 and 7 (its parents); column 5 is a child of Y; the rest is
    noise, with column 0 a noisy copy of parent 2."""
    rng = _rng(seed)
    x = rng.normal(size=(n, 10))
    x[:, 0] = x[:, 2] + 0.5 * rng.normal(size=n)
    y = np.tanh(x[:, 2]) + 0.7 * x[:, 7] ** 2 + 0.1 * rng.normal(size=n)
    x[:, 5] = y + 0.5 * rng.normal(size=n)
    return y, x


def test_foci_recovers_the_markov_blanket_of_a_structural_model():
    y, x = _structural_model(1500, seed=7)
    x[:, 5] = np.random.default_rng(8).normal(size=1500)  # no child: the blanket = parents
    result = foci(y, x, generator=_gen(0))
    assert sorted(result.selected) == [2, 7], result
    assert all(s > 0 for s in result.scores)


def test_foci_keeps_the_child_that_carries_information():
    y, x = _structural_model(1500, seed=9)
    result = foci(y, x, generator=_gen(0))
    assert {2, 7} <= set(result.selected) and 5 in result.selected
    assert 0 not in result.selected  # the copy of a parent adds nothing once it is known


def test_foci_matches_the_direct_implementation():
    y, x = _structural_model(70, seed=10)
    fast = foci(y, x, jitter=0)
    slow = foci_reference(y, x)
    assert fast.selected == slow.selected
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=0, atol=1e-12)
    full = foci(y, x, jitter=0, early_stop=False)
    assert len(full.selected) == 10 and sorted(full.selected) == list(range(10))
    assert foci(y, x, jitter=0, max_features=2).selected == slow.selected[:2]


def test_foci_is_reproducible_from_its_seed_and_breaks_ties():
    rng = _rng(11)
    y = rng.integers(0, 3, size=200).astype(float)  # heavy ties in y
    z = np.repeat(rng.integers(0, 4, size=(200, 1)), 6, axis=1).astype(float)  # tied columns
    a = foci(y, z, generator=_gen(3))
    b = foci(y, z, generator=_gen(3))
    assert a == b
    picks = {foci(y, z, generator=_gen(s)).selected[0] for s in range(12)}
    assert len(picks) > 1  # identical columns: the seed decides which one comes first


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="z has 4 samples but y has 5"):
        codec(np.arange(5.0), np.arange(4.0))
    with pytest.raises(ValueError, match="y must be one value per sample"):
        codec(np.ones((5, 2)), np.arange(5.0))
    with pytest.raises(ValueError, match="NaN"):
        foci(np.arange(5.0), np.array([[0.0], [1], [np.nan], [3], [4]]))
    with pytest.raises(ValueError, match="at least 3 samples"):
        codec(np.arange(2.0), np.arange(2.0))
    with pytest.raises(ValueError, match="max_features"):
        foci(np.arange(5.0), np.ones((5, 2)), max_features=0)
