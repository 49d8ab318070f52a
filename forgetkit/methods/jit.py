"""JiT: zero-shot unlearning by smoothing the network around each forget sample.

Foster et al. (arXiv 2402.01401; its first version was titled *Zero-Shot Machine Unlearning
at Scale via Lipschitz Regularization*) forget with nothing but the trained model and the
samples to forget. For each forget sample ``x`` they draw ``N`` Gaussian perturbations
``x'`` and minimise the mean ratio ``||f(x) - f(x')|| / ||x - x'||``, a Monte Carlo estimate
of the network's local Lipschitz constant around ``x``, with one pass of plain SGD over the
forget set. A function that is flat around a point no longer singles it out: its outputs
there are pulled toward those of the neighbourhood, and the decision boundary moves.

The official code (jwf40/Information-Theoretic-Unlearning at commit c967614,
``src/lipschitz.py:264-319``) differs from that description in four places.
:class:`~forgetkit.methods.JiT` reproduces it by default (``mode="official"``) and offers the
reading the method evidently means (``mode="corrected"``); each of the four can also be set
on its own:

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

How the perturbed copies are run (``path``) does not change the computation. The official
code runs one clean forward pass and then one forward pass per perturbation, each of ``B``
images (:func:`lipschitz_ratios_loop` does the same). The batched path
(:func:`lipschitz_ratios`) sends several perturbations through one forward pass, and keeps
the loop's batch-norm behaviour: every batch-norm layer in training mode normalises each
perturbation's ``B`` images with their own statistics and updates its running statistics
once per perturbation, in the loop's order (clean pass first, then perturbations 1..N), so
the weights and the running statistics equal the loop's up to float rounding (each
perturbation is normalised by the same kernel, so convolutional networks match to about
1e-6). The default, ``path="auto"``, takes whichever measured faster on idle CPU threads
(:func:`choose_path`: batched without convolutions, the loop with them), and a network with
convolutions but no batch norm runs in the channels-last layout on the CPU
(:func:`choose_memory_format`; the weights return in the default layout). Dropout in
training mode is the one difference: both paths draw an independent mask for every
perturbed image, but the
batched path draws them in one call and the loop in ``N`` calls, so the masks (not their
distribution) differ. The official code's masks cannot be matched
by either: on the CPU they come from the same global generator as its noise.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.runtime import progress, seeded

MODES = ("official", "corrected")
CLAMPS = ("batch", "image", "none")
REDUCTIONS = ("sum", "mean")
PATHS = ("auto", "batched", "loop")
_TINY = 1e-12  # an input change at or below this is degenerate: the ratio is undefined
# The batched path sends at most this many input elements through one forward pass (16 MiB
# in float32: 10 perturbations of a batch of 128 CIFAR images, all 25 of 128 MNIST ones).
# On two shared CPU threads, vgg_small's perturbed passes ran 1.4x to 1.55x faster per
# image than one a pass (2 to 13 a pass, no clear gain past 8), small_cnn's 1.75x (2) to 3x
# (25): the convolutions run faster per image on larger batches.
_CHUNK_ELEMENTS = 1 << 22

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


def _ratios(out: Tensor, out2: Tensor, x: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
    """Per (perturbation, sample) ``||out - out2|| / ||x - x2||``, shape ``(N, B)``, and the
    mask of degenerate pairs (input change at or below the floor), whose ratio is set to 0.

    A degenerate pair has no ratio: with dropout or batch norm in training mode the output
    still changes, and dividing by a vanishing input change gave ratios of 1e10 and more.
    """
    n, b = x2.shape[0], x.shape[0]
    in_norm = torch.linalg.vector_norm((x.unsqueeze(0) - x2).reshape(n, b, -1), dim=2)
    out_norm = torch.linalg.vector_norm((out.unsqueeze(0) - out2).reshape(n, b, -1), dim=2)
    degenerate = in_norm <= _TINY
    ratio = out_norm / in_norm.clamp_min(_TINY)
    return torch.where(degenerate, torch.zeros_like(ratio), ratio), degenerate


def _grouped_batch_norm(layer: _BatchNorm, groups: int, inp: Tensor) -> Tensor:
    """``layer``'s plain training-mode forward on ``inp`` as ``groups`` equal, consecutive
    batches, each normalised by the same kernel as a separate pass would (the same bits),
    written straight into one output: concatenating per-group outputs cost a copy of every
    activation. Running statistics are updated once per group, in order."""
    layer._check_input_dim(inp)
    out = torch.empty_like(inp)
    channels = inp.shape[1]
    saved = inp.new_empty(2, channels)  # the kernel's saved statistics, unused here
    track = layer.track_running_stats and layer.running_mean is not None
    for part, into in zip(inp.split(inp.shape[0] // groups), out.split(inp.shape[0] // groups),
                          strict=True):  # fmt: skip
        factor = 0.0 if layer.momentum is None else layer.momentum
        if track and layer.num_batches_tracked is not None:  # as _BatchNorm.forward does
            layer.num_batches_tracked.add_(1)
            if layer.momentum is None:
                factor = 1.0 / float(layer.num_batches_tracked)
        torch.ops.aten.native_batch_norm.out(
            part, layer.weight, layer.bias, layer.running_mean if track else None,
            layer.running_var if track else None, True, factor, layer.eps,
            out=into, save_mean=saved[0], save_invstd=saved[1],
        )  # fmt: skip
    return out


@contextmanager
def _batch_norm_per_group(model: nn.Module, groups: int) -> Iterator[None]:
    """Make every batch-norm layer in training mode treat its input as ``groups`` equal,
    consecutive batches: statistics per group, running statistics updated once per group in
    order, as ``groups`` separate forward passes would."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    if groups == 1 or not layers:
        yield
        return

    def grouped(layer: _BatchNorm):
        plain = type(layer).forward

        def forward(inp: Tensor) -> Tensor:
            # A group of one value per channel is left to the plain forward, which refuses it.
            if plain is _BatchNorm.forward and inp[: inp.shape[0] // groups, 0].numel() > 1:
                return _grouped_batch_norm(layer, groups, inp)
            return torch.cat([plain(layer, part) for part in inp.split(inp.shape[0] // groups)])

        return forward

    saved = [layer.__dict__.get("forward") for layer in layers]
    for layer in layers:
        layer.forward = grouped(layer)
    try:
        yield
    finally:
        for layer, before in zip(layers, saved, strict=True):
            del layer.forward
            if before is not None:
                layer.forward = before


def _estimate(
    model: nn.Module,
    x: Tensor,
    noise: Tensor | int,
    clamp: str,
    out: Tensor | None,
    path: str,
    draw: Callable[[], Tensor] | None = None,
) -> tuple[Tensor, int]:
    """Per-sample estimates ``(B,)`` and the number of degenerate pairs (``path`` is
    ``"batched"`` or ``"loop"``). ``noise`` holds the ``N`` perturbations, shape
    ``(N, *x.shape)``; or it is ``N`` and ``draw()`` returns one perturbation at a time, as
    the official loop draws them, so that only one perturbed batch is ever in memory."""
    if out is None:
        out = model(x)  # the clean pass first, as in the official code
    if draw is None:
        assert isinstance(noise, Tensor)
        n = noise.shape[0]
        step = 1 if path == "loop" else max(1, min(n, _CHUNK_ELEMENTS // max(1, x.numel())))
        chunks: Iterable[Tensor] = noise.split(step)
    else:
        chunks = (draw().unsqueeze(0) for _ in range(int(noise)))
    ratios, degenerate = [], 0
    for chunk in chunks:
        part = perturb(x, chunk, clamp)
        with torch.no_grad(), _batch_norm_per_group(model, part.shape[0]):
            out2 = model(part.reshape(-1, *x.shape[1:])).reshape(part.shape[0], *out.shape)
        r, d = _ratios(out, out2, x, part)
        ratios.append(r)
        degenerate += int(d.sum())
    return torch.cat(ratios).mean(0), degenerate


def _draw(x: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    """One perturbation of ``x``'s shape from the CPU generator ``gen``, on ``x``'s device.
    For a batch of a multiple of 16 elements (every dataset in the book) N consecutive draws
    equal one draw of all N at once (``tests/test_jit.py`` checks it)."""
    return (sigma * torch.randn(x.shape, generator=gen)).to(device=x.device, dtype=x.dtype)


def lipschitz_ratios(
    model: nn.Module, x: Tensor, noise: Tensor, *, clamp: str = "batch", out: Tensor | None = None
) -> Tensor:
    """The local Lipschitz estimate of ``model`` at each sample of ``x``: the ratio of output
    change to input change, averaged over the ``N`` perturbations in ``noise`` (shape
    ``(N, *x.shape)``); returns shape ``(B,)``. A perturbation that leaves an image unchanged
    (``||x - x'|| <= 1e-12``) contributes 0.

    The clean outputs ``out`` (computed here when not given) carry gradients; the perturbed
    ones do not, as in the official code. Several perturbations go through the model in one
    forward pass, with per-perturbation batch-norm statistics (module docstring).
    """
    return _estimate(model, x, noise, clamp, out, "batched")[0]


def lipschitz_ratios_loop(
    model: nn.Module, x: Tensor, noise: Tensor, *, clamp: str = "batch", out: Tensor | None = None
) -> Tensor:
    """:func:`lipschitz_ratios` with one forward pass per perturbation, as the official code
    runs it."""
    return _estimate(model, x, noise, clamp, out, "loop")[0]


def choose_path(model: nn.Module) -> str:
    """The ``path="auto"`` choice: ``"batched"`` for a network without convolutions, the
    per-perturbation ``"loop"`` for a convolutional one, and the loop for any network with
    a training-mode batch-norm layer that has a forward of its own (a subclass's), which
    the batched path could only run part by part.

    Measured on two otherwise idle CPU threads (one step, ``B = 128``, ``N = 25``, training
    mode, best of three interleaved rounds): the batched path beats the loop on the MNIST
    MLP (one large matrix product instead of ``N`` small ones), but the loop took 0.58x the
    batched path's time on ``small_cnn`` and 0.61x on ``vgg_small``, even with every group
    normalised straight into one output (``_grouped_batch_norm``). On a loaded machine
    the order reversed (1.3x to 2.5x for the batched path), because there every call pays a
    time slice; the default follows the idle measurement. Both give the same result.
    """
    custom = any(isinstance(m, _BatchNorm) and m.training and type(m).forward is not
                 _BatchNorm.forward for m in model.modules())  # fmt: skip
    convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return "loop" if custom or convolutional else "batched"


def choose_memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """The layout the step runs in: ``channels_last`` on the CPU for a network with 2-d
    convolutions (whose batches are 4-d) and no batch-norm layer, the default layout
    otherwise.

    Measured on this step in official mode (``B = 128``, ``N = 25``, 128 real images,
    float32, two idle CPU threads, best of three interleaved rounds, AMD EPYC): channels-last
    ran ``small_cnn`` 1.54x faster and its result lay as close to the same step in float64
    as the default layout's (max. rel. difference 1.7e-5 against 1.8e-5); on ``vgg_small``
    it ran 1.68x faster but further from the float64 step (8.5e-3 against 6.0e-3, which is
    also the official code's distance), so a network with batch norm keeps the default
    layout. CUDA is unmeasured and keeps it.
    """
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    normalised = any(isinstance(m, _BatchNorm) for m in model.modules())
    if torch.device(device).type == "cpu" and convolutional and not normalised:
        return torch.channels_last
    return torch.contiguous_format


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:  # fmt: skip
        raise ValueError(f"jit: {name} must be a positive finite number, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"jit: {name} must be one of {allowed} (or None: from mode), got "
                         f"{value!r}")  # fmt: skip


class DegeneratePerturbationWarning(UserWarning):
    """Some perturbations left their image unchanged and contributed nothing."""


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
    ``clamp`` override one behaviour each (``None``: as ``mode`` says). The forget set is
    visited in the given order, as the official forget loaders do (they never shuffle);
    ``shuffle=True`` draws the order from the seed instead.

    A perturbation that leaves its image unchanged (``||x - x'|| <= 1e-12``, e.g. a
    constant image under ``clamp="image"``) has no ratio: it contributes 0 to the loss, is
    counted in ``details["degenerate"]``, and a
    :class:`~forgetkit.methods.jit.DegeneratePerturbationWarning` says so (the official code
    divides by zero there).
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
            Draw the batch order from the seed; False (default) keeps the given order, as
            the official forget loaders do.
        path
            How the perturbed copies run: ``"loop"`` one forward pass per perturbation
            (the official structure), ``"batched"`` several per pass (same result up to
            rounding, batch norm included), ``"auto"`` the one measured faster for the kind
            of network (:func:`choose_path`). Changes the time, not the computation.
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
        shuffle: bool = False
        path: str = "auto"

        def __post_init__(self) -> None:
            _positive("sigma", self.sigma)
            _positive("lr", self.lr)
            for name in ("n_samples", "batch_size"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"jit: {name} must be an integer >= 1, got {value!r}")
            if self.mode not in MODES:
                raise ValueError(f"jit: mode must be one of {MODES}, got {self.mode!r}")
            if self.path not in PATHS:
                raise ValueError(f"jit: path must be one of {PATHS}, got {self.path!r}")
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
        path = choose_path(model) if hp.path == "auto" else hp.path
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.0)
        opt.zero_grad(set_to_none=True)  # once, before the pass (the official code)
        # Noise and batch order come from CPU generators seeded by the run's seed, and the
        # noise is moved to the device (as the official code draws it on the CPU and moves
        # it), so that the same seed gives the same perturbations on every device.
        seed = gen.initial_seed()
        noise_gen, order_gen = torch.Generator().manual_seed(seed), torch.Generator()
        order_gen.manual_seed(seed + 1)
        estimates: list[float] = []
        degenerate = pairs = 0
        batches = data.forget.batches(hp.batch_size, shuffle=hp.shuffle, generator=order_gen)
        layout = choose_memory_format(model, device)
        model.to(memory_format=layout)  # the working copy; the default layout is restored below
        with seeded(seed, device):  # dropout masks in training mode come from the seed too
            for x, _ in progress(batches, desc="jit", total=-(-len(data.forget) // hp.batch_size)):
                if not how["accumulate"]:
                    opt.zero_grad(set_to_none=True)
                # The N perturbations are drawn one after the other, as the official loop
                # draws them (lipschitz.py:291-292); the loop path holds one at a time.
                x = x.contiguous(memory_format=layout)
                draw = functools.partial(_draw, x, hp.sigma, noise_gen)
                if path == "loop":
                    ratios, bad = _estimate(model, x, hp.n_samples, how["clamp"], None, path, draw)
                else:
                    noise = torch.stack([draw() for _ in range(hp.n_samples)])
                    ratios, bad = _estimate(model, x, noise, how["clamp"], None, path)
                degenerate, pairs = degenerate + bad, pairs + hp.n_samples * x.shape[0]
                loss = ratios.sum() if how["reduction"] == "sum" else ratios.mean()
                loss.backward()
                opt.step()
                estimates.append(float(ratios.detach().mean()))
        model.to(memory_format=torch.contiguous_format)
        if degenerate:
            warnings.warn(
                f"jit: {degenerate} of {pairs} perturbations left their image unchanged "
                f"(||x - x'|| <= {_TINY:g}, e.g. a constant image under clamp="
                f"{how['clamp']!r}); they contributed 0 to the loss",
                DegeneratePerturbationWarning,
                stacklevel=3,
            )
        return {"behaviour": how, "path": path, "layout": str(layout).split(".")[-1],
                "steps": len(estimates),
                "degenerate": degenerate, "lipschitz_per_batch": estimates}  # fmt: skip
