"""The gold-standard scores against hand computations and independent implementations
written from the official scorers' logic (google-deepmind/unlearning_evaluation @ ffae0ff,
``metric.py``; easydub/EasyDUB-code @ 5de3c4c, ``easydub/eval.py``), and the challenge
adapter on the challenge's own kind of loaders."""

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


def test_inverted_windows_count_nothing():
    # The official window family has left edges above the right edge (metric.py, line 90);
    # its indicator holds for no value there, never for a negative number of values.
    vals = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    lo = torch.tensor([[2.5, 0.5, 1.0]], dtype=torch.float64)
    hi = torch.tensor([[0.5, 2.5, 1.0]], dtype=torch.float64)
    assert gold._count_between(vals, lo, hi).tolist() == [[0, 2, 1]]


def test_equal_constant_populations_are_refused_as_the_official_code_asserts():
    # Spread 0/0 skips the guard; every threshold then has one rate 0 and is discarded: the
    # official code fails its assertion (metric.py, line 285). Counting inverted windows as
    # negative used to score this epsilon 0 and F = 1.
    c = np.full((8, 3), 1.5)
    with pytest.raises(ValueError, match="two equal constant populations"):
        gold.forget_quality(c, c.copy())


def test_each_capped_example_names_its_rule():
    rng = np.random.default_rng(9)
    n = 8
    spread = np.stack([rng.normal(size=n) * 1e-4, rng.normal(size=n)], 1)  # guard: < 1%
    separated = np.stack([rng.normal(size=n), rng.normal(size=n) + 50], 1)
    # Window: the unlearned values sit in a gap of the (overlapping, wider) retrained ones.
    gap_u = np.linspace(0.0, 0.5, n)
    gap_r = np.array([-5.0, -4.0, -3.0, -2.0, 2.0, 3.0, 4.0, 5.0])
    u = np.stack([spread[:, 0], separated[:, 0], gap_u, rng.normal(size=n)], 1)
    r = np.stack([spread[:, 1], separated[:, 1], gap_r, rng.normal(size=n)], 1)
    fq = gold.forget_quality(u, r)
    np.testing.assert_array_equal(fq.epsilons[:3], gold.EPSILON_CAP)
    assert fq.epsilons[3] < gold.EPSILON_CAP
    assert [gold.CAP_RULES[c - 1] if c else "" for c in fq.cap_rule] == [
        "spread", "separated", "window", ""]  # fmt: skip
    assert fq.cap_counts() == {"spread": 1, "separated": 1, "window": 1}
    np.testing.assert_allclose(fq.epsilons, slow_epsilon(u, r), atol=1e-9)


def test_bucket_count_follows_the_official_loop():
    for n in (3, 8, 9, 64, 512, 1000):  # metric.py, lines 327-339, run as written
        max_eps, start, count = math.ceil(math.log(n - 1)), 0.0, 0
        while start + 0.5 <= max_eps:
            count, start = count + 1, start + 0.5
        assert gold.bucket_count(n) == count
    assert (gold.bucket_count(512), gold.bucket_count(8), gold.bucket_count(64)) == (14, 4, 10)
    with pytest.raises(ValueError, match="n_models must be an integer >= 3"):
        gold.bucket_count(2)


@pytest.mark.parametrize(
    ("u", "r", "match"),
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), "unlearned needs at least 2 models"),
        (np.zeros((6, 3)), np.zeros((4, 3)), "unlearned has 6 models but retrained has 4"),
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
    # One example; unlearned at {0, 0.4, 0.6, 1}, oracle at {0, 0.1, 0.7, 0.9}; two bins
    # over [0, 1]. The published binning drops the joint maximum (1.0): p = (2/3, 1/3) over
    # three values, q = (1/2, 1/2).
    u = np.array([[0.0], [0.4], [0.6], [1.0]])
    o = np.array([[0.0], [0.1], [0.7], [0.9]])
    expected = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.5)
    assert gold.klom(u, o, bins=2)[0] == pytest.approx(expected)
    # Keeping the top edge counts 1.0 in the last bin: p = (1/2, 1/2) = q.
    assert gold.klom(u, o, bins=2, include_top_edge=True)[0] == pytest.approx(0.0)


def test_klom_official_binning_drops_the_maximum():
    u = np.array([[0.0], [0.0], [1.0], [1.0]])
    o = np.array([[0.0], [1.0], [1.0], [1.0]])
    # Without the top edge, every value 1.0 is dropped: both put all mass in bin 1.
    assert gold.klom(u, o, bins=2, include_top_edge=False)[0] == pytest.approx(0.0)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert gold.klom(u, o, bins=2, include_top_edge=True)[0] == pytest.approx(expected)


def _easydub_klom(p: np.ndarray, q: np.ndarray, bins: int = 20, eps: float = 1e-5) -> float:
    """One example's KLOM written from ``easydub/eval.py``'s ``binned_kl_divergence``
    (lines 24-47): clip, shared ``np.linspace`` edges, ``np.digitize``, bins 1..bins."""
    p, q = np.clip(p, -100.0, 100.0), np.clip(q, -100.0, 100.0)
    start, end = min(p.min(), q.min()), max(p.max(), q.max())
    if start >= end:
        end = start + 1.0
    edges = np.linspace(start, end, bins + 1)
    pc = np.array([np.sum(np.digitize(p, edges) == i) for i in range(1, bins + 1)])
    qc = np.array([np.sum(np.digitize(q, edges) == i) for i in range(1, bins + 1)])
    pp = pc / pc.sum() if pc.sum() > 0 else np.zeros(bins)
    qp = qc / qc.sum() if qc.sum() > 0 else np.zeros(bins)
    kept = pp > 0
    return float(np.sum(pp[kept] * np.log(pp[kept] / np.maximum(qp[kept], eps))))


@pytest.mark.parametrize("n_models", [4, 8, 37])
def test_klom_equals_the_published_binning_on_non_integer_data(n_models):
    rng = np.random.default_rng(n_models)
    u = rng.normal(size=(n_models, 400)) * rng.uniform(0.1, 30, size=400) + rng.normal(size=400)
    o = rng.standard_t(3, size=(n_models, 400)) * 5.3 - 0.7
    u[:, :5] *= 40  # some beyond the clip at +-100
    expected = np.array([_easydub_klom(u[:, i], o[:, i]) for i in range(u.shape[1])])
    np.testing.assert_allclose(gold.klom(u, o), expected, rtol=0, atol=1e-12)
    # The variant that keeps the maximum differs wherever the dropped value mattered.
    kept = gold.klom(u, o, include_top_edge=True)
    assert (np.abs(kept - expected) > 1e-6).mean() > 0.5


def test_klom_warns_when_a_population_sits_at_the_maximum():
    u = np.full((4, 1), 3.0)  # every unlearned margin equals the joint maximum: dropped
    o = np.array([[0.0], [1.0], [2.0], [2.5]])
    with pytest.warns(UserWarning, match="1 example"):
        assert gold.klom(u, o)[0] == 0.0  # the published code's value: no mass, no KL
    assert gold.klom(u, o, include_top_edge=True)[0] > 10  # disjoint: near ln(1/eps)


def test_klom_of_disjoint_margins_saturates_near_log_one_over_eps():
    # All of p's mass sits where q is floored at eps: KL = ln(1/eps) - H(p).
    u = np.array([[0.0], [0.0], [1.0], [1.0]])
    o = np.array([[50.0], [50.0], [50.0], [51.0]])  # the maximum, 51, is dropped
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


def test_retrain_baseline_at_the_methods_n_scores_fresh_models_against_the_reference():
    rng = np.random.default_rng(8)
    reference, fresh = rng.normal(size=(8, 30)), rng.normal(size=(8, 30))
    np.testing.assert_array_equal(gold.retrain_baseline(fresh, "epsilon", reference=reference),
                                  gold.per_example_epsilon(fresh, reference))  # fmt: skip
    np.testing.assert_array_equal(gold.retrain_baseline(fresh, "klom", reference=reference),
                                  gold.klom(fresh, reference))  # fmt: skip
    with pytest.raises(ValueError, match="retrained has 8 models but reference has 6"):
        gold.retrain_baseline(fresh, "klom", reference=reference[:6])


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


# --------------------------------------------------------------------------- challenge adapter


class _ChallengeStyle(torch.utils.data.Dataset):
    """Items shaped like the challenge's (surf.py, lines 84-91): dicts, label under
    ``age_group``, beside keys no method should read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "raw_image": self.x[i], "id": i, "gender": "f",
                "age_group": self.y[i], "age": 30}  # fmt: skip


def _challenge_loaders(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(90, 1, 2, 2, generator=g)
    y = torch.arange(90) % 3
    x += y[:, None, None, None].float()
    parts = (slice(0, 60), slice(60, 75), slice(75, 90))  # retain, forget, validation
    return [torch.utils.data.DataLoader(_ChallengeStyle(x[s], y[s]), batch_size=16)
            for s in parts]  # fmt: skip


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))


def _weights(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_the_adapter_reads_the_challenges_dict_loaders_and_varies_the_seed_per_call():
    from forgetkit.methods import as_neurips_unlearning

    net = _net()
    before = _weights(net)
    unlearning = as_neurips_unlearning("finetune", seed=5)
    runs = [_weights(unlearning(net, *_challenge_loaders())) for _ in range(3)]
    assert unlearning.seeds == [5, 6, 7]
    assert torch.equal(_weights(net), before)  # the caller's network is not modified
    # The challenge's N calls on one original differ by the method's randomness only.
    assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[1], runs[2])
    fixed = as_neurips_unlearning("finetune", seed=5, vary_seed=False)
    again = [_weights(fixed(net, *_challenge_loaders())) for _ in range(2)]
    assert fixed.seeds == [5, 5] and torch.equal(again[0], again[1])
    assert torch.equal(again[0], runs[0])  # call 0 of both: seed 5


def test_the_adapter_takes_an_explicit_label_key_and_names_a_missing_one():
    from forgetkit.methods import as_neurips_unlearning

    net = _net()
    loaders = _challenge_loaders()
    by_default = as_neurips_unlearning("finetune")(net, *loaders)
    explicit = as_neurips_unlearning("finetune", label_key="age_group", input_key="image")
    assert torch.equal(_weights(explicit(net, *loaders)), _weights(by_default))
    with pytest.raises(ValueError, match=r"retain loader yields dicts .* without \['gender_id'\]"):
        as_neurips_unlearning("finetune", label_key="gender_id")(net, *loaders)
    with pytest.raises(TypeError, match="label_key must be a string"):
        as_neurips_unlearning("finetune", label_key=3)
