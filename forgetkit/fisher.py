"""The diagonal of the Fisher information matrix, computed with per-sample gradients.

For a classifier with softmax outputs ``p(x)`` and logits ``z(x)``, the *true* Fisher takes
the expectation of the squared score over the model's own predictive distribution::

    F = 1/N  sum_x  sum_k  p_k(x) * g_k(x)**2,       g_k(x) = grad_w CE(z(x), k)

and the *empirical* Fisher uses the true label only: ``F = 1/N sum_x g_y(x)**2``.
Golatkar et al.'s Fisher forgetting uses the true Fisher, computed in their notebook one
sample and one class at a time (batch size 1, ``C`` backward passes per sample, model in
eval mode). Here the same numbers come from one forward pass per sample and ``C``
vector-Jacobian products, all vectorised with :mod:`torch.func` over samples *and* classes:
since the gradient of the cross-entropy with respect to the logits is ``p - e_k``, each
``g_k`` is a vector-Jacobian product of the logits with the cotangent ``p - e_k``, and the
forward pass is shared by all classes.

The caller's model is not modified: parameters are read, never written, no ``.grad`` is
left behind and every submodule's train/eval mode is restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from forgetkit.data import Samples
from forgetkit.runtime import DeviceLike, model_device, resolve_device

FisherKind = Literal["true", "empirical"]
KINDS = ("true", "empirical")

__all__ = ["KINDS", "FisherKind", "eval_mode", "fisher_diagonal", "fisher_diagonal_loop"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for a block, then restore each one's own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _check(model: nn.Module, samples: Any, kind: str, batch_size: int) -> Samples:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return Samples.coerce(samples, "Fisher samples")


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no parameter that requires a gradient")
    return named


def _linear_shortcuts(
    model: nn.Module, run: Callable[[], Any], trainable: dict[str, Tensor]
) -> dict[str, tuple[str, str | None]]:
    """Linear modules whose weight Fisher factorises: ``{module: (weight name, bias name)}``.

    A per-sample gradient of a linear layer ``z = W a + b`` seen once per sample with a
    single input vector is the outer product ``delta a^T``, so ``sum_k p_k g_k**2`` is
    ``(sum_k p_k delta_k**2) (a**2)^T`` exactly: only the gradients with respect to the
    layer's *output* are needed. Eligible: ``nn.Linear`` modules with a trainable, unshared
    weight, called exactly once per forward pass on a ``(batch, features)`` input whose
    rows are the samples (checked on a batch-1 forward; layers that see sequences,
    reshaped batches or repeated calls take the general path).
    """
    owners: dict[int, int] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    name_of = {id(p): n for n, p in model.named_parameters()}
    calls: dict[str, list[tuple[int, ...]]] = {}
    handles = []
    candidates = {}
    for mname, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or not mod.weight.requires_grad:
            continue
        own = [mod.weight] + ([mod.bias] if mod.bias is not None else [])
        if any(owners[id(p)] != 1 for p in own) or name_of.get(id(mod.weight)) not in trainable:
            continue
        bias = mod.bias
        bias_name = name_of[id(bias)] if bias is not None and bias.requires_grad else None
        candidates[mname] = (name_of[id(mod.weight)], bias_name)

        def hook(_m, inputs, _out, key=mname):
            calls.setdefault(key, []).append(tuple(inputs[0].shape[:-1]))

        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    # ``run`` is a batch-1 forward: eligible layers saw one input of shape (1, features).
    return {k: v for k, v in candidates.items() if calls.get(k) == [(1,)]}


def fisher_diagonal(
    model: nn.Module,
    samples: Any,
    *,
    kind: FisherKind = "true",
    batch_size: int = 64,
    class_chunk: int | None = None,
    linear_shortcut: bool = True,
    device: DeviceLike = None,
) -> dict[str, Tensor]:
    """The diagonal Fisher of ``model`` on ``samples``, one tensor per trainable parameter.

    Args:
        model: a classifier returning logits; evaluated in eval mode (batch norm uses its
            running statistics, dropout is off), as in the official code.
        samples: :class:`~forgetkit.data.Samples`, an ``(x, y)`` pair, a ``TensorDataset``
            or a ``DataLoader``. Labels are used only by ``kind="empirical"``.
        kind: ``"true"`` (expectation over the model's predictive distribution, the
            official code's Fisher) or ``"empirical"`` (squared gradient at the label).
        batch_size: samples vectorised together; memory grows as
            ``batch_size * classes * parameters`` (parameters of linear layers excepted
            when ``linear_shortcut`` applies).
        class_chunk: with the true Fisher, classes vectorised together (all by default);
            lower it for many classes and large models to bound memory.
        linear_shortcut: for ``nn.Linear`` layers applied once to a feature vector, use
            the exact factorisation ``sum_k p_k (delta_k a^T)**2 =
            (sum_k p_k delta_k**2)(a**2)^T`` instead of materialising per-sample, per-class
            weight gradients. Same numbers up to float rounding, much less memory and time
            for fully connected layers.
        device: where to compute (default: the model's device). The model itself is not
            moved: its tensors are copied there.

    Returns:
        ``{name: diagonal}`` for every parameter with ``requires_grad``, each with the
        parameter's shape, averaged over the samples. Frozen parameters are absent.
    """
    data = _check(model, samples, kind, batch_size)
    if class_chunk is not None and class_chunk < 1:
        raise ValueError(f"class_chunk must be at least 1, got {class_chunk}")
    dev = model_device(model) if device is None else resolve_device(device)
    names = [n for n, _ in _trainable(model)]
    trainable = {n: p.detach().to(dev) for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().to(dev) for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach().to(dev) for n, b in model.named_buffers()}
    dtype = trainable[names[0]].dtype
    acc = {n: torch.zeros_like(trainable[n]) for n in names}

    with eval_mode(model):
        example = data.x[:1].to(dev, dtype)
        shortcuts = (
            _linear_shortcuts(
                model,
                lambda: functional_call(model, (trainable, frozen, buffers), (example,)),
                trainable,
            )
            if linear_shortcut
            else {}
        )
        fixed_names = {n for pair in shortcuts.values() for n in pair if n is not None}
        diff = {n: t for n, t in trainable.items() if n not in fixed_names}
        fixed = {n: t for n, t in trainable.items() if n in fixed_names}
        out_features = {m: trainable[w].shape[0] for m, (w, _) in shortcuts.items()}
        state: dict[str, Any] = {"probes": None, "inputs": {}}

        def probe_hook(_m: nn.Module, inputs: tuple, output: Tensor, key: str) -> Tensor | None:
            if state["probes"] is None:
                return None
            state["inputs"][key] = inputs[0]
            return output + state["probes"][key]

        def forward(ps: dict[str, Tensor], probes: dict[str, Tensor], x: Tensor):
            state["probes"], state["inputs"] = probes, {}
            try:
                z = functional_call(model, (ps, fixed, frozen, buffers), (x.unsqueeze(0),))
            finally:
                state["probes"] = None
            return z.squeeze(0), dict(state["inputs"])

        def per_sample(x: Tensor, y: Tensor):
            probes = {
                m: torch.zeros(1, k, device=dev, dtype=dtype) for m, k in out_features.items()
            }
            z, pullback, inputs = vjp(lambda ps, pr: forward(ps, pr, x), diff, probes, has_aux=True)
            prob = torch.softmax(z.detach(), dim=-1)
            num_classes = z.shape[-1]
            if kind == "empirical":
                # d CE(z, y) / dz = p - e_y
                cot = (prob - F.one_hot(y, num_classes).to(dtype)).unsqueeze(0)
                weights = torch.ones(1, dtype=dtype, device=dev)
            else:
                # Row k is d CE(z, k) / dz = p - e_k, weighted by p_k.
                cot = prob.unsqueeze(0) - torch.eye(num_classes, dtype=dtype, device=dev)
                weights = prob
            step = len(cot) if class_chunk is None else class_chunk
            total: dict[str, Tensor] = {}
            for start in range(0, len(cot), step):
                g_diff, g_probe = vmap(pullback)(cot[start : start + step])
                w = weights[start : start + step]
                for n, g in (*g_diff.items(), *((f"@{m}", g[:, 0]) for m, g in g_probe.items())):
                    part = torch.tensordot(w, g.square(), dims=1)
                    total[n] = total[n] + part if n in total else part
            inputs_sq = {m: a[0].detach().square() for m, a in inputs.items()}
            return total, inputs_sq

        batched = vmap(per_sample)
        handles = [
            mod.register_forward_hook(lambda m, i, o, key=mname: probe_hook(m, i, o, key))
            for mname, mod in model.named_modules()
            if mname in shortcuts
        ]
        try:
            for x, y in data.batches(batch_size):
                total, inputs_sq = batched(x.to(dev, dtype), y.to(dev))
                for n in diff:
                    acc[n] += total[n].sum(0)
                for m, (w, b) in shortcuts.items():
                    delta_sq = total[f"@{m}"]  # (batch, out): sum_k p_k delta_k**2
                    acc[w] += delta_sq.T @ inputs_sq[m]
                    if b is not None:
                        acc[b] += delta_sq.sum(0)
        finally:
            for h in handles:
                h.remove()
    return {n: acc[n] / len(data) for n in names}


def fisher_diagonal_loop(
    model: nn.Module,
    samples: Any,
    *,
    kind: FisherKind = "true",
    device: DeviceLike = None,
) -> dict[str, Tensor]:
    """The same diagonal Fisher the slow way: one sample and one class per backward pass.

    This mirrors the structure of the official ``hessian`` function (batch size 1, model in
    eval mode, a backward pass per class with the graph retained, ``p_k * g_k**2``
    accumulated, divided by the number of samples). It exists as a reference for tests and
    benchmarks; use :func:`fisher_diagonal`.
    """
    data = _check(model, samples, kind, 1)
    dev = model_device(model) if device is None else resolve_device(device)
    if dev != model_device(model):
        raise ValueError("fisher_diagonal_loop computes on the model's own device")
    named = _trainable(model)
    params = [p for _, p in named]
    acc = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in params]
    with eval_mode(model):
        for i in range(len(data)):
            x, y = data.x[i : i + 1].to(dev), data.y[i : i + 1].to(dev)
            out = model(x)
            prob = torch.softmax(out.detach(), dim=-1)[0]
            classes = [int(y)] if kind == "empirical" else range(out.shape[-1])
            for k in classes:
                target = torch.full_like(y, k)
                loss = F.cross_entropy(out, target)
                grads = torch.autograd.grad(loss, params, retain_graph=True)
                weight = 1.0 if kind == "empirical" else prob[k]
                for a, g in zip(acc, grads, strict=True):
                    a += weight * g.detach().square()
    return {n: a / len(data) for (n, _), a in zip(named, acc, strict=True)}
