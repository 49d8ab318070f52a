"""Relearn time: how quickly fine-tuning brings the forgotten samples' loss back.

Golatkar et al.'s "re-learn time" readout (Eternal Sunshine, CVPR 2020; Forgetting outside
the box, ECCV 2020): information about the forget set that an unlearning method merely hid
comes back within a few fine-tuning steps; information that is truly gone takes about as
long to relearn as for a model that never saw it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data import Samples
from forgetkit.metrics.predictions import _check_model, check_inputs_fit, per_sample_loss
from forgetkit.runtime import DeviceLike, model_device, progress, resolve_device
from forgetkit.train import l2_to_anchor


def relearn_threshold(
    original_model: nn.Module,
    forget: Any,
    *,
    margin: float = 1e-5,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """The original model's mean loss on the forget set plus ``margin`` (1e-5, as in
    Golatkar et al.'s notebook: ``thresh = log_dict['Original_Model_D_f_loss'] + 1e-5``)."""
    loss = per_sample_loss(original_model, forget, batch_size=batch_size, device=device)
    return float(loss.mean()) + float(margin)


def _mean_loss(model: nn.Module, data: Samples, batch_size: int = 1024) -> float:
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            out = model(data.x[start : start + batch_size])
            total += float(F.cross_entropy(out, data.y[start : start + batch_size],
                                           reduction="sum"))  # fmt: skip
    return total / len(data)


def _validate(model, threshold_needed: bool, threshold, lr, max_epochs, samples_per_epoch,
              batch_size, weight_decay) -> None:  # fmt: skip
    _check_model(model)
    if threshold_needed and threshold is None:
        raise ValueError(
            "relearn_time needs a threshold: pass relearn_threshold(original_model, forget), "
            "the original model's forget loss + 1e-5, as Golatkar et al. do"
        )
    if threshold is not None and math.isnan(float(threshold)):
        raise ValueError("threshold is NaN")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    counts = (max_epochs, samples_per_epoch, batch_size)
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in counts):
        raise TypeError(
            f"max_epochs, samples_per_epoch and batch_size must be ints, got {max_epochs!r}, "
            f"{samples_per_epoch!r} and {batch_size!r}"
        )
    if max_epochs < 1 or samples_per_epoch < 1 or batch_size < 1:
        raise ValueError(
            f"max_epochs, samples_per_epoch and batch_size must be >= 1, got {max_epochs}, "
            f"{samples_per_epoch} and {batch_size}"
        )
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


def _forget_losses(
    model: nn.Module, forget: Any, pool: Any, *, lr: float, max_epochs: int,
    samples_per_epoch: int, batch_size: int, weight_decay: float, seed: int,
    device: DeviceLike,
) -> Iterator[float]:  # fmt: skip
    """Yield the forget-set loss before each readout epoch, fine-tuning a copy in between."""
    dev = model_device(model) if device is None else resolve_device(device)
    f = Samples.coerce(forget, "forget set", seed=seed).to(dev)
    p = Samples.coerce(pool, "pool", seed=seed).to(dev)
    if f.x.shape[1:] != p.x.shape[1:]:
        raise ValueError(f"forget inputs have shape {tuple(f.x.shape[1:])} but pool inputs have "
                         f"{tuple(p.x.shape[1:])}")  # fmt: skip
    check_inputs_fit(model, f, "forget set")
    work = copy.deepcopy(model).to(dev)
    work.eval()
    anchor = [q.detach().clone() for q in work.parameters()] if weight_decay > 0 else None
    opt = torch.optim.SGD(work.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(max_epochs):
        yield _mean_loss(work, f)
        picks = torch.randint(len(p), (samples_per_epoch,), generator=gen).to(dev)
        for start in range(0, samples_per_epoch, batch_size):
            idx = picks[start : start + batch_size]
            loss = F.cross_entropy(work(p.x[idx]), p.y[idx])
            if anchor is not None:
                loss = loss + l2_to_anchor(work, anchor, weight_decay)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def relearn_time(
    model: nn.Module,
    forget: Any,
    pool: Any,
    *,
    threshold: float | None = None,
    lr: float = 0.01,
    max_epochs: int = 100,
    samples_per_epoch: int = 500,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: DeviceLike = None,
) -> int:
    """Golatkar et al.'s relearn time: fine-tuning epochs until the forget loss is back.

    Follows ``readout_retrain`` / ``all_readouts`` in AdityaGolatkar/SelectiveForgetting
    (``Forgetting.ipynb``): a *copy* of ``model`` is fine-tuned with plain SGD (``lr`` 0.01,
    no momentum). Each "epoch" draws ``samples_per_epoch`` (500) samples with replacement
    from ``pool`` (the full training set, forget set included) in batches of
    ``batch_size`` (128). Before each epoch the mean cross-entropy on ``forget`` is measured;
    at the first epoch index ``e`` where it is ``<= threshold`` the function returns
    ``e + 1``. If the threshold is never met, it returns ``max_epochs`` (the notebook's
    ``retrain_time + 1`` after an exhausted loop), so ``max_epochs`` is a censored value:
    "at least this long". A model already at the threshold returns 1.

    ``threshold`` is required: pass the original model's forget loss plus 1e-5,
    :func:`relearn_threshold` (original, forget). As in the notebook's
    ``run_train_epoch``, the model stays in eval mode while it is fine-tuned (batch-norm
    statistics frozen, dropout off), and ``weight_decay`` adds ``weight_decay / 2 * ||w -
    w_start||^2``, an L2 pull toward the weights the readout started from; the notebook
    passes its training run's ``--weight-decay`` there (0.1 in its scripts), the default
    here is 0 (plain SGD).

    Sampling is seeded by ``seed`` and nothing else (loaders are read independently of the
    global random state too); the input model is never modified. A progress bar follows the
    epochs (see :func:`forgetkit.runtime.set_progress`).
    Lower means the forget set is relearned faster, i.e. more of it is still there; compare
    with the retrained oracle's value. To read off several thresholds from one run, use
    :func:`relearn_curve` and :func:`relearn_time_from_curve`.
    """
    _validate(model, True, threshold, lr, max_epochs, samples_per_epoch, batch_size,
              weight_decay)  # fmt: skip
    losses = _forget_losses(model, forget, pool, lr=lr, max_epochs=max_epochs,
                            samples_per_epoch=samples_per_epoch, batch_size=batch_size,
                            weight_decay=weight_decay, seed=seed, device=device)  # fmt: skip
    with progress(losses, desc="relearn time", total=max_epochs) as bar:
        for epoch, loss in enumerate(bar):
            if loss <= float(threshold):
                return epoch + 1
    return max_epochs


def relearn_curve(
    model: nn.Module,
    forget: Any,
    pool: Any,
    *,
    lr: float = 0.01,
    max_epochs: int = 100,
    samples_per_epoch: int = 500,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: DeviceLike = None,
) -> np.ndarray:
    """The forget-set loss before each of ``max_epochs`` readout epochs (same procedure,
    seed and arguments as :func:`relearn_time`), so that one fine-tuning run serves every
    threshold; see :func:`relearn_time_from_curve`."""
    _validate(model, False, None, lr, max_epochs, samples_per_epoch, batch_size, weight_decay)
    losses = _forget_losses(model, forget, pool, lr=lr, max_epochs=max_epochs,
                            samples_per_epoch=samples_per_epoch, batch_size=batch_size,
                            weight_decay=weight_decay, seed=seed, device=device)  # fmt: skip
    with progress(losses, desc="relearn curve", total=max_epochs) as bar:
        return np.fromiter(bar, dtype=np.float64, count=max_epochs)


def relearn_time_from_curve(curve: np.ndarray, threshold: float) -> int:
    """What :func:`relearn_time` returns for ``threshold``, read off a :func:`relearn_curve`:
    the first epoch (1-based) whose loss is ``<= threshold``, else ``len(curve)`` (censored).
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array, got shape {curve.shape}")
    if math.isnan(float(threshold)):
        raise ValueError("threshold is NaN")
    hits = np.flatnonzero(curve <= float(threshold))
    return int(hits[0]) + 1 if hits.size else int(curve.size)
