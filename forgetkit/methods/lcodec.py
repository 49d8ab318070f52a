"""L-CODEC (Mehta, Pal, Singh and Ravi, CVPR 2022): a Newton scrub restricted to the units
that a conditional-independence test says matter for the deleted sample.

Per removal request the method (1) perturbs the sample's input many times and records, for
every unit of every linear and convolution layer, its output (channel mean for
convolutions) and the loss; (2) selects units with FOCI on those perturbations
(:mod:`forgetkit.codec`), an estimate of the loss's Markov blanket among the units;
(3) maps each unit to its parameter slice (weight row or filter, and bias entry);
(4) takes Sekhari et al.'s removal step ``w_S += (1/(n-m)) (H + lambda I)^-1 g_S`` on those
slices only, with rank-one finite-difference Hessians from the last two training epochs and
from the sample; (5) adds Gaussian noise calibrated to an (epsilon, delta) certified-removal
bound; and (6) reverts the whole step if validation accuracy drops by more than
``val_gap_skip``. The two training-epoch gradients come from :class:`SaveEpochGradients`,
a training hook (see :meth:`~forgetkit.methods.UnlearningMethod.training_hooks`).

Where the official code (vsingh-group/LCODEC-deep-unlearning, read at commit 1d4873e)
departs from the paper, the default follows the paper's intent and the code's behaviour is a
named option: ``sample_hessian="official"``, ``epoch_gradient="official"``,
``shrink_n=False`` (it keeps ``n`` fixed as removals accumulate) and
``batch_rule="official"`` (it uses ``m = 1`` and a mean gradient for a batch of removals);
:data:`OFFICIAL_CODE` sets all four. Noise placement follows the code (``"selected"``); the
slides' ``"complement"`` is an option.

What the two ``"official"`` modes compute depends on the PyTorch version, because the code
keeps references to ``p.grad`` (``scrub/grad_utils.py:9``) and ``zero_grad`` zeroes those
tensors in place up to PyTorch 1.x but sets them to ``None`` from PyTorch 2.
``grad_semantics`` picks the version; the default, ``"torch1.8"``, is the one the
repository pins (``reqs.txt``: ``torch==1.8.1``), ``"torch2"`` the behaviour the code has
when run today. With ``d`` the number of selected parameters, ``g`` the sample's gradient on
them, ``N`` the samples in an epoch, ``g_b`` the mean gradient of batch ``b`` of ``B`` and
``k`` the number of dictionary keys under which ``getGradObjs`` (``grad_utils.py:3-12``)
files a parameter (its module and every enclosing module: 2 for a layer in a
``Sequential``):

* sample Hessian (``scrub_tools.py:276-329``): the second gradient is read from the first
  gradient's dictionary, the weights from the unchanged model, and ``PairwiseDistance``
  adds ``1e-6`` to each difference, so the divisor is ``d * 1e-6``. Under torch 1.8
  ``model.zero_grad()`` (line 280) has zeroed that dictionary, so the term is
  ``g g^T / (d * 1e-6)``; under torch 2 the dictionary still holds ``g`` and the term is 0.
* epoch gradient (``nn_utils.py:36-47, 64-71``): the per-batch dictionaries alias ``p.grad``
  and are summed in place, then divided by ``N``. Under torch 1.8 ``optim.zero_grad()``
  zeroes the running sum at every batch and each of the ``k`` in-place additions doubles
  the tensor: ``2^k g_B / N`` (``g_1 / N`` when ``B = 1``). Under torch 2 the first batch's
  tensor receives every later batch ``k`` times: ``(k sum_b g_b - (k - 1) g_1) / N``.

Layers with identical ``repr`` share dictionary keys in the official code; that collision is
not reproduced (forgetkit looks layers up by module path).
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from forgetkit.codec import foci
from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.runtime import progress
from forgetkit.stream import read_batch
from forgetkit.train import TrainHook

__all__ = ["OFFICIAL_CODE", "LCodec", "SaveEpochGradients", "UnitLayer", "newton_direction",
           "noise_std", "official_key_counts", "perturbation_features", "slice_indices",
           "unit_layers"]  # fmt: skip

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
KEYS = ("lcodec.grad_prev", "lcodec.grad_last", "lcodec.param_prev", "lcodec.param_last",
        "lcodec.batches", "lcodec.grad_ends", "lcodec.samples")  # fmt: skip
PDIST_EPS = 1e-6  # torch.nn.PairwiseDistance's default eps, added to every difference
OFFICIAL_CODE: dict[str, Any] = {"sample_hessian": "official", "epoch_gradient": "official",
                                 "shrink_n": False, "batch_rule": "official"}  # fmt: skip
"""The options that make :class:`LCodec` compute what the official code computes (under
``grad_semantics``, by default the pinned PyTorch 1.8.1): ``LCodec(**OFFICIAL_CODE)``."""


# --------------------------------------------------------------------------- training hook


class SaveEpochGradients(TrainHook):
    """Saves what the Newton step's "old" Hessian needs: the gradients summed over every
    batch of the last two epochs, the first and the last batch's gradient of each (which the
    official code's epoch gradient reduces to, see the module docstring), the weights at the
    end of each epoch, and the batch and sample counts.

    Gradients are copied (``torch.cat`` of detached tensors) at every step, never aliased to
    ``p.grad``, so the record is the same under every PyTorch version; ``grad_semantics``
    then reconstructs what the official code's aliasing made of them.
    """

    name = "lcodec-gradients"
    min_epochs = 2  # the gradients of the last two epochs

    def __init__(self) -> None:
        self._grads: list[Tensor | None] = [None, None]
        self._ends: list[list[Tensor]] = [[], []]  # per slot: [first batch, last batch]
        self._batches = [0, 0]
        self._samples = [0, 0]
        self._pending = 0
        self._param_prev: Tensor | None = None
        self._model: weakref.ReferenceType[nn.Module] | None = None
        self._restored: dict[str, Tensor] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "version": 2}

    def transform(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        self._pending = len(y)  # the batch's size, counted in after_backward
        return x, y

    def after_backward(self, model: nn.Module, epoch: int, n_epochs: int) -> None:
        slot = epoch - (n_epochs - 2)
        if slot < 0:
            return
        if slot == 0 and self._batches[1] > 0:  # a new training run with the same hook
            self.__init__()
        if slot == 1 and self._batches[1] == 0 and self._batches[0] > 0:
            self._param_prev = parameters_to_vector(model.parameters()).detach().clone()
        grads = [p.grad.detach().reshape(-1) if p.grad is not None
                 else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                 for p in model.parameters()]  # fmt: skip
        flat = torch.cat(grads)  # a new tensor: no alias of p.grad survives the step
        self._grads[slot] = flat if self._grads[slot] is None else self._grads[slot] + flat
        ends = self._ends[slot]
        self._ends[slot] = [flat, flat] if not ends else [ends[0], flat]
        self._batches[slot] += 1
        self._samples[slot] += self._pending
        self._pending = 0
        self._model = weakref.ref(model)

    def artifacts(self) -> dict[str, Tensor]:
        model = self._model() if self._model is not None else None
        if model is None or self._param_prev is None or self._grads[0] is None:
            return {}  # fewer than two epochs: the method will say what is missing
        last = parameters_to_vector(model.parameters()).detach().clone()
        return {
            "lcodec.grad_prev": self._grads[0].cpu(),
            "lcodec.grad_last": self._grads[1].cpu(),
            "lcodec.param_prev": self._param_prev.cpu(),
            "lcodec.param_last": last.cpu(),
            "lcodec.batches": torch.tensor(self._batches, dtype=torch.long),
            "lcodec.grad_ends": torch.stack([torch.stack(e) for e in self._ends]).cpu(),
            "lcodec.samples": torch.tensor(self._samples, dtype=torch.long),
        }

    def restore(self, artifacts: dict[str, Tensor]) -> None:
        self._restored = {k: v for k, v in artifacts.items() if k in KEYS}


def official_key_counts(model: nn.Module) -> Tensor:
    """For every entry of ``parameters_to_vector(model.parameters())``, the number of keys
    ``(str(module), name)`` under which the official ``getGradObjs`` (``grad_utils.py:3-12``)
    files its parameter: one per module that contains it (itself and each ancestor), fewer
    where two modules' ``repr`` collide (the later one then owns the key)."""
    owner: dict[tuple[str, str], int] = {}
    for module in model.modules():
        for name, p in module.named_parameters():
            owner[(str(module), name)] = id(p)
    counts: dict[int, int] = {}
    for pid in owner.values():
        counts[pid] = counts.get(pid, 0) + 1
    return torch.cat([torch.full((p.numel(),), float(counts.get(id(p), 0)), dtype=p.dtype,
                                 device=p.device) for p in model.parameters()])  # fmt: skip


# --------------------------------------------------------------------------- units and slices


@dataclass(frozen=True)
class UnitLayer:
    """One layer whose output units can be selected: its module path, the module, the
    number of units (output features or channels) and the first unit's global index."""

    path: str
    module: nn.Module
    units: int
    offset: int


def unit_layers(model: nn.Module) -> list[UnitLayer]:
    """Every linear and convolution layer with its own parameters, by module path, in
    registration order: the units L-CODEC can select from."""
    layers, offset = [], 0
    for path, module in model.named_modules():
        if isinstance(module, SUPPORTED) and any(True for _ in module.parameters(recurse=False)):
            units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            layers.append(UnitLayer(path, module, units, offset))
            offset += units
    if not layers:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f"lcodec: the model has no nn.Linear or nn.Conv1d/2d/3d layer to "
                         f"select units from (its modules: {kinds})")  # fmt: skip
    return layers


def perturbation_features(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    layers: list[UnitLayer],
    *,
    n_perturbations: int,
    std: float,
    generator: torch.Generator,
    chunk: int = 256,
) -> tuple[Tensor, Tensor]:
    """Features (n_perturbations, units) and losses (n_perturbations,) of ``x + std * noise``.

    For a linear layer a unit's feature is its output, for a convolution its channel mean
    over space; both are averaged over the samples of a batched request, and the loss is
    the mean cross-entropy over them, as in the official code. The noise is drawn from
    ``generator`` (on its own device) and moved to the model's, so CPU and GPU runs perturb
    alike.
    """
    captured: dict[str, list[Tensor]] = {}

    def hook(path: str):
        def record(_module: nn.Module, _inputs: Any, out: Tensor) -> None:
            captured.setdefault(path, []).append(out)

        return record

    handles = [layer.module.register_forward_hook(hook(layer.path)) for layer in layers]
    m = x.shape[0]
    feats, losses = [], []
    try:
        with torch.no_grad():
            for start in range(0, n_perturbations, chunk):
                c = min(chunk, n_perturbations - start)
                noise = torch.randn((c, *x.shape), generator=generator, device=generator.device,
                                    dtype=x.dtype).to(x.device)  # fmt: skip
                batch = (x[None] + std * noise).reshape(c * m, *x.shape[1:])
                captured.clear()
                out = model(batch)
                loss = F.cross_entropy(out, y.repeat(c), reduction="none").view(c, m).mean(1)
                parts = []
                for layer in layers:
                    calls = captured.get(layer.path, [])
                    if len(calls) != 1:
                        raise ValueError(f"lcodec: layer {layer.path!r} ran {len(calls)} times "
                                         f"in one forward pass; each must run once")  # fmt: skip
                    a = calls[0]
                    if isinstance(layer.module, nn.Linear):
                        a = a.reshape(c, m, -1, layer.units)
                    else:
                        a = a.reshape(c, m, layer.units, -1).transpose(2, 3)
                    parts.append(a.mean(dim=(1, 2)))
                feats.append(torch.cat(parts, 1))
                losses.append(loss)
    finally:
        for h in handles:
            h.remove()
    return torch.cat(feats), torch.cat(losses)


def slice_indices(model: nn.Module, layers: list[UnitLayer], units: list[int]) -> Tensor:
    """Positions, in ``parameters_to_vector(model.parameters())``, of the parameter slices of
    the given global unit indices: ``param[k]`` for every parameter of the unit's layer."""
    offsets, pos = {}, 0
    for p in model.parameters():
        offsets[id(p)] = pos
        pos += p.numel()
    bounds = torch.tensor([layer.offset for layer in layers])
    chunks = []
    for u in sorted(set(int(u) for u in units)):
        layer = layers[int(torch.searchsorted(bounds, u, right=True)) - 1]
        k = u - layer.offset
        for p in layer.module.parameters(recurse=False):
            if p.shape[0] != layer.units:
                raise ValueError(f"lcodec: parameter of {layer.path!r} with shape "
                                 f"{tuple(p.shape)} is not indexed by its {layer.units} "
                                 f"output units")  # fmt: skip
            row = p.numel() // p.shape[0]
            start = offsets[id(p)] + k * row
            chunks.append(torch.arange(start, start + row))
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)


# --------------------------------------------------------------------------- the update


def newton_direction(g: Tensor, terms: list[tuple[Tensor, float]], damping: float) -> Tensor:
    """``(damping I + sum_k c_k u_k u_k^T)^-1 g`` for rank-one terms ``(u_k, c_k)``, by the
    Woodbury identity: O(d) memory, where the dense matrix would need d^2."""
    terms = [(u, c) for u, c in terms if c != 0 and math.isfinite(c)]
    g64 = g.double()
    if not terms:
        return (g64 / damping).to(g.dtype)
    u = torch.stack([t.double() for t, _ in terms], 1)  # (d, K)
    inner = torch.diag(torch.tensor([1.0 / c for _, c in terms], dtype=torch.float64,
                                    device=g.device)) + u.T @ u / damping  # fmt: skip
    correction = u @ torch.linalg.solve(inner, u.T @ g64 / damping)
    return ((g64 - correction) / damping).to(g.dtype)


def noise_std(n: int, m: int, *, epsilon: float, delta: float, l2_reg: float,
              hessian_lipschitz: float = 0.25, lipschitz: float = 1.0) -> float:  # fmt: skip
    """``sigma = (gamma / epsilon) sqrt(2 ln(1.25 / delta))`` with
    ``gamma = 2 M L^2 m^2 / (n^2 lambda^3)``: the Gaussian mechanism on Sekhari et al.'s
    bound of the distance between the scrubbed and the retrained minimiser."""
    gamma = 2 * hessian_lipschitz * lipschitz**2 * m**2 / (n**2 * l2_reg**3)
    return gamma / epsilon * math.sqrt(2 * math.log(1.25 / delta))


def _flat_grad(model: nn.Module, x: Tensor, y: Tensor, reduction: str) -> tuple[Tensor, float]:
    params = [p for p in model.parameters()]
    loss = F.cross_entropy(model(x), y, reduction=reduction)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])  # fmt: skip
    return flat.detach(), float(loss.detach())


def _accuracy(model: nn.Module, data: Any, batch: int = 1024) -> float:
    with torch.no_grad():
        batches = data.batches(read_batch(data, batch))  # a streamed set: small batches
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    return hits / len(data)


@register
class LCodec(UnlearningMethod):
    """L-CODEC: FOCI-selected units, a restricted Newton removal step, calibrated noise and a
    validation revert check; removals are made one request at a time, in order."""

    name = "lcodec"
    needs = frozenset({"forget", "validation"})
    uses = frozenset({"retain"})
    record_keys = frozenset({*KEYS, "train_size"})
    paper = "mehta2022lcodec"

    @dataclass(frozen=True)
    class Hyperparameters:
        """L-CODEC's knobs; where the official code departs, its behaviour is the option
        named in the module docstring.

        Parameters
        ----------
        n_perturbations
            Perturbed copies of the removed sample's input fed to the unit selection.
        perturbation_std
            Standard deviation of those input perturbations.
        selection
            How units are chosen: ``"foci"``; ablations ``"full"`` (every unit),
            ``"random"`` (as many as FOCI picks) and ``"one"`` (a single random unit).
        foci_jitter
            Noise, relative to each column's spread, added to FOCI's inputs to break ties
            (0: tie-aware ranks; the official code keeps argsort order instead).
        epsilon
            Privacy budget of the certified-removal noise.
        delta
            Failure probability of that bound.
        l2_reg
            The ridge term ``lambda`` of the Newton step (and of the noise bound).
        hessian_lipschitz
            Lipschitz constant ``M`` of the Hessian assumed by the noise bound.
        lipschitz
            Lipschitz constant ``L`` of the loss assumed by the noise bound.
        hessian_approx
            Rank-one Hessians by finite differences (``"fd"``) or the outer product of
            gradients (``"fisher"``).
        sample_hessian
            The removed sample's Hessian: ``"finite_difference"``, or ``"official"`` (what
            the code computes under ``grad_semantics``: ``g g^T / (d * 1e-6)`` for torch
            1.8, zero for torch 2).
        fd_lr
            Size of the SGD step on the sample that the finite difference takes.
        epoch_gradient
            The saved epoch gradient: the mean over batches, or ``"official"`` (what the
            code saves under ``grad_semantics``: ``2^k g_B / N`` for torch 1.8,
            ``(k sum_b g_b - (k - 1) g_1) / N`` for torch 2; see the module docstring).
        grad_semantics
            Which PyTorch's ``zero_grad`` the two ``"official"`` modes reproduce:
            ``"torch1.8"`` (in-place zeroing, the version the official repository pins) or
            ``"torch2"`` (gradients set to None). No effect on the other modes.
        update
            Sekhari et al.'s removal step (``"sekhari"``), or ``"cr"``: the sample's
            regularised Newton step without noise.
        noise
            Add the calibrated Gaussian noise.
        noise_placement
            Noise on the selected slices (the code) or on the rest (``"complement"``).
        shrink_n
            Count the training set down as removals accumulate (ours; False: the code's
            fixed n).
        batch_rule
            How a batch of removals scales the step (``"sekhari"``, or ``"official"``: m = 1
            and a mean gradient).
        removal_batch
            Samples removed per request.
        val_gap_skip
            Revert a request's step when validation accuracy falls by more than this.
        residual_every
            Record the retain-set accuracy every this many requests (0: never).
        perturbation_chunk
            Perturbed inputs per forward pass (memory against speed; no effect on results).
        """

        n_perturbations: int = 1000
        perturbation_std: float = 0.1
        selection: str = "foci"  # "foci", ablations "full", "random" (as many as FOCI), "one"
        foci_jitter: float = 1e-6
        epsilon: float = 0.1
        delta: float = 0.01
        l2_reg: float = 0.01
        hessian_lipschitz: float = 0.25
        lipschitz: float = 1.0
        hessian_approx: str = "fd"  # "fd" (finite differences) or "fisher" (g g^T)
        sample_hessian: str = "finite_difference"  # or "official": see grad_semantics
        fd_lr: float = 1e-3
        epoch_gradient: str = "mean"  # or "official": as saved by the code, see grad_semantics
        grad_semantics: str = "torch1.8"  # the pinned torch==1.8.1; or "torch2"
        update: str = "sekhari"  # or "cr": (H_samp + lambda I)^-1 g, no noise
        noise: bool = True
        noise_placement: str = "selected"  # official code; "complement": the slides
        shrink_n: bool = True  # False: the official code's fixed n
        batch_rule: str = "sekhari"  # or "official": m = 1 and a mean gradient
        removal_batch: int = 1
        val_gap_skip: float = 0.05
        residual_every: int = 0
        perturbation_chunk: int = 256

        def __post_init__(self) -> None:
            choices = {
                "selection": ("foci", "full", "random", "one"),
                "hessian_approx": ("fd", "fisher"),
                "sample_hessian": ("finite_difference", "official"),
                "epoch_gradient": ("mean", "official"),
                "grad_semantics": ("torch1.8", "torch2"),
                "update": ("sekhari", "cr"),
                "noise_placement": ("selected", "complement"),
                "batch_rule": ("sekhari", "official"),
            }
            for key, allowed in choices.items():
                if getattr(self, key) not in allowed:
                    raise ValueError(f"lcodec: {key} must be one of {allowed}, got "
                                     f"{getattr(self, key)!r}")  # fmt: skip
            positive = ("n_perturbations", "perturbation_std", "epsilon", "l2_reg", "fd_lr",
                        "removal_batch", "perturbation_chunk")  # fmt: skip
            for key in positive:
                if not getattr(self, key) > 0:
                    raise ValueError(f"lcodec: {key} must be > 0, got {getattr(self, key)}")
            for key in ("lipschitz", "hessian_lipschitz"):  # 0 or less: no noise, silently
                if not getattr(self, key) > 0:
                    raise ValueError(f"lcodec: {key} must be > 0 (a Lipschitz constant of the "
                                     f"noise bound), got {getattr(self, key)}")  # fmt: skip
            if not self.foci_jitter >= 0:
                raise ValueError(f"lcodec: foci_jitter must be >= 0 (0: no jitter, tie-aware "
                                 f"ranks), got {self.foci_jitter}")  # fmt: skip
            if not 0 < self.delta < 1:
                raise ValueError(f"lcodec: delta must be in (0, 1), got {self.delta}")
            if self.n_perturbations < 3:
                raise ValueError(f"lcodec: n_perturbations must be >= 3, got "
                                 f"{self.n_perturbations}")  # fmt: skip
            if self.val_gap_skip < 0 or self.residual_every < 0:
                raise ValueError("lcodec: val_gap_skip and residual_every must be >= 0")

    def training_hooks(self) -> tuple[TrainHook, ...]:
        """One :class:`~forgetkit.methods.lcodec.SaveEpochGradients`: the old Hessian needs
        the last two epochs."""
        return (SaveEpochGradients(),)

    # ----------------------------------------------------------------------- helpers

    def _epoch_gradients(self, record: dict[str, Any], model: nn.Module,
                         index: Tensor, dev: torch.device) -> tuple[Tensor, Tensor]:  # fmt: skip
        """The saved gradients of the last two epochs on the slices, as the paper intends
        (the mean over batches) or as the official code saves them (module docstring)."""
        hp = self.hparams
        batches = record["lcodec.batches"].tolist()
        sums = (record["lcodec.grad_prev"], record["lcodec.grad_last"])
        if hp.epoch_gradient == "mean":
            return sums[0].to(dev)[index] / batches[0], sums[1].to(dev)[index] / batches[1]
        ends = record["lcodec.grad_ends"].to(dev)[..., index]  # (slot, first/last, d)
        samples = record["lcodec.samples"].tolist()
        k = official_key_counts(model).to(dev)[index]
        out = []
        for i in range(2):
            first, final = ends[i, 0], ends[i, 1]
            if hp.grad_semantics == "torch2":  # batch 1's tensor gets k copies of each later
                saved = k * sums[i].to(dev)[index] - (k - 1) * first
            else:  # zeroed in place each batch, then doubled by each of its k keys
                saved = 2**k * final if batches[i] > 1 else first
            out.append(saved / samples[i])
        return out[0], out[1]

    def _old_terms(self, record: dict[str, Any], model: nn.Module, index: Tensor,
                   dev: torch.device) -> tuple[Tensor, float, float]:  # fmt: skip
        """The rank-one old Hessian on the slices: ``u u^T * scale``."""
        g_prev, g_last = self._epoch_gradients(record, model, index, dev)
        if self.hparams.hessian_approx == "fisher":
            return g_prev, 1.0, 0.0
        dw = float((record["lcodec.param_prev"].to(dev)[index]
                    - record["lcodec.param_last"].to(dev)[index]).abs().sum())  # fmt: skip
        return g_prev - g_last, (1.0 / dw if dw > 0 else 0.0), dw

    def check_inputs(self, given: Any, record: Any) -> None:
        """As the base class, with a pointed message for the one record entry that the
        hook cannot make: the training-set size."""
        has_hook_keys = record is not None and all(record.get(k) is not None for k in KEYS)
        if has_hook_keys and record.get("train_size") is None:
            raise ValueError(
                "lcodec: the record lacks 'train_size', the number of samples the original was "
                "trained on (the n of the Newton step and of the noise). train_original records "
                "it; with your own training loop, use rec = forgetkit.train.TrainingRecorder("
                "method, epochs=..., train_size=len(train_set)) (rec.transform on each batch, "
                "rec.after_backward(model) after each backward) and pass record=rec.record()"
            )
        super().check_inputs(given, record)

    def _check_record(self, record: dict[str, Any], total: int) -> None:
        for key in KEYS[:4]:
            if record[key].numel() != total:
                raise ValueError(f"lcodec: record[{key!r}] has {record[key].numel()} entries but "
                                 f"the model has {total} parameters; the saved gradients come "
                                 f"from another architecture")  # fmt: skip
        ends = record["lcodec.grad_ends"]
        if tuple(ends.shape) != (2, 2, total):
            raise ValueError(f"lcodec: record['lcodec.grad_ends'] has shape {tuple(ends.shape)}, "
                             f"expected (2, 2, {total}): each of the last two epochs' first "
                             f"and last batch gradient")  # fmt: skip
        if int(record["train_size"]) < 2:
            raise ValueError(f"lcodec: train_size must be >= 2, got {record['train_size']}")

    # ----------------------------------------------------------------------- one request

    def _remove(self, model, layers, x, y, n, cpu_gen, record, dev) -> dict[str, Any]:
        hp = self.hparams
        m = x.shape[0]
        t0 = time.perf_counter()
        model.eval()
        feats, losses = perturbation_features(
            model, x, y, layers, n_perturbations=hp.n_perturbations, std=hp.perturbation_std,
            generator=cpu_gen, chunk=max(1, hp.perturbation_chunk // m),
        )  # fmt: skip
        total_units = feats.shape[1]
        scores: list[float] = []
        if hp.selection == "full":
            units = list(range(total_units))
        elif hp.selection == "one":
            units = [int(torch.randint(total_units, (1,), generator=cpu_gen))]
        else:
            picked = foci(losses, feats, jitter=hp.foci_jitter, generator=cpu_gen)
            units, scores = picked.selected, picked.scores
            if hp.selection == "random":
                units = torch.randperm(total_units, generator=cpu_gen)[: len(units)].tolist()
        index = slice_indices(model, layers, units).to(dev)
        t1 = time.perf_counter()

        reduction = "sum" if (hp.batch_rule == "sekhari" and m > 1) else "mean"
        m_eff = m if hp.batch_rule == "sekhari" else 1
        w = parameters_to_vector(model.parameters()).detach().clone()
        g_full, loss_before = _flat_grad(model, x, y, "mean")
        g_step = g_full * m if reduction == "sum" else g_full
        g = g_step[index]
        terms: list[tuple[Tensor, float]] = []
        samp_vec, samp_coef = None, 0.0  # None: a zero sample Hessian
        if hp.hessian_approx == "fisher":
            samp_vec, samp_coef = g, 1.0
        elif hp.sample_hessian == "official" and hp.grad_semantics == "torch1.8":
            # the code's second gradient was zeroed in place, its weight difference is
            # PairwiseDistance's eps alone: g g^T / (d * 1e-6) (scrub_tools.py:276-329)
            samp_vec, samp_coef = g, 1.0 / (max(1, index.numel()) * PDIST_EPS)
        elif hp.sample_hessian == "finite_difference":
            w2 = w - hp.fd_lr * g_step  # one SGD step on the sample, as the paper intends
            vector_to_parameters(w2, model.parameters())
            g2, _ = _flat_grad(model, x, y, reduction)
            vector_to_parameters(w, model.parameters())
            dw = float((w - w2)[index].abs().sum())
            samp_vec, samp_coef = (g_step - g2)[index], (1.0 / dw if dw > 0 else 0.0)
        if hp.update == "sekhari":
            u, coef, _ = self._old_terms(record, model, index, dev)
            terms.append((u, coef * n / (n - m_eff)))
            if samp_vec is not None:
                terms.append((samp_vec, -samp_coef / (n - m_eff)))
            step = newton_direction(g, terms, hp.l2_reg) / (n - m_eff)
        else:
            if samp_vec is not None:
                terms.append((samp_vec, samp_coef))
            step = newton_direction(g, terms, hp.l2_reg)
        new = w.clone()
        new[index] += step
        sigma = 0.0
        if hp.noise and hp.update == "sekhari":
            sigma = noise_std(n, m_eff, epsilon=hp.epsilon, delta=hp.delta, l2_reg=hp.l2_reg,
                              hessian_lipschitz=hp.hessian_lipschitz,
                              lipschitz=hp.lipschitz)  # fmt: skip
            if hp.noise_placement == "selected":
                target = index
            else:
                mask = torch.ones(len(w), dtype=torch.bool, device=dev)
                mask[index] = False
                target = torch.nonzero(mask)[:, 0]
            draw = torch.randn(len(target), generator=cpu_gen, dtype=w.dtype).to(dev)
            new[target] += sigma * draw
        vector_to_parameters(new, model.parameters())
        g_after, loss_after = _flat_grad(model, x, y, "mean")
        t2 = time.perf_counter()
        return {
            "units": [self._unit_name(layers, u) for u in units],
            "foci_scores": scores,
            "n_units": len(units),
            "n_params": int(index.numel()),
            "n": n,
            "m": m,
            "noise_std": sigma,
            "step_norm": float(step.norm()),
            "grad_norm_before": float(g_full.norm()),
            "grad_norm_after": float(g_after.norm()),
            "loss_before": loss_before,
            "loss_after": loss_after,
            "selection_seconds": t1 - t0,
            "update_seconds": t2 - t1,
            "_previous": w,
        }

    @staticmethod
    def _unit_name(layers: list[UnitLayer], u: int) -> str:
        for layer in reversed(layers):
            if u >= layer.offset:
                return f"{layer.path}[{u - layer.offset}]"
        raise AssertionError(u)

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        hp = self.hparams
        record = {k: (v.to(device) if isinstance(v, Tensor) and k in KEYS[:4] else v)
                  for k, v in data.record.items()}  # fmt: skip
        total = sum(p.numel() for p in model.parameters())
        self._check_record(record, total)
        layers = unit_layers(model)
        cpu_gen = torch.Generator().manual_seed(gen.initial_seed())
        model.eval()
        val_acc = _accuracy(model, data.validation)
        initial_val = val_acc
        n = int(record["train_size"])
        removed, reverted, log = [], [], []
        forget = data.forget
        removals = range(0, len(forget), hp.removal_batch)
        for i, start in enumerate(progress(removals, desc="lcodec removals")):
            idx = list(range(start, min(start + hp.removal_batch, len(forget))))
            x, y = forget.x[idx], forget.y[idx]
            entry = self._remove(model, layers, x, y, n, cpu_gen, record, device)
            previous = entry.pop("_previous")
            acc = _accuracy(model, data.validation)
            entry.update(request=i, samples=idx, val_acc_before=val_acc, val_acc_after=acc)
            if val_acc - acc > hp.val_gap_skip:
                vector_to_parameters(previous, model.parameters())
                entry["reverted"] = True
                reverted.extend(idx)
            else:
                entry["reverted"] = False
                removed.extend(idx)
                val_acc = acc
                if hp.shrink_n:
                    n -= len(idx) if hp.batch_rule == "sekhari" else 1
                    if n < 2:
                        raise ValueError(f"lcodec: more removals than training samples "
                                         f"(train_size {record['train_size']})")  # fmt: skip
            every = hp.residual_every
            if data.retain is not None and every and ((i + 1) % every == 0 or
                                                      idx[-1] == len(forget) - 1):  # fmt: skip
                entry["residual_acc"] = _accuracy(model, data.retain)
            log.append(entry)
        unchanged = bool(reverted) and not removed
        # unlearn() warns once for an unchanged model, with this reason.
        reason = (f"all {len(reverted)} removal requests were reverted, each cutting "
                  f"validation accuracy by more than val_gap_skip={hp.val_gap_skip}")  # fmt: skip
        return {
            "removals": log,
            "removed": removed,
            "reverted": reverted,
            "unchanged": unchanged,
            **({"unchanged_reason": reason} if unchanged else {}),
            "grad_semantics": hp.grad_semantics,
            "val_acc_before": initial_val,
            "val_acc_after": val_acc,
            "units_total": sum(layer.units for layer in layers),
            "layers": [layer.path for layer in layers],
        }
