"""How far apart two models' predictions are, sample by sample.

Both measures compare predictive distributions (softmax outputs) on the same inputs, so they
need no labels and compare an unlearned model with the retrained oracle directly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from forgetkit.data import Samples
from forgetkit.metrics.predictions import probabilities
from forgetkit.runtime import DeviceLike

LN2 = math.log(2.0)
Reduction = Literal["none", "mean", "sum"]


def _as_prob_matrix(p: Tensor | np.ndarray, name: str, atol: float) -> Tensor:
    t = torch.as_tensor(p)
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must hold floating-point probabilities, got {t.dtype}")
    t = t.detach().to("cpu", torch.float64)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a (rows, classes) matrix, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((t < 0).any()):
        raise ValueError(f"{name} has negative entries (min {float(t.min()):.3g}): not "
                         "probabilities")  # fmt: skip
    worst = float((t.sum(1) - 1).abs().max()) if t.shape[0] else 0.0
    if worst > atol:
        raise ValueError(
            f"{name}: rows must sum to 1 (worst row is off by {worst:.3g}, tolerance {atol}); "
            "pass probabilities (e.g. softmax of logits), not logits"
        )
    return t


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def js_divergence(
    p: Tensor | np.ndarray,
    q: Tensor | np.ndarray,
    *,
    reduction: Reduction = "mean",
    atol: float = 1e-4,
) -> Tensor:
    """Jensen-Shannon divergence between corresponding rows of two probability matrices.

    ``JS(p, q) = 0.5 KL(p || m) + 0.5 KL(q || m)`` with ``m = (p + q) / 2``, natural log,
    summed over classes per row (``0 log 0 = 0``, so zero probabilities are safe). It is
    symmetric and lies in ``[0, ln 2]``; it is 0 exactly when the rows are equal.

    ``reduction``: ``"none"`` (one value per row), ``"mean"`` or ``"sum"`` over rows. A 1-D
    input is one row. Rows are checked to be non-negative and to sum to 1 within ``atol``.
    Computed in float64 and clipped to ``[0, ln 2]`` against rounding; returned as float64.

    Not the same number as the ``JSDiv`` of the Bad-Teacher/SSD/JiT code:
    ``0.5 * F.kl_div(log p, m) + 0.5 * F.kl_div(log q, m)`` is ``0.5 KL(m || p) +
    0.5 KL(m || q)`` (``F.kl_div(input, target)`` is KL(target || input)), averaged by its
    default ``reduction="mean"`` over rows *and* classes; their ZRF score is ``1 - that``.
    """
    a = _as_prob_matrix(p, "p", atol)
    b = _as_prob_matrix(q, "q", atol)
    if a.shape != b.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")  # fmt: skip
    m = 0.5 * (a + b)
    kl_a = (torch.special.xlogy(a, a) - torch.special.xlogy(a, m)).sum(1)
    kl_b = (torch.special.xlogy(b, b) - torch.special.xlogy(b, m)).sum(1)
    js = (0.5 * kl_a + 0.5 * kl_b).clamp(0.0, LN2)
    return _reduce(js, reduction)


def model_js(
    model_a: nn.Module,
    model_b: nn.Module,
    samples: Any,
    *,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """Mean Jensen-Shannon divergence between two models' softmax outputs on ``samples``.

    0 means identical predictive distributions; ``ln 2`` (about 0.693) is the maximum.
    """
    return float(
        js_divergence(*_paired_probabilities(model_a, model_b, samples, batch_size, device))
    )


def l1_distance(p: Tensor | np.ndarray, q: Tensor | np.ndarray) -> float:
    """Mean over rows of ``sum_k |p_k - q_k|``: the activation distance of two softmax matrices."""
    a, b = torch.as_tensor(p).double(), torch.as_tensor(q).double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a - b).abs().sum(-1).mean())


def activation_distance(
    model_a: nn.Module,
    model_b: nn.Module,
    samples: Any,
    *,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """Golatkar et al. (2020b, "Forgetting outside the box")'s activation distance.

    The mean over ``samples`` of the **L1** distance between the two models' softmax
    outputs, in ``[0, 2]``. This follows the official code (AdityaGolatkar/SelectiveForgetting,
    ``Forgetting.ipynb``): ``activations`` are ``softmax(output, dim=1)`` of the model in eval
    mode and ``activations_distance`` is ``np.linalg.norm(a1 - a2, ord=1, axis=1).mean()``.
    (Their notebook feeds one sample at a time; in eval mode batching changes nothing.)
    Other repositories reuse the name for the L2 distance (e.g. ``actv_dist`` in the JiT
    code of Foster et al.), so numbers from there are not comparable with these.

    Against the retrained oracle, lower is better; compare with the oracle's own
    seed-to-seed distance.
    """
    return l1_distance(*_paired_probabilities(model_a, model_b, samples, batch_size, device))


def _paired_probabilities(
    model_a: nn.Module, model_b: nn.Module, samples: Any, batch_size: int, device: DeviceLike
) -> tuple[Tensor, Tensor]:
    """Both models' softmax outputs on the same samples, checked to cover the same classes."""
    data = Samples.coerce(samples, "samples")
    pa = probabilities(model_a, data, batch_size=batch_size, device=device)
    pb = probabilities(model_b, data, batch_size=batch_size, device=device)
    _same_classes(pa, pb)
    return pa, pb


def _same_classes(pa: Tensor, pb: Tensor) -> None:
    if pa.shape[1] != pb.shape[1]:
        raise ValueError(f"the models disagree on the number of classes: {pa.shape[1]} and "
                         f"{pb.shape[1]}")  # fmt: skip
