"""JiT: zero-shot unlearning by smoothing the network around each forget sample.

Foster et al. (arXiv 2402.01401; its first version was titled *Zero-Shot Machine Unlearning
at Scale via Lipschitz Regularization*) forget with nothing but the trained model and the
samples to forget. For each forget sample ``x`` they draw ``N`` Gaussian perturbations
``x'`` and minimise the mean ratio ``||f(x) - f(x')|| / ||x - x'||``, a Monte Carlo estimate
of the network's local Lipschitz constant around ``x``, with one pass of plain SGD over the
forget set. A function that is flat around a point no longer singles it out: its outputs
there are pulled toward those of the neighbourhood, and the decision boundary moves.

The official code (jwf40/Information-Theoretic-Unlearning, ``src/lipschitz.py``) differs
from that description in four places. :class:`~forgetkit.methods.JiT` reproduces it by default
(``mode="official"``) and offers the reading the method evidently means
(``mode="corrected"``); each of the four can also be set on its own:

===============  ===================================================  ======================
behaviour        official code (``mode="official"``)                   ``mode="corrected"``
===============  ===================================================  ======================
``accumulate``   gradients never reset between batches: step k        reset before each batch
                 applies the sum of the gradients of batches 1..k
``reduction``    per-sample ratios *summed* over the batch            averaged over the batch
``train_mode``   the network is left in training mode (dropout        evaluation mode
                 active, batch-norm statistics used and updated)
``clamp``        perturbed inputs clamped to the min and max of the   of each image
                 whole batch
===============  ===================================================  ======================

In both modes the ``N`` perturbed copies of a batch go through the network in one batched
forward pass (:func:`lipschitz_ratios`); :func:`lipschitz_ratios_loop` is the per-perturbation
loop of the official code, kept as a reference for tests and benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.runtime import seeded

MODES = ("official", "corrected")
CLAMPS = ("batch", "image", "none")
REDUCTIONS = ("sum", "mean")
_TINY = 1e-12  # guards ||x - x'|| = 0 (a constant image clamped to itself)

_RESOLVED = {
    "official": {"accumulate": True, "reduction": "sum", "train_mode": True, "clamp": "batch"},
    "corrected": {"accumulate": False, "reduction": "mean", "train_mode": False, "clamp": "image"},
}


def perturb(x: Tensor, noise: Tensor, clamp: str = "batch") -> Tensor:
    """``x + noise`` clamped to the range of the clean inputs, for ``noise`` of shape
    ``(N, *x.shape)``: ``"batch"`` uses the min and max of the whole batch (the official
    code), ``"image"`` those of each image, ``"none"`` no clamp."""
    if clamp not in CLAMPS:
        raise ValueError(f"clamp must be one of {CLAMPS}, got {clamp!r}")
    if noise.shape[1:] != x.shape:
        raise ValueError(f"noise must have shape (N, {', '.join(map(str, x.shape))}), got "
                         f"{tuple(noise.shape)}")  # fmt: skip
    moved = x.unsqueeze(0) + noise
    if clamp == "none":
        return moved
    if clamp == "batch":
        return torch.clamp(moved, min=x.min(), max=x.max())
    flat = x.reshape(x.shape[0], -1)
    view = (1, x.shape[0]) + (1,) * (x.ndim - 1)
    lo, hi = flat.min(1).values.reshape(view), flat.max(1).values.reshape(view)
    return torch.maximum(torch.minimum(moved, hi), lo)


def _ratios(out: Tensor, out2: Tensor, x: Tensor, x2: Tensor) -> Tensor:
    """Per (perturbation, sample) ``||out - out2|| / ||x - x2||``, shape ``(N, B)``."""
    n, b = x2.shape[0], x.shape[0]
    in_norm = torch.linalg.vector_norm((x.unsqueeze(0) - x2).reshape(n, b, -1), dim=2)
    out_norm = torch.linalg.vector_norm((out.unsqueeze(0) - out2).reshape(n, b, -1), dim=2)
    return out_norm / in_norm.clamp_min(_TINY)


def lipschitz_ratios(
    model: nn.Module, x: Tensor, noise: Tensor, *, clamp: str = "batch", out: Tensor | None = None
) -> Tensor:
    """The local Lipschitz estimate of ``model`` at each sample of ``x``: the ratio of output
    change to input change, averaged over the ``N`` perturbations in ``noise`` (shape
    ``(N, *x.shape)``); returns shape ``(B,)``.

    The clean outputs ``out`` (computed here when not given) carry gradients; the perturbed
    ones do not, as in the official code. All ``N * B`` perturbed inputs go through the
    model in one forward pass.
    """
    if out is None:
        out = model(x)
    x2 = perturb(x, noise, clamp)
    with torch.no_grad():
        out2 = model(x2.reshape(-1, *x.shape[1:])).reshape(x2.shape[0], *out.shape)
    return _ratios(out, out2, x, x2).mean(0)


def lipschitz_ratios_loop(
    model: nn.Module, x: Tensor, noise: Tensor, *, clamp: str = "batch", out: Tensor | None = None
) -> Tensor:
    """:func:`lipschitz_ratios` with one forward pass per perturbation, as the official code
    runs it; a reference for tests and the benchmark, not for use."""
    if out is None:
        out = model(x)
    x2 = perturb(x, noise, clamp)
    per = []
    for j in range(noise.shape[0]):
        with torch.no_grad():
            out2 = model(x2[j])
        per.append(_ratios(out, out2.unsqueeze(0), x, x2[j : j + 1])[0])
    return torch.stack(per).mean(0)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:  # fmt: skip
        raise ValueError(f"jit: {name} must be a positive finite number, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"jit: {name} must be one of {allowed} (or None: from mode), got "
                         f"{value!r}")  # fmt: skip


@register
class JiT(UnlearningMethod):
    """Zero-shot unlearning by Lipschitz smoothing (Foster et al., JiT).

    One pass of plain SGD (no momentum) over the forget set, minimising for each batch the
    ratio of output change to input change under ``n_samples`` Gaussian input perturbations
    of standard deviation ``sigma`` (in the units of the normalised inputs). Needs the
    forget images only: no labels enter the update, and no retain data are read.

    Defaults are the official settings for random forgetting with the VGG on CIFAR-10
    (``sigma=0.01, lr=3e-4, n_samples=25, batch_size=128``); the official code uses
    ``sigma=0.5`` for a whole class. ``mode`` picks the official code's behaviour or the
    corrected one (module docstring); ``accumulate``, ``reduction``, ``train_mode`` and
    ``clamp`` override one behaviour each (``None``: as ``mode`` says). ``shuffle`` draws
    the batch order from the seed, as the official forget loader does; ``False`` keeps the
    given order.
    """

    name = "jit"
    needs = frozenset({"forget"})
    paper = "foster2024jit"

    @dataclass(frozen=True)
    class Hyperparameters:
        """JiT's knobs (defaults: the official random-forgetting settings).

        Parameters
        ----------
        sigma
            Standard deviation of the Gaussian input perturbations, in normalised units.
        lr
            Learning rate of the single SGD pass.
        n_samples
            Perturbations drawn per forget sample (the Monte Carlo size).
        batch_size
            Forget samples per step.
        mode
            ``"official"`` reproduces the official code, ``"corrected"`` the method as
            described (module docstring).
        accumulate
            Let gradients accumulate across batches (official) or reset them (None: as
            ``mode``).
        reduction
            ``"sum"`` or ``"mean"`` of the per-sample ratios over a batch (None: as
            ``mode``).
        train_mode
            Run the network in training mode while unlearning (None: as ``mode``).
        clamp
            Clamp perturbed inputs to the batch's range, each image's, or not at all
            (None: as ``mode``).
        shuffle
            Draw the batch order from the seed (as the official loader does); False keeps
            the given order.
        """

        sigma: float = 0.01
        lr: float = 3e-4
        n_samples: int = 25
        batch_size: int = 128
        mode: str = "official"
        accumulate: bool | None = None
        reduction: str | None = None
        train_mode: bool | None = None
        clamp: str | None = None
        shuffle: bool = True

        def __post_init__(self) -> None:
            _positive("sigma", self.sigma)
            _positive("lr", self.lr)
            for name in ("n_samples", "batch_size"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"jit: {name} must be an integer >= 1, got {value!r}")
            if self.mode not in MODES:
                raise ValueError(f"jit: mode must be one of {MODES}, got {self.mode!r}")
            _choice("reduction", self.reduction, REDUCTIONS)
            _choice("clamp", self.clamp, CLAMPS)
            for name in ("accumulate", "train_mode"):
                value = getattr(self, name)
                if value is not None and not isinstance(value, bool):
                    raise ValueError(f"jit: {name} must be True, False or None, got {value!r}")

        def behaviour(self) -> dict[str, Any]:
            """The four behaviours in effect: the mode's, with any override applied."""
            chosen = dict(_RESOLVED[self.mode])
            for key in chosen:
                if getattr(self, key) is not None:
                    chosen[key] = getattr(self, key)
            return chosen

    def _unlearn(
        self, model: nn.Module, data: ForgetData, device: torch.device, gen: torch.Generator
    ) -> dict[str, Any]:
        hp = self.hparams
        how = hp.behaviour()
        model.train(how["train_mode"])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.0)
        opt.zero_grad(set_to_none=True)  # once, before the pass (the official code)
        # Noise and batch order come from CPU generators seeded by the run's seed, so that
        # the same seed gives the same perturbations on every device.
        seed = gen.initial_seed()
        noise_gen, order_gen = torch.Generator().manual_seed(seed), torch.Generator()
        order_gen.manual_seed(seed + 1)
        estimates: list[float] = []
        batches = data.forget.batches(hp.batch_size, shuffle=hp.shuffle, generator=order_gen)
        with seeded(seed, device):  # dropout masks in training mode come from the seed too
            for x, _ in batches:
                if not how["accumulate"]:
                    opt.zero_grad(set_to_none=True)
                noise = hp.sigma * torch.randn((hp.n_samples, *x.shape), generator=noise_gen)
                noise = noise.to(device=x.device, dtype=x.dtype)
                ratios = lipschitz_ratios(model, x, noise, clamp=how["clamp"])
                loss = ratios.sum() if how["reduction"] == "sum" else ratios.mean()
                loss.backward()
                opt.step()
                estimates.append(float(ratios.detach().mean()))
        return {"behaviour": how, "steps": len(estimates), "lipschitz_per_batch": estimates}
