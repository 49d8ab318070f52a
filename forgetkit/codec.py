"""Azadkia and Chatterjee's conditional dependence coefficient (CODEC) and FOCI selection.

``T_n(Y, Z)`` estimates how much of ``Y`` is a function of ``Z`` (0: independent, 1: ``Y``
is a measurable function of ``Z``); the conditional ``T_n(Y, Z | X)`` asks the same of
``Z`` once ``X`` is known. Both need only the ranks of ``Y`` and one nearest neighbour per
sample, so they are cheap, tuning-free and invariant to strictly increasing transforms of
``Y``. FOCI adds, greedily, the feature with the largest conditional coefficient given those
already chosen, and stops when none adds anything: an estimate of the Markov blanket of
``Y``. L-CODEC uses it to pick the units of a network that matter for one training sample.

Everything here runs on the tensors' device and is vectorised over samples and over
candidate features: the squared distances of every candidate are built as one batched
tensor (in chunks that bound memory, never one candidate at a time); given X, first only
over each sample's nearest neighbours in X, which settles most samples exactly. Ties, which the
estimator breaks at random, are broken by a seeded jitter. :func:`codec_reference` and
:func:`foci_reference` are slow, loop-by-loop transcriptions of the definitions, kept for
tests and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["FociResult", "codec", "codec_all", "codec_reference", "foci", "foci_reference",
           "jittered"]  # fmt: skip

CHUNK_ELEMENTS = 2**20  # distances per batched tensor (8 MiB in fp64): cache-sized; 2**24 was
# memory-bound, slower than the official per-candidate loop on 1,000 x 110 (bench_official)
PREFIX_SIZES = (32, 128, 512)  # nearest-in-X prefixes tried in turn before a full row (tuned on
# bench_official's 1,000 x 110 features: ~45% of rows fail the first in one selected dimension,
# ~1.5% once four are selected)


# --------------------------------------------------------------------------- inputs


def _as_matrix(t: Tensor | np.ndarray, what: str, n: int | None = None) -> Tensor:
    t = torch.as_tensor(t)
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"{what} must be a vector or an (n, features) matrix, got shape "
                         f"{tuple(t.shape)}")  # fmt: skip
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{what} has {t.shape[0]} samples but y has {n}")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} holds NaN or infinite values")
    return t


def _as_response(y: Tensor | np.ndarray) -> Tensor:
    y = torch.as_tensor(y)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"y must be one value per sample, got shape {tuple(y.shape)}")
    if len(y) < 3:
        raise ValueError(f"CODEC needs at least 3 samples, got {len(y)}")
    if not y.is_floating_point():
        y = y.double()
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y holds NaN or infinite values")
    return y


def jittered(t: Tensor, scale: float, generator: torch.Generator | None) -> Tensor:
    """``t`` plus Gaussian noise of ``scale`` times each column's standard deviation (1 for a
    constant column): breaks ties in ranks and distances, reproducibly from the generator."""
    if scale == 0:
        return t
    if scale < 0:
        raise ValueError(f"jitter must be >= 0, got {scale}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    noise = torch.randn(t.shape, generator=gen, device=gen.device, dtype=t.dtype).to(t.device)
    spread = t.std(0, keepdim=True) if t.shape[0] > 1 else torch.ones_like(t[:1])
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return t + scale * spread * noise


# --------------------------------------------------------------------------- building blocks


def _ranks(y: Tensor) -> tuple[Tensor, Tensor]:
    """``R_i = #{j: y_j <= y_i}`` and ``L_i = #{j: y_j >= y_i}`` (ties counted exactly)."""
    s = torch.sort(y).values
    r = torch.searchsorted(s, y, right=True)
    left = len(y) - torch.searchsorted(s, y, right=False)
    return r.double(), left.double()


def _sq_dists(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances, summed coordinate by coordinate so that every
    code path (and the reference) computes the same floating-point numbers."""
    d2 = torch.zeros(x.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    for k in range(x.shape[1]):  # over coordinates of one conditioning set, not candidates
        d2 += (x[:, k, None] - x[None, :, k]) ** 2
    return d2


def _nearest(d2: Tensor) -> Tensor:
    """Index of each sample's nearest other sample (first index on an exact tie)."""
    d2 = d2.clone()
    d2.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return d2.argmin(-1)


def _candidate_nearest(z: Tensor, base: Tensor | None, chunk_elements: int,
                       prefix_sizes: tuple[int, ...] | None = None) -> Tensor:  # fmt: skip
    """Nearest neighbours in ``(X, Z_j)`` for every column ``j`` of ``z`` at once: (p, n).

    Exact, without the n^2 pass per candidate: each row of ``base`` is partly sorted once and
    each sample is first searched among its ``k`` nearest neighbours in ``X`` alone. Every other
    sample is at least ``base``'s next sorted value away, so a minimum strictly below it is
    the true one, ties included; the rows where it is not fall back to a longer prefix and
    finally to the full row. Distances are the same floating-point numbers as a full search,
    and each prefix is scanned in index order, so the lowest index still wins a tie."""
    n, p = z.shape
    if base is None:
        return _nearest_1d(z)
    out = torch.empty(p, n, dtype=torch.long, device=z.device)
    if p == 0:
        return out
    masked = base.clone()
    masked.diagonal().fill_(float("inf"))  # a sample is never its own neighbour
    sizes = PREFIX_SIZES if prefix_sizes is None else prefix_sizes  # () searches full rows
    ladder = [k for k in sizes if k < n - 1]
    if ladder:  # the smallest max(ladder) + 1 of each row, ascending (cheaper than a full sort;
        # ties among them may come in any order: only the prefix's bound matters)
        ranked, order = torch.topk(masked, max(ladder) + 1, dim=1, largest=False)
    zc = z.T.contiguous()  # (p, n)
    todo: Tensor | None = None  # flat (candidate * n + sample) indices still unresolved
    for k in ladder:
        idx = order[:, :k].sort(dim=1).values  # in index order: argmin takes the lowest
        near, limit = masked.gather(1, idx), ranked[:, k]
        if todo is None:  # every sample of every candidate: one (c, n, k) tensor per chunk
            step = max(1, chunk_elements // (n * k))
            failed = []
            flat_idx = idx.flatten()
            for start in range(0, p, step):
                zs = zc[start : start + step]
                # = zs[:, idx]; index_select is ~3x faster than advanced indexing on CPU
                d = zs[:, :, None] - zs.index_select(1, flat_idx).view(len(zs), n, k)
                d.square_().add_(near)
                arg = d.argmin(-1, keepdim=True)
                ok = d.gather(-1, arg)[..., 0] < limit
                out[start : start + step] = torch.where(ok, idx.gather(1, arg[..., 0].T).T, -1)
                failed.append(torch.nonzero(~ok.flatten())[:, 0] + start * n)
            todo = torch.cat(failed)
        else:
            todo = _resolve(zc, todo, idx, near, limit, out, chunk_elements)
        if len(todo) == 0:
            return out
    if todo is None:
        todo = torch.arange(p * n, device=z.device)
    _resolve(zc, todo, None, masked, None, out, chunk_elements)
    return out


def _resolve(zc: Tensor, todo: Tensor, idx: Tensor | None, near: Tensor, limit: Tensor | None,
             out: Tensor, chunk_elements: int) -> Tensor:  # fmt: skip
    """Searches the listed (candidate, sample) pairs among ``idx``'s columns of each sample's
    row (``near``: their distances in X) and writes the neighbours found below ``limit`` into
    ``out``; with ``idx`` None, the whole row (``near`` = masked ``base``) and no limit.
    Returns the pairs that remain unresolved."""
    n = zc.shape[1]
    k = n if idx is None else idx.shape[1]
    flat = out.view(-1)
    failed = []
    step = max(1, chunk_elements // k)
    for start in range(0, len(todo), step):
        pairs = todo[start : start + step]
        c, i = pairs // n, pairs % n
        if idx is None:  # whole rows: contiguous, and the position is the neighbour
            d = zc[c, i][:, None] - zc.index_select(0, c)
            d.square_().add_(near[i])
            flat[pairs] = d.argmin(-1)
            continue
        cols = idx[i]
        d = zc[c, i][:, None] - zc[c[:, None], cols]
        d.square_().add_(near[i])
        arg = d.argmin(-1, keepdim=True)
        ok = d.gather(1, arg)[:, 0] < limit[i]
        flat[pairs[ok]] = cols.gather(1, arg)[ok, 0]
        failed.append(pairs[~ok])
    return torch.cat(failed) if failed else todo[:0]


def _nearest_1d(z: Tensor) -> Tensor:
    """Nearest neighbours along each column separately, (p, n), by sorting: on a line a
    sample's nearest neighbour is the one just before or just after it (n log n, not n^2).
    On an exact tie of the two gaps the lower index wins, as in the brute-force search."""
    n = z.shape[0]
    values, order = torch.sort(z.T.contiguous(), dim=1)  # (p, n)
    inf = torch.full_like(values[:, :1], float("inf"))
    gap_left = torch.cat([inf, values[:, 1:] - values[:, :-1]], 1)
    gap_right = torch.cat([values[:, 1:] - values[:, :-1], inf], 1)
    pos = torch.arange(n, device=z.device)
    left = order[:, (pos - 1).clamp(min=0)]
    right = order[:, (pos + 1).clamp(max=n - 1)]
    take_left = (gap_left < gap_right) | ((gap_left == gap_right) & (left < right))
    best = torch.where(take_left, left, right)
    out = torch.empty_like(order)
    out.scatter_(1, order, best)
    return out


def _unconditional(r: Tensor, left: Tensor, m: Tensor) -> Tensor:
    """``sum(n min(R_i, R_M(i)) - L_i^2) / sum(L_i (n - L_i))`` for each row of ``m``."""
    n = len(r)
    num = (n * torch.minimum(r, r[m]) - left**2).sum(-1)
    den = (left * (n - left)).sum()
    return num / den if den > 0 else torch.zeros_like(num)


def _conditional(r: Tensor, m: Tensor, nn_x: Tensor) -> Tensor:
    """``sum(min(R_i, R_M(i)) - min(R_i, R_N(i))) / sum(R_i - min(R_i, R_N(i)))`` per row."""
    rn = torch.minimum(r, r[nn_x])
    num = (torch.minimum(r, r[m]) - rn).sum(-1)
    den = (r - rn).sum()
    return num / den if den > 0 else torch.zeros_like(num)


# --------------------------------------------------------------------------- public API


def codec_all(
    y: Tensor,
    z: Tensor,
    x: Tensor | None = None,
    *,
    jitter: float = 1e-6,
    generator: torch.Generator | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    """``T_n(Y, Z_j)`` (or ``T_n(Y, Z_j | X)``) for every column ``Z_j`` of ``z``, at once."""
    y = _as_response(y)
    z = _as_matrix(z, "z", len(y)).to(y.device)
    base = None
    if x is not None:
        x = _as_matrix(x, "x", len(y)).to(device=y.device, dtype=z.dtype)
        x = jittered(x, jitter, generator)
    y = jittered(y[:, None], jitter, generator)[:, 0]
    z = jittered(z, jitter, generator)
    r, left = _ranks(y)
    if x is not None:
        base = _sq_dists(x)
    m = _candidate_nearest(z, base, chunk_elements)
    if base is None:
        return _unconditional(r, left, m)
    return _conditional(r, m, _nearest(base))


def codec(
    y: Tensor,
    z: Tensor,
    x: Tensor | None = None,
    *,
    jitter: float = 1e-6,
    generator: torch.Generator | None = None,
) -> float:
    """Azadkia-Chatterjee ``T_n(Y, Z)``, or ``T_n(Y, Z | X)`` when ``x`` is given; ``z`` and
    ``x`` may have several columns (they are then one joint variable)."""
    y = _as_response(y)
    z = _as_matrix(z, "z", len(y)).to(y.device)
    y = jittered(y[:, None], jitter, generator)[:, 0]
    z = jittered(z, jitter, generator)
    r, left = _ranks(y)
    if x is None:
        return float(_unconditional(r, left, _nearest(_sq_dists(z))[None])[0])
    x = jittered(_as_matrix(x, "x", len(y)).to(device=y.device, dtype=z.dtype), jitter, generator)
    dx = _sq_dists(x)
    m = _nearest(dx + _sq_dists(z))
    return float(_conditional(r, m[None], _nearest(dx))[0])


@dataclass
class FociResult:
    """FOCI's choice: column indices in the order chosen, and the coefficient each had when
    it was chosen (unconditional for the first, conditional on the earlier ones after)."""

    selected: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def foci(
    y: Tensor,
    features: Tensor,
    *,
    max_features: int | None = None,
    early_stop: bool = True,
    jitter: float = 1e-6,
    generator: torch.Generator | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> FociResult:
    """Feature Ordering by Conditional Independence (Azadkia and Chatterjee, 2021).

    Picks ``argmax_j T_n(Y, Z_j)``, then repeatedly ``argmax_j T_n(Y, Z_j | Z_S)`` over the
    columns not yet chosen; with ``early_stop`` it stops as soon as the best conditional
    coefficient is <= 0 (nothing left adds information about ``y``). The first column is
    always kept, as in the official L-CODEC code (the paper's FOCI would return the empty
    set if its coefficient were <= 0). ``jitter`` (relative to each column's spread) breaks
    ties reproducibly from ``generator``.
    """
    y = _as_response(y)
    z = _as_matrix(features, "features", len(y)).to(y.device)
    p = z.shape[1]
    limit = p if max_features is None else int(max_features)
    if limit < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    y = jittered(y[:, None], jitter, generator)[:, 0]
    z = jittered(z, jitter, generator)
    r, left = _ranks(y)
    first = _unconditional(r, left, _candidate_nearest(z, None, chunk_elements))
    best = int(first.argmax())
    result = FociResult([best], [float(first[best])])
    chosen = torch.zeros(p, dtype=torch.bool, device=z.device)
    chosen[best] = True
    base = (z[:, best, None] - z[None, :, best]) ** 2
    while len(result.selected) < min(limit, p):
        rest = torch.nonzero(~chosen)[:, 0]
        scores = _conditional(r, _candidate_nearest(z[:, rest], base, chunk_elements),
                              _nearest(base))  # fmt: skip
        k = int(scores.argmax())
        if early_stop and float(scores[k]) <= 0:
            break
        j = int(rest[k])
        result.selected.append(j)
        result.scores.append(float(scores[k]))
        chosen[j] = True
        base = base + (z[:, j, None] - z[None, :, j]) ** 2
    return result


# --------------------------------------------------------------------------- references


def _ref_ranks(y: np.ndarray) -> tuple[list[int], list[int]]:
    n = len(y)
    r = [sum(1 for j in range(n) if y[j] <= y[i]) for i in range(n)]
    left = [sum(1 for j in range(n) if y[j] >= y[i]) for i in range(n)]
    return r, left


def _ref_nearest(points: np.ndarray) -> list[int]:
    n = len(points)
    out = []
    for i in range(n):
        best, best_d = -1, float("inf")
        for j in range(n):
            if j == i:
                continue
            d = 0.0
            for k in range(points.shape[1]):
                d += (points[i, k] - points[j, k]) ** 2
            if d < best_d:
                best, best_d = j, d
        out.append(best)
    return out


def codec_reference(y, z, x=None) -> float:
    """``T_n`` written straight from Azadkia and Chatterjee's definition, one sample at a
    time in plain Python (no jitter: pass data without ties). For tests and benchmarks."""
    y = np.asarray(y, dtype=float).ravel()
    z = np.asarray(z, dtype=float).reshape(len(y), -1)
    n = len(y)
    r, left = _ref_ranks(y)
    if x is None:
        m = _ref_nearest(z)
        num = sum(n * min(r[i], r[m[i]]) - left[i] ** 2 for i in range(n))
        den = sum(left[i] * (n - left[i]) for i in range(n))
        return num / den if den > 0 else 0.0
    x = np.asarray(x, dtype=float).reshape(n, -1)
    nx = _ref_nearest(x)
    m = _ref_nearest(np.hstack([x, z]))
    num = sum(min(r[i], r[m[i]]) - min(r[i], r[nx[i]]) for i in range(n))
    den = sum(r[i] - min(r[i], r[nx[i]]) for i in range(n))
    return num / den if den > 0 else 0.0


def foci_reference(y, features, *, max_features: int | None = None,
                   early_stop: bool = True) -> FociResult:  # fmt: skip
    """FOCI with one :func:`codec_reference` call per candidate and step (slow; no jitter)."""
    z = np.asarray(features, dtype=float)
    p = z.shape[1]
    limit = p if max_features is None else max_features
    first = [codec_reference(y, z[:, j]) for j in range(p)]
    best = int(np.argmax(first))
    result = FociResult([best], [first[best]])
    while len(result.selected) < min(limit, p):
        rest = [j for j in range(p) if j not in result.selected]
        given = z[:, result.selected]
        scores = [codec_reference(y, z[:, j], given) for j in rest]
        k = int(np.argmax(scores))
        if early_stop and scores[k] <= 0:
            break
        result.selected.append(rest[k])
        result.scores.append(scores[k])
    return result
