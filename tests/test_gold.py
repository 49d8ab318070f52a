"""The gold-standard scores against hand computations and a slow, direct implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forgetkit.metrics import gold

# --------------------------------------------------------------------------- reference


def _rates_eps(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Per threshold: inf for a perfect split, NaN where one rate is 0, else the DP bound."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.maximum(0.0, np.nanmax(np.stack([a, b]), axis=0))
    eps = np.where(fpr * fnr == 0, np.nan, eps)
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def slow_epsilon(u: np.ndarray, r: np.ndarray, delta: float = gold.DELTA) -> np.ndarray:
    """The challenge's per-example epsilon, one example and one threshold at a time."""
    eps = []
    for i in range(u.shape[1]):
        pos, neg = (r[:, i], u[:, i]) if np.median(r[:, i]) > np.median(u[:, i]) else (
            u[:, i], r[:, i])  # fmt: skip
        dp, dn = np.ptp(pos), np.ptp(neg)
        if min(dp, dn) / max(dp, dn) < 0.01:
            eps.append(gold.EPSILON_CAP)
            continue
        every = np.concatenate([pos, neg])
        lo, hi = every.min(), every.max()
        single = np.linspace(lo, hi, math.ceil((hi - lo) * 100))
        fpr = np.array([(neg >= t).mean() for t in single])
        fnr = np.array([(pos < t).mean() for t in single])
        cands = [_rates_eps(fpr, fnr, delta)]
        p, q = (neg, pos) if dp >= dn else (pos, neg)
        w = min(dp, dn)
        rights = np.linspace(p.min() + w - 2, p.max() + 2, math.ceil((p.max() + 4 - p.min()) * 100))
        for right in rights:
            lefts = np.linspace(right - w - 2, right - w + 2, 400)
            inside_p = ((lefts[:, None] <= p) & (p <= right)).mean(1)
            inside_q = ((lefts[:, None] <= q) & (q <= right)).mean(1)
            cands.append(_rates_eps(inside_q, 1 - inside_p, delta))
        eps.append(np.nanmax(np.concatenate(cands)))
    return np.clip(np.array(eps), 0, gold.EPSILON_CAP)


# --------------------------------------------------------------------------- the statistic


def test_logit_margin_is_the_log_odds_of_the_true_class():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-3.0, 4.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    p = torch.softmax(logits.double(), 1)[torch.arange(3), labels]
    expected = torch.log(p) - torch.log1p(-p)
    np.testing.assert_allclose(gold.logit_margin(logits, labels), expected.numpy(), rtol=1e-12)


def test_logit_margin_does_not_saturate():
    logits = torch.tensor([[500.0, 0.0], [0.0, 500.0]])
    np.testing.assert_allclose(gold.logit_margin(logits, torch.tensor([0, 0])), [500.0, -500.0])


def test_logit_margin_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels span 0\.\.3"):
        gold.logit_margin(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_margins_of_models_on_samples():
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    m = gold.margins([model, model], (x, y))
    assert m.shape == (2, 5)
    np.testing.assert_allclose(m[0], gold.logit_margin(model(x).detach(), y), rtol=1e-6)


# --------------------------------------------------------------------------- epsilon


@pytest.mark.parametrize("shift", [0.0, 0.7, 2.5])
def test_epsilon_equals_the_direct_implementation(shift):
    rng = np.random.default_rng(int(shift * 10))
    u = rng.normal(size=(8, 3))
    r = rng.normal(size=(8, 3)) * 1.3 + shift
    np.testing.assert_allclose(gold.per_example_epsilon(u, r), slow_epsilon(u, r), atol=1e-9)


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(3)
    u, r = rng.normal(size=(10, 9)), rng.normal(size=(10, 9)) + 0.5
    whole = gold.per_example_epsilon(u, r)
    np.testing.assert_array_equal(gold.per_example_epsilon(u, r, budget=1), whole)


def test_identical_populations_score_near_the_noise_floor():
    rng = np.random.default_rng(0)
    u, r = rng.normal(size=(16, 40)), rng.normal(size=(16, 40))
    fq = gold.forget_quality(u, r)
    assert 1.0 < np.median(fq.epsilons) < math.log(15)  # the floor, not zero
    assert 0.1 < fq.quality < 0.3


def test_disjoint_populations_score_the_cap_and_no_points():
    rng = np.random.default_rng(1)
    u, r = rng.normal(size=(16, 5)), rng.normal(size=(16, 5)) + 100
    fq = gold.forget_quality(u, r)
    np.testing.assert_array_equal(fq.epsilons, gold.EPSILON_CAP)
    assert fq.quality == 0.0


def test_a_deterministic_method_scores_the_cap():
    rng = np.random.default_rng(2)
    u = np.repeat(rng.normal(size=(1, 4)), 16, axis=0)  # every run the same
    fq = gold.forget_quality(u, rng.normal(size=(16, 4)))
    np.testing.assert_array_equal(fq.epsilons, gold.EPSILON_CAP)


def test_bucket_points_by_hand():
    # N = 512: max_eps = ceil(ln 511) = 7, 14 buckets of width 0.5.
    eps = [0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0]
    expected = [1.0, 1.0, 0.5, 0.25, 2.0**-13, 0.0, 0.0]
    np.testing.assert_allclose(gold.bucket_points(eps, 512), expected)
    # N = 8: ceil(ln 7) = 2, four buckets.
    np.testing.assert_allclose(gold.bucket_points([1.9, 2.0], 8), [0.125, 0.0])


def test_score_scales_quality_by_the_accuracy_ratios():
    rng = np.random.default_rng(4)
    u, r = rng.normal(size=(8, 6)), rng.normal(size=(8, 6))
    fq = gold.forget_quality(u, r, retain_accuracy=([0.9, 0.9], [1.0, 1.0]),
                             test_accuracy=([0.8], [0.8]))  # fmt: skip
    assert fq.score == pytest.approx(fq.quality * 0.9)


@pytest.mark.parametrize(
    ("u", "r", "match"),
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), "unlearned needs at least 2 models"),
        (np.zeros((4, 3)), np.zeros((4, 2)), "unlearned covers 3 examples but retrained covers 2"),
        (np.zeros(4), np.zeros((4, 2)), r"unlearned must have shape \(models, examples\)"),
        (np.full((4, 2), np.nan), np.zeros((4, 2)), "unlearned holds NaN"),
    ],
)
def test_bad_populations_are_named(u, r, match):
    with pytest.raises(ValueError, match=match):
        gold.forget_quality(u, r)


# --------------------------------------------------------------------------- KLOM


def test_klom_of_identical_margins_is_zero():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(20, 7))
    np.testing.assert_allclose(gold.klom(m, m.copy()), 0.0, atol=1e-12)


def test_klom_by_hand():
    # One example; unlearned at {0, 0, 1, 1}, oracle at {0, 1, 1, 1}, two bins over [0, 1].
    u = np.array([[0.0], [0.0], [1.0], [1.0]])
    o = np.array([[0.0], [1.0], [1.0], [1.0]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert gold.klom(u, o, bins=2)[0] == pytest.approx(expected)


def test_klom_official_binning_drops_the_maximum():
    u = np.array([[0.0], [0.0], [1.0], [1.0]])
    o = np.array([[0.0], [1.0], [1.0], [1.0]])
    # Without the top edge, every value 1.0 is dropped: both put all mass in bin 1.
    assert gold.klom(u, o, bins=2, include_top_edge=False)[0] == pytest.approx(0.0)


def test_klom_of_disjoint_margins_saturates_near_log_one_over_eps():
    # All of p's mass sits where q is floored at eps: KL = ln(1/eps) - H(p).
    u = np.array([[0.0], [0.0], [1.0], [1.0]])
    o = np.array([[50.0], [50.0], [50.0], [50.0]])
    p = np.array([0.5, 0.5])
    expected = math.log(1 / 1e-5) + float((p * np.log(p)).sum())
    assert gold.klom(u, o, bins=100)[0] == pytest.approx(expected)


def test_distribution_summary():
    s = gold.distribution_summary(np.arange(1, 11, dtype=float))
    assert s["mean"] == 5.5 and s["worst_decile"] == 10.0
    assert s["p95"] == pytest.approx(np.percentile(np.arange(1, 11), 95))


def test_retrain_baseline_splits_the_pool():
    rng = np.random.default_rng(7)
    r = rng.normal(size=(20, 6))
    floor = gold.retrain_baseline(r, "klom")
    assert floor.shape == (6,) and (floor > 0).all()  # small-sample bias, not zero
    with pytest.raises(ValueError, match="score must be 'klom' or 'epsilon'"):
        gold.retrain_baseline(r, "auc")


# --------------------------------------------------------------------------- U-LiRA


def _shadow_runs(separation: float, k: int = 32, n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    forgotten = rng.random((k, n)) < 0.3
    out = ~forgotten & (rng.random((k, n)) < 0.6)
    base = rng.normal(size=n)
    values = base + rng.normal(scale=0.3, size=(k, n)) + separation * forgotten
    t_in = rng.random(n) < 0.5
    target = base + rng.normal(scale=0.3, size=n) + separation * t_in
    return values, forgotten, out, target, t_in, ~t_in


def test_ulira_detects_an_unlearner_that_leaves_a_trace():
    res = gold.ulira(*_shadow_runs(separation=3.0))
    assert res.accuracy > 0.95 and res.auc > 0.95


def test_ulira_cannot_tell_a_perfect_unlearner():
    res = gold.ulira(*_shadow_runs(separation=0.0), fix_variance=True)
    assert 0.3 < res.auc < 0.7


def test_ulira_rejects_an_example_both_in_and_out():
    values, fin, fout, target, tin, tout = _shadow_runs(1.0)
    fout[0, 0], fin[0, 0] = True, True
    with pytest.raises(ValueError, match="both forgotten and never trained on"):
        gold.ulira(values, fin, fout, target, tin, tout)
