"""What a model says about a set of samples: logits, probabilities, losses, accuracy.

Every metric in this package starts here. :func:`predict` runs a model in evaluation mode,
without gradients, in batches, and hands back logits on the CPU; it leaves the model exactly
as it found it (each submodule's train/eval flag and the device it lives on).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgetkit.runtime import DeviceLike, model_device, resolve_device
from forgetkit.stream import Source, as_source, read_batch


def _check_model(model: Any, what: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_inputs_fit(model: nn.Module, data: Source, what: str) -> torch.dtype:
    """The dtype a model computes in: its weights' own, float32 or float64; inputs are cast
    to it, as training does. A model of mixed or other floating dtypes (half precision) is
    refused before any batch runs, naming ``what``."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    dtypes = sorted({str(t.dtype) for t in tensors if t.is_floating_point()})
    if len(dtypes) > 1 or (dtypes and dtypes[0] not in ("torch.float32", "torch.float64")):
        raise TypeError(
            f"{what}: the model's weights are {', '.join(dtypes)}; forgetkit computes in "
            "float32 or float64, one dtype per model (convert it: model.float())"
        )
    return getattr(torch, dtypes[0].removeprefix("torch.")) if dtypes else data.head(1).x.dtype


@contextlib.contextmanager
def evaluating(model: nn.Module, device: DeviceLike = None) -> Iterator[torch.device]:
    """Put ``model`` in eval mode (on ``device`` if given) for a block, then restore it.

    Restores every submodule's own ``training`` flag, so a model with, say, frozen batch-norm
    layers inside a training-mode network comes back exactly as it was; a model moved to
    ``device`` is moved back to where it was. Yields the device the model runs on.
    """
    modes = [(m, m.training) for m in model.modules()]
    home = model_device(model)
    dev = home if device is None else resolve_device(device)
    moved = dev != home
    if moved:
        model.to(dev)
    model.eval()
    try:
        yield dev
    finally:
        for m, mode in modes:
            m.training = mode
        if moved:
            model.to(home)


def predict(
    model: nn.Module,
    samples: Any,
    *,
    batch_size: int = 1024,
    device: DeviceLike = None,
    what: str = "samples",
) -> Tensor:
    """Logits of ``model`` on ``samples``, shape ``(n, classes)``, float32 on the CPU.

    ``samples`` is anything :meth:`~forgetkit.data.Samples.coerce` accepts. The model runs
    in eval mode with gradients off, ``batch_size`` inputs at a time, on ``device``
    (default: wherever the model already is); its mode and device are restored afterwards.
    Inputs are cast to the model's dtype (float32 or float64); a model of another or of
    mixed dtypes, or one that cannot take inputs of their shape, is refused naming ``what``
    (the samples' role in error messages).
    """
    _check_model(model)
    data = as_source(samples, what)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    dtype = check_inputs_fit(model, data, what)
    outs = []
    with evaluating(model, device) as dev, torch.no_grad():
        for start, (x, _) in enumerate(data.batches(read_batch(data, batch_size))):
            try:
                out = model(x.to(dev, dtype))
            except RuntimeError as err:
                if start:
                    raise
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
                raise ValueError(
                    f"{what}: the model failed on inputs of shape {tuple(x.shape[1:])} "
                    f"({first}); are these the inputs the model was built for?"
                ) from err
            if isinstance(out, tuple | list):  # models that also return features
                out = out[0]
            outs.append(out.detach().float().cpu())
    logits = torch.cat(outs)
    if logits.ndim != 2 or logits.shape[0] != len(data):
        raise ValueError(
            f"{what}: the model returned outputs of shape {tuple(logits.shape)} for "
            f"{len(data)} samples; expected (samples, classes) logits"
        )
    return logits


def probabilities(
    model: nn.Module, samples: Any, *, batch_size: int = 1024, device: DeviceLike = None
) -> Tensor:
    """Softmax of :func:`predict`: each row a probability vector over the classes."""
    return torch.softmax(predict(model, samples, batch_size=batch_size, device=device), dim=1)


def per_sample_loss(
    model: nn.Module, samples: Any, *, batch_size: int = 1024, device: DeviceLike = None
) -> Tensor:
    """Cross-entropy of each sample (natural log), shape ``(n,)``, on the CPU."""
    data = as_source(samples, "samples")
    logits = predict(model, data, batch_size=batch_size, device=device)
    return losses_from_logits(logits, data.y)


def losses_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy from precomputed logits (labels checked against classes)."""
    labels = torch.as_tensor(labels).long().cpu()
    _check_labels(labels, logits.shape[1])
    return F.cross_entropy(logits.float(), labels, reduction="none")


def entropy(probs: Tensor | np.ndarray) -> Tensor:
    """Shannon entropy (nats) of each row of a probability matrix, with ``0 log 0 = 0``.

    The feature of the entropy membership attacks; Golatkar et al.'s code computes it as
    ``-torch.where(p > 0, p * p.log(), 0).sum(-1)``, which is what this returns.
    """
    p = torch.as_tensor(probs)
    if not torch.is_floating_point(p):
        raise TypeError(f"probabilities must be floating point, got {p.dtype}")
    return torch.special.entr(p).sum(dim=-1)


def accuracy(
    model: nn.Module, samples: Any, *, batch_size: int = 1024, device: DeviceLike = None
) -> float:
    """Fraction of ``samples`` whose arg-max prediction equals the label, in [0, 1]."""
    data = as_source(samples, "samples")
    logits = predict(model, data, batch_size=batch_size, device=device)
    return accuracy_from_logits(logits, data.y)


def error(
    model: nn.Module, samples: Any, *, batch_size: int = 1024, device: DeviceLike = None
) -> float:
    """``1 - accuracy``: the error rate Golatkar et al. report."""
    return 1.0 - accuracy(model, samples, batch_size=batch_size, device=device)


def accuracy_from_logits(logits: Tensor, labels: Tensor) -> float:
    """Arg-max accuracy of precomputed logits (ties go to the lowest class index)."""
    labels = torch.as_tensor(labels).long().cpu()
    _check_labels(labels, logits.shape[1])
    return float((logits.argmax(dim=1) == labels).double().mean())


def _check_labels(labels: Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels span {int(labels.min())}..{int(labels.max())} but the model has "
            f"{num_classes} outputs"
        )
