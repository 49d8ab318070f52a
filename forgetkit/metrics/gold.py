"""Per-example, many-model evaluations of forgetting: the gold standard.

Cheap membership attacks train one attacker for a whole population of examples and score a
single model. The evaluations here instead compare, *example by example*, the distribution
of a statistic over many unlearned models with its distribution over many models retrained
from scratch without the forget set. The competition that settled how to evaluate
unlearning (Triantafillou et al., arXiv 2406.09073) found that only such tests see what
cheap attacks miss. Three are implemented, each from its official code (digested in the
book's notes; the papers themselves could be read only in part):

* :func:`~forgetkit.metrics.forget_quality`, the NeurIPS 2023 challenge's epsilon-based score
  (google-deepmind/unlearning_evaluation, ``metric.py``);
* :func:`~forgetkit.metrics.ulira`, the per-example likelihood-ratio attack of Hayes et al.
  (arXiv 2403.01218), with LiRA's Gaussian fit (tensorflow/privacy ``mi_lira_2021``);
* :func:`~forgetkit.metrics.klom`, the binned KL divergence of margins of Georgiev et al.
  (arXiv 2410.23232), binned exactly as the EasyDUB benchmark does it
  (easydub/EasyDUB-code @ 5de3c4c, ``easydub/eval.py``, lines 24-47).

All three take the statistic of :func:`~forgetkit.metrics.logit_margin` (LiRA's
logit-scaled confidence, which is also KLOM's margin), as arrays of shape
``(models, examples)``. They are vectorised over examples and thresholds (sorted arrays
and ``searchsorted``; no Python loop over examples or thresholds) and run on the CPU in
seconds for the sizes a book chapter uses.

Small numbers of models limit what these scores can show; every function's docstring says
how, and :func:`~forgetkit.metrics.retrain_baseline` measures the floor: N more retrained
models scored against the N that the methods are scored against (with ``reference=``), so
that the floor and the methods share N; without a reference it can only split one pool in
halves, the floor at N/2.

Both populations must hold as many models: the challenge's scorer pairs them by position
(google-deepmind/unlearning_evaluation @ ffae0ff, ``metric.py``, lines 320-321, a
``np.where`` over the two arrays) and EasyDUB asserts equal shapes (``easydub/eval.py``,
line 61), so neither defines a score for unequal counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from forgetkit.metrics.predictions import predict

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
WINDOW_BUFFER = 2.0
# Why an example's epsilon sits at the cap (code i + 1; 0: below the cap), in the order the
# official code tests them: the spread guard first (``metric.py``, lines 184-200), then a
# perfect split by one threshold (the two ranges do not overlap), then a perfect split by a
# window around the less spread population only (the ranges overlap, or nearly touch, but
# every value of one lies inside a window that holds no value of the other).
CAP_RULES = ("spread", "separated", "window")


# --------------------------------------------------------------------------- the statistic


def logit_margin(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> np.ndarray:
    """``z_y - logsumexp_{j != y} z_j``: the log-odds of the true class, in float64.

    This is LiRA's logit-scaled confidence ``log p_y - log(1 - p_y)`` written so that it
    neither underflows nor saturates (the challenge's probability form clips at about
    +-103.6); KLOM calls the same number the margin.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    if z.ndim != 2 or y.ndim != 1 or len(y) != len(z):
        raise ValueError(
            f"logits must be (n, classes) and labels (n,), got {tuple(z.shape)} and "
            f"{tuple(y.shape)}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"labels span {int(y.min())}..{int(y.max())}, logits have "
                         f"{z.shape[1]} classes")  # fmt: skip
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


def margins(models: Sequence[nn.Module], samples: Any, *, batch_size: int = 1024) -> np.ndarray:
    """:func:`~forgetkit.metrics.logit_margin` of every model on every sample, shape
    ``(models, samples)``."""
    from forgetkit.data import Samples

    data = Samples.coerce(samples, "samples")
    rows = [logit_margin(predict(getattr(m, "model", m), data, batch_size=batch_size), data.y)
            for m in models]  # fmt: skip
    return np.stack(rows) if rows else np.zeros((0, len(data)))


def _population(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (models, examples), got {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 models, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _pair(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _population(a, names[0]), _population(b, names[1])
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names[0]} has {a.shape[0]} models but {names[1]} has {b.shape[0]}; "
                         "the official scorers pair the two populations and need as many "
                         "models in each")  # fmt: skip
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} covers {a.shape[1]} examples but {names[1]} covers "
                         f"{b.shape[1]}")  # fmt: skip
    return a, b


# --------------------------------------------------------------------------- epsilon (challenge)


def _count_at_least(sorted_vals: Tensor, t: Tensor) -> Tensor:
    """Per row, how many of ``sorted_vals`` (rows sorted ascending) are ``>= t``."""
    return sorted_vals.shape[1] - torch.searchsorted(sorted_vals, t.contiguous(), side="left")


def _count_between(sorted_vals: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Per row, how many of ``sorted_vals`` lie in ``[lo, hi]``; 0 where ``lo > hi``.

    The official window family has left edges up to ``right - width + 2`` (``metric.py``,
    line 90), above the right edge whenever the width is under 2; its indicator
    ``lo <= c <= hi`` then holds for no value. The difference of two ``searchsorted``
    counts would be negative there, hence the floor at 0.
    """
    right = torch.searchsorted(sorted_vals, hi.contiguous(), side="right")
    return (right - torch.searchsorted(sorted_vals, lo.contiguous(), side="left")).clamp(min=0)


def _grid(lo: Tensor, hi: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Row i: ``linspace(lo[i], hi[i], counts[i])``, padded to the longest row; and a mask."""
    width = max(int(counts.max()), 1)
    j = torch.arange(width, dtype=torch.float64)
    steps = (counts - 1).clamp(min=1).to(torch.float64)
    grid = lo[:, None] + (hi - lo)[:, None] * (j[None, :] / steps[:, None])
    mask = j[None, :] < counts[:, None]
    single = counts == 1
    grid[single] = lo[single, None].expand(-1, width)
    return grid, mask


def _epsilon_from_rates(
    fpr: Tensor, fnr: Tensor, mask: Tensor, delta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The challenge's per-threshold epsilon, maximised over each row's valid thresholds.

    ``FPR + e^eps FNR >= 1 - delta`` in both directions; a perfect split (both rates 0) is
    infinite; a split with one rate 0 but not the other is discarded (too few models to
    tell); NaNs from ``log`` of a negative number are ignored, as ``nanmax`` does there.
    """
    with np.errstate(all="ignore"):
        perfect = (fpr == 0) & (fnr == 0)
        one_zero = (fpr * fnr == 0) & ~perfect
        a = torch.log(1 - delta - fpr) - torch.log(fnr)
        b = torch.log(1 - delta - fnr) - torch.log(fpr)
        eps = torch.fmax(a, b).clamp(min=0)  # fmax ignores a NaN on one side
    eps = torch.where(perfect, torch.full_like(eps, math.inf), eps)
    valid = mask & ~one_zero & ~torch.isnan(eps)
    best = torch.where(valid, eps, torch.full_like(eps, -math.inf)).amax(dim=1)
    return best, valid.any(1), (valid & perfect).any(1)


def per_example_epsilon(
    unlearned: Any, retrained: Any, *, delta: float = DELTA, budget: int = 2**22
) -> np.ndarray:
    """The challenge's per-example epsilon: how well any threshold test on one example's
    statistic separates unlearned models from retrained ones, as an (epsilon, delta)-DP
    bound, capped at 50.

    ``unlearned`` and ``retrained`` have shape ``(models, examples)`` (e.g. from
    :func:`~forgetkit.metrics.margins` on the forget set). For each example the "positive"
    population is the one
    with the larger median; two families of tests are tried: one threshold (positive above
    it) over ``ceil(100 * range)`` values, and a window around the less spread population
    (``ceil(100 * span)`` right edges times 400 left edges). Follows ``_get_epsilons`` of the
    challenge's code (google-deepmind/unlearning_evaluation @ ffae0ff, ``metric.py``, lines
    64-301); rates are counted exactly here (the official code averages float32
    indicators), which can differ in the last digit.

    An epsilon reaches the cap of 50 by one of three rules (:data:`CAP_RULES`, reported per
    example by :func:`~forgetkit.metrics.forget_quality`): ``"spread"``, one population's
    range is under 1% of the other's (the official guard, ``metric.py``, lines 184-200: a
    deterministic unlearner, or a nearly constant retrain, scores the worst, even where
    the two populations overlap); ``"separated"``, one threshold puts every model of one
    population above every model of the other; ``"window"``, no threshold of the grid
    splits them (the ranges overlap, or lie closer than its step of about 0.01), but a
    window around the less spread population holds all of it and none of the other.
    Only the last two mean that the two sets of outputs can be told apart perfectly.

    With N models no finite epsilon above about ``ln(N - 1)`` can be observed, and
    identical populations still score well above 0 (the maximum over thousands of tail
    thresholds): compare with :func:`~forgetkit.metrics.retrain_baseline`. Where no
    threshold survives (e.g. two equal constant populations, whose 0/0 spread ratio skips
    the guard), the official code fails an assertion (``metric.py``, line 285) and this
    function raises ``ValueError``.
    """
    return _epsilons(unlearned, retrained, delta, budget)[0]


def _epsilons(unlearned: Any, retrained: Any, delta: float,
              budget: int = 2**22) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-example epsilon and the code of the rule that capped it (0: below the cap)."""
    u, r = _pair(unlearned, retrained, ("unlearned", "retrained"))
    n = u.shape[1]
    out = np.empty(n)
    rules = np.zeros(n, dtype=np.int64)
    # Examples go in chunks whose window grids hold about ``budget`` thresholds in all.
    span = np.maximum(u.max(0) - u.min(0), r.max(0) - r.min(0)).max() + 2 * WINDOW_BUFFER
    per_example = (span * THRESHOLDS_PER_UNIT + 1) * 2 * WINDOW_BUFFER * THRESHOLDS_PER_UNIT
    chunk = max(1, int(budget // per_example))
    for start in range(0, n, chunk):
        cols = slice(start, min(start + chunk, n))
        u_cols = torch.from_numpy(u[:, cols].T.copy())
        out[cols], rules[cols] = _epsilon_chunk(u_cols, torch.from_numpy(r[:, cols].T.copy()),
                                                delta)  # fmt: skip
    out = np.clip(out, 0, EPSILON_CAP)
    rules[out < EPSILON_CAP] = 0
    return out, rules


def _epsilon_chunk(u: Tensor, r: Tensor, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows are examples, columns models; the epsilons and their cap-rule codes."""
    # numpy's median (torch's is the lower middle value), as the official code takes.
    retrain_pos = torch.from_numpy(np.median(r.numpy(), 1) > np.median(u.numpy(), 1))
    pos = torch.where(retrain_pos[:, None], r, u).sort(dim=1).values
    neg = torch.where(retrain_pos[:, None], u, r).sort(dim=1).values
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    range_pos = pos[:, -1] - pos[:, 0]
    range_neg = neg[:, -1] - neg[:, 0]
    small, large = torch.minimum(range_pos, range_neg), torch.maximum(range_pos, range_neg)
    peaky = small / large < 0.01  # 0/0 is NaN and compares False, as in the official code

    # Family A: one threshold over the joint range; positive iff value >= t.
    lo = torch.minimum(pos[:, 0], neg[:, 0])
    hi = torch.maximum(pos[:, -1], neg[:, -1])
    counts = torch.ceil((hi - lo) * THRESHOLDS_PER_UNIT).to(torch.long)
    t, mask_a = _grid(lo, hi, counts)
    tpr = _count_at_least(pos, t) / n_pos
    fpr = _count_at_least(neg, t) / n_neg
    eps_a, ok_a, perfect_a = _epsilon_from_rates(fpr, 1 - tpr, mask_a & (counts[:, None] > 0),
                                                 delta)  # fmt: skip

    # Family B: a window [l, r] as wide as the less spread population ("peaky"), which is
    # called positive (on equal ranges the two swap, as in the official code).
    swap = range_pos >= range_neg
    p = torch.where(swap[:, None], neg, pos)
    q = torch.where(swap[:, None], pos, neg)
    width = small
    r_lo = p[:, 0] + width - WINDOW_BUFFER
    r_hi = p[:, -1] + WINDOW_BUFFER
    r_counts = torch.ceil((r_hi - r_lo) * THRESHOLDS_PER_UNIT).to(torch.long)
    rights, mask_r = _grid(r_lo, r_hi, r_counts)
    n_left = math.ceil(2 * WINDOW_BUFFER * THRESHOLDS_PER_UNIT)
    k = torch.arange(n_left, dtype=torch.float64) / (n_left - 1)
    start = rights - width[:, None] - WINDOW_BUFFER
    lefts = start[:, :, None] + (2 * WINDOW_BUFFER) * k[None, None, :]
    lefts[..., -1] = rights - width[:, None] + WINDOW_BUFFER  # linspace's exact end point
    rows = rights.shape[0]
    lefts = lefts.reshape(rows, -1)
    rights_b = rights[:, :, None].expand(-1, -1, n_left).reshape(rows, -1)
    mask_b = mask_r[:, :, None].expand(-1, -1, n_left).reshape(rows, -1)
    tpr_b = _count_between(p, lefts, rights_b) / p.shape[1]
    fpr_b = _count_between(q, lefts, rights_b) / q.shape[1]
    eps_b, ok_b, perfect_b = _epsilon_from_rates(fpr_b, 1 - tpr_b, mask_b, delta)

    eps = torch.maximum(eps_a, eps_b)
    if bool((~(ok_a | ok_b) & ~peaky).any()):
        raise ValueError(
            "no threshold gave a finite or infinite epsilon for some example (too few "
            "models to tell the populations apart, or two equal constant populations); "
            "use more models"
        )
    eps = torch.where(peaky, torch.full_like(eps, EPSILON_CAP), eps)
    rules = torch.where(peaky, 1, torch.where(perfect_a, 2, torch.where(perfect_b, 3, 0)))
    return eps.numpy(), rules.numpy()


def bucket_count(n_models: int) -> int:
    """How many buckets of width 0.5 earn points with N models per side:
    ``2 * ceil(ln(N - 1))`` (``metric.py``, lines 327-339): 14 at the official N = 512, 4 at
    N = 8, 10 at N = 64. Fewer buckets, coarser scores."""
    if not isinstance(n_models, int) or isinstance(n_models, bool) or n_models < 3:
        raise ValueError(f"n_models must be an integer >= 3 (ln(N-1) > 0), got {n_models!r}")
    return 2 * math.ceil(math.log(n_models - 1))


def bucket_points(epsilons: Any, n_models: int) -> np.ndarray:
    """The challenge's points per example: ``2^-k`` for epsilon in ``[k/2, (k+1)/2)``, for
    the :func:`bucket_count` buckets below ``ceil(ln(N - 1))``; nothing at or above (the cap
    included)."""
    if n_models < 3:
        raise ValueError(f"n_models must be at least 3 (ln(N-1) > 0), got {n_models}")
    eps = np.asarray(epsilons, dtype=np.float64)
    max_eps = math.ceil(math.log(n_models - 1))
    k = np.floor(eps / 0.5)
    return np.where(eps < max_eps, 0.5**k, 0.0)


@dataclass(frozen=True)
class ForgetQuality:
    """The challenge's forget quality and final score, with the per-example epsilons and
    the rule that capped each capped one."""

    epsilons: np.ndarray  # per forget example, in [0, 50]
    quality: float  # mean bucket points, in [0, 1]; 1 = indistinguishable from retraining
    score: float  # quality x retain-accuracy ratio x test-accuracy ratio (unclipped)
    n_models: int
    cap_rule: np.ndarray | None = None  # per example: 0 below the cap, i + 1 for CAP_RULES[i]

    def cap_counts(self) -> dict[str, int]:
        """How many examples each rule of :data:`CAP_RULES` put at the cap."""
        if self.cap_rule is None:
            raise ValueError("this ForgetQuality was built without cap_rule")
        return {name: int((self.cap_rule == i + 1).sum()) for i, name in enumerate(CAP_RULES)}

    def summary(self) -> dict[str, float]:
        """Mean, median, 95th percentile and worst decile of the epsilons, and the scores."""
        e = self.epsilons
        worst = np.sort(e)[-max(1, math.ceil(len(e) / 10)) :]
        return {"quality": self.quality, "score": self.score, "eps_mean": float(e.mean()),
                "eps_median": float(np.median(e)), "eps_p95": float(np.percentile(e, 95)),
                "eps_worst_decile": float(worst.mean()), "n_models": self.n_models}  # fmt: skip


def forget_quality(
    unlearned: Any,
    retrained: Any,
    *,
    retain_accuracy: tuple[Sequence[float], Sequence[float]] | None = None,
    test_accuracy: tuple[Sequence[float], Sequence[float]] | None = None,
    delta: float = DELTA,
) -> ForgetQuality:
    """The NeurIPS 2023 challenge's forget quality F and final score.

    ``unlearned`` / ``retrained``: the statistic on the forget set, ``(models, examples)``;
    the unlearned models are N runs of the method from *one* original (only the method's
    randomness varies), the retrained ones N trainings on the retain set. F is the mean of
    :func:`~forgetkit.metrics.bucket_points` over
    :func:`~forgetkit.metrics.per_example_epsilon`; the score multiplies F by the
    ratio of mean retain accuracy (unlearned over retrained) and of mean test accuracy, each
    given as ``(unlearned accuracies, retrained accuracies)`` (ratios of 1 when omitted).
    A deterministic method scores F = 0 by construction (the peakiness guard).
    ``cap_rule`` says, per example, which rule of :data:`CAP_RULES` put it at the cap.
    """
    u, r = _pair(unlearned, retrained, ("unlearned", "retrained"))
    eps, rules = _epsilons(u, r, delta)
    quality = float(bucket_points(eps, u.shape[0]).mean())
    score = quality
    for name, pair in (("retain_accuracy", retain_accuracy), ("test_accuracy", test_accuracy)):
        if pair is None:
            continue
        if len(pair) != 2:
            raise ValueError(f"{name} must be (unlearned accuracies, retrained accuracies)")
        score *= float(np.mean(pair[0])) / float(np.mean(pair[1]))
    return ForgetQuality(eps, quality, score, u.shape[0], rules)


# --------------------------------------------------------------------------- KLOM


def _linspace_rows(lo: Tensor, hi: Tensor, num: int) -> Tensor:
    """Row i: ``np.linspace(lo[i], hi[i], num)`` to the bit (``j * step + lo``, then the last
    point set to ``hi``), which the official KLOM's bins rest on."""
    j = torch.arange(num, dtype=torch.float64)[None, :]
    delta = (hi - lo)[:, None]
    step = delta / (num - 1)
    y = torch.where(step == 0, j / (num - 1) * delta, j * step) + lo[:, None]
    y[:, -1] = hi
    return y


def klom(
    unlearned: Any,
    oracle: Any,
    *,
    bins: int = 20,
    clip: float = 100.0,
    eps: float = 1e-5,
    include_top_edge: bool = False,
) -> np.ndarray:
    """Per-example KL(unlearned || oracle) between binned margin distributions (KLOM).

    ``unlearned``: margins of N models, each a *different* original unlearned once (so the
    distribution integrates over training randomness); ``oracle``: margins of N models
    retrained without the forget set; both ``(models, examples)``. Per example: clip to
    ``[-clip, clip]``, ``bins`` equal bins over the joint range, probabilities of each
    population, and ``sum p log(p / max(q, eps))`` where ``p > 0`` (EasyDUB's estimator,
    easydub/EasyDUB-code @ 5de3c4c, ``easydub/eval.py``, lines 24-47; the direction is
    unlearned to oracle, as EasyDUB computes it; DUB's driver swaps it).

    The default bins exactly as the published code does: edges ``np.linspace(min, max,
    bins + 1)`` and ``np.digitize``, which puts a value equal to the joint maximum past the
    last bin, so each example's largest margin is dropped (one value of 2N; a population
    sitting entirely at the maximum has no mass and scores 0, with a warning here).
    ``include_top_edge=True`` counts the maximum in the last bin instead (``np.histogram``'s
    rule), a variant that is not the published KLOM. Disjoint populations saturate at about
    ``ln(1/eps)`` = 11.5; with few models the estimate of identical populations is biased
    well above 0 (see :func:`~forgetkit.metrics.retrain_baseline`).
    """
    u, o = _pair(unlearned, oracle, ("unlearned", "oracle"))
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"klom: bins must be an integer >= 1, got {bins!r}")
    u = torch.from_numpy(np.clip(u, -clip, clip).T.copy())
    o = torch.from_numpy(np.clip(o, -clip, clip).T.copy())
    both = torch.cat([u, o], dim=1)
    lo, hi = both.min(dim=1).values, both.max(dim=1).values
    hi = torch.where(hi <= lo, lo + 1.0, hi)
    edges = _linspace_rows(lo, hi, bins + 1).contiguous()

    def probabilities(x: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.searchsorted(edges, x.contiguous(), side="right")  # np.digitize
        if include_top_edge:
            idx = idx.clamp(max=bins)
        counts = torch.zeros(len(x), bins + 2, dtype=torch.float64)
        counts.scatter_add_(1, idx, torch.ones_like(x))
        kept = counts[:, 1 : bins + 1]
        total = kept.sum(dim=1, keepdim=True)
        probs = torch.where(total > 0, kept / total.clamp(min=1), torch.zeros_like(kept))
        return probs, total.squeeze(1) == 0

    (p, empty_p), (q, empty_q) = probabilities(u), probabilities(o)
    empty = int((empty_p | empty_q).sum())
    if empty:
        warnings.warn(f"klom: for {empty} example(s) every margin of one population equals "
                      "the joint maximum, which the published binning drops; their KLOM is "
                      "computed without that population (include_top_edge=True keeps it)",
                      stacklevel=2)  # fmt: skip
    terms = torch.where(p > 0, p * torch.log(p / q.clamp(min=eps)), torch.zeros_like(p))
    return terms.sum(dim=1).numpy()


def distribution_summary(values: Any) -> dict[str, float]:
    """Mean, median, 95th percentile (KLOM's headline) and worst-decile mean of per-example
    scores: the per-example spread that a mean hides."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to summarise")
    worst = np.sort(v)[-max(1, math.ceil(v.size / 10)) :]
    return {"mean": float(v.mean()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "worst_decile": float(worst.mean())}  # fmt: skip


# --------------------------------------------------------------------------- U-LiRA


@dataclass(frozen=True)
class ULiRAResult:
    """Per-example likelihood ratios and the attack's balanced accuracy, AUC and TPR at a
    low false-positive rate, on a target model's forgotten members and never-seen points."""

    scores: np.ndarray  # log N(phi; in) - log N(phi; out) per queried example
    is_forgotten: np.ndarray  # True: in the target's forget set; False: never trained on
    accuracy: float  # max over thresholds of 1 - (FPR + FNR) / 2; 0.5 = not detected
    auc: float
    tpr_at_low_fpr: float  # at FPR < 0.1%


def _masked_stats(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.where(mask, values, np.nan)
    with warnings.catch_warnings():  # examples with no IN (or OUT) value are NaN, dropped later
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(v, axis=0), np.nanstd(v, axis=0)


def _gauss_logpdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi)


def ulira(
    shadow: Any,
    shadow_forgotten: Any,
    shadow_out: Any,
    target: Any,
    target_forgotten: Any,
    target_out: Any,
    *,
    fix_variance: bool = False,
) -> ULiRAResult:
    """U-LiRA: a dedicated likelihood-ratio test for every example (Hayes et al. 2024).

    Shadow runs k = 1..K each train on a random half of a pool, forget a random subset of it
    and unlearn. ``shadow`` is the statistic of the K unlearned shadow models on every pool
    example, ``(K, examples)``; ``shadow_forgotten[k, i]`` says example i was trained on
    and then forgotten by run k (its IN distribution), ``shadow_out[k, i]`` that run k never
    trained on it (OUT). Each example gets Gaussians with LiRA's fit (median, standard
    deviation; ``fix_variance`` pools one deviation over examples, advisable under about 64
    shadows per side). The held-out target run's statistic ``target`` (examples,) is scored
    by the log-likelihood ratio on its forgotten members (``target_forgotten``) against
    points it never saw (``target_out``), balanced. An accuracy of 0.5 means "not detected
    with these K shadows", not "unlearned"; the power grows with K. Whether the paper's OUT
    distribution comes from unlearned shadow models (as here, which cancels global shifts
    caused by unlearning) or from plain ones is unverified.
    """
    s = np.asarray(shadow, dtype=np.float64)
    fin = np.asarray(shadow_forgotten, dtype=bool)
    fout = np.asarray(shadow_out, dtype=bool)
    t = np.asarray(target, dtype=np.float64).ravel()
    tin = np.asarray(target_forgotten, dtype=bool).ravel()
    tout = np.asarray(target_out, dtype=bool).ravel()
    if s.ndim != 2 or fin.shape != s.shape or fout.shape != s.shape:
        raise ValueError(
            f"shadow, shadow_forgotten and shadow_out must share one (K, examples) shape, "
            f"got {s.shape}, {fin.shape}, {fout.shape}"
        )
    if not (t.shape == tin.shape == tout.shape == (s.shape[1],)):
        raise ValueError(f"target, target_forgotten and target_out must have shape "
                         f"({s.shape[1]},)")  # fmt: skip
    if (fin & fout).any() or (tin & tout).any():
        raise ValueError("an example cannot be both forgotten and never trained on in a run")
    queried = tin | tout
    usable = queried & (fin.sum(0) >= 2) & (fout.sum(0) >= 2)
    if usable.sum() < 2 or not tin[usable].any() or not tout[usable].any():
        raise ValueError("too few examples with at least 2 IN and 2 OUT shadow values and a "
                         "target label; use more shadow runs")  # fmt: skip
    mu_in, sd_in = _masked_stats(s, fin)
    mu_out, sd_out = _masked_stats(s, fout)
    if fix_variance:
        sd_in = np.full_like(sd_in, np.nanmean(sd_in[usable]))
        sd_out = np.full_like(sd_out, np.nanmean(sd_out[usable]))
    score = _gauss_logpdf(t, mu_in, sd_in + 1e-30) - _gauss_logpdf(t, mu_out, sd_out + 1e-30)
    score, label = score[usable], tin[usable]
    acc, auc, tpr = _roc_summary(score, label)
    return ULiRAResult(score, label, acc, auc, tpr)


def _roc_summary(score: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """Balanced accuracy at the best threshold, AUC, and TPR at FPR < 0.1%."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(label, score)
    acc = float(np.max(1 - (fpr + (1 - tpr)) / 2))
    low = tpr[fpr < 1e-3]
    return acc, float(roc_auc_score(label, score)), float(low.max() if low.size else 0.0)


# --------------------------------------------------------------------------- floors


def retrain_baseline(
    retrained: Any, score: str = "klom", *, reference: Any = None, seed: int = 0
) -> np.ndarray:
    """The score of retraining against itself: the floor a perfect method reaches with this
    many models (the estimators' small-sample bias), to be shown next to every method's
    score. ``score`` is ``"klom"`` or ``"epsilon"``; per-example values are returned.

    With ``reference`` (the N retrained models every method is scored against), the N models
    of ``retrained``, retrained with other seeds, are scored against it: the floor at the
    methods' N, which needs 2N retrained models in all. Without it, one random half of
    ``retrained`` is scored against the other: the floor at N/2 models per side, which is
    not the floor at N (both estimators depend on N), so it is comparable only with methods
    scored at N/2 per side.
    """
    r = _population(retrained, "retrained")
    if score not in ("klom", "epsilon"):
        raise ValueError(f"score must be 'klom' or 'epsilon', got {score!r}")
    if reference is not None:
        a, b = _pair(r, reference, ("retrained", "reference"))
    else:
        if r.shape[0] < 4:
            raise ValueError(f"retrain_baseline needs at least 4 retrained models, got "
                             f"{r.shape[0]}")  # fmt: skip
        order = np.random.default_rng(seed).permutation(r.shape[0])
        half = r.shape[0] // 2
        a, b = r[order[:half]], r[order[half : 2 * half]]
    return klom(a, b) if score == "klom" else per_example_epsilon(a, b)
