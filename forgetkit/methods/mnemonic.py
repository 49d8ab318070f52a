"""One-shot class unlearning with mnemonic codes (Yamashita, Yamada and Shibata, ACML 2024).

Training ties each class to a fixed random image, its *mnemonic code*, by replacing a
fraction ``t_mix`` of the training inputs with their class's code
(:class:`~forgetkit.methods.MnemonicCodes`, a :class:`~forgetkit.train.TrainHook`). At
forget time the codes stand in for the data: the diagonal Fisher of the forgotten classes'
codes and of the remaining classes' codes gives each weight's sensitivity ratio, and the
weights are pushed along it in one step (:class:`~forgetkit.methods.MnemonicUnlearning`).
No training sample is read at forget time; only the labels of the forget request, to know
which classes go.

The official code (tomyamkum/OneShotMU-with-MNCode) is followed by default; where it has a
quirk or an unverified reading of the paper exists, the alternative is a named option.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from forgetkit.cache import hash_payload
from forgetkit.data import Samples
from forgetkit.fisher import eval_mode, fisher_diagonal
from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.metrics.predictions import predict
from forgetkit.runtime import DeviceLike
from forgetkit.train import TrainedModel, TrainHook
from forgetkit.validation import param, validate

__all__ = [
    "MnemonicCodes",
    "MnemonicUnlearning",
    "draw_code",
    "paper_metrics",
    "perturbation",
    "sensitivity_ratio",
]

CODES, COUNTS = "mnemonic_codes", "mnemonic_counts"
SIGNS = ("select", "plus", "minus")
PERTURBATIONS = ("deterministic", "gaussian")


def _check_normalization(normalization: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple:
    if normalization in ((), None):
        return ()
    try:
        mean, std = (tuple(float(v) for v in part) for part in normalization)
    except (TypeError, ValueError):
        raise ValueError(f"code_normalization must be () or (mean, std) tuples, got "
                         f"{normalization!r}") from None  # fmt: skip
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ValueError(f"code_normalization needs as many positive stds as means, got "
                         f"{normalization!r}")  # fmt: skip
    return mean, std


def draw_code(cls: int, shape: tuple[int, ...], seed: int, normalization: Any = ()) -> Tensor:
    """The mnemonic code of class ``cls``: uniform noise in [0, 1], one value per input element.

    Drawn from a generator of its own, seeded by ``(seed, cls)``, so a class's code does not
    depend on the order in which classes first appear. With ``normalization=(mean, std)``
    the [0, 1] values are treated as pixels and normalised per channel like the data; with
    ``()`` they enter the network as they are (what the official code feeds its networks).
    """
    sub = int(hash_payload({"mnemonic_code": int(cls), "seed": int(seed)})[:8], 16)
    code = torch.rand(tuple(shape), generator=torch.Generator().manual_seed(sub))
    norm = _check_normalization(normalization)
    if norm:
        mean, std = (torch.tensor(v).view(-1, *([1] * (len(shape) - 1))) for v in norm)
        code = (code - mean) / std
    return code


class MnemonicCodes(TrainHook):
    """Replace each training input by its class's code with probability ``t_mix``.

    The codes are drawn once per class (lazily, when a class first appears, from ``seed``);
    the replacement draws come from the generator the training loop passes to
    ``transform``, so the same seed gives the same training. Artifacts:
    ``mnemonic_codes`` (one code per label ``0..C-1``) and ``mnemonic_counts`` (how many
    training inputs each code replaced; a class with count 0 is not covered). One instance
    may serve several trainings: a new training loop (a new generator) starts it afresh.
    """

    name = "mnemonic_codes"

    def __init__(self, t_mix: float = 0.1, seed: int = 0, normalization: Any = ()) -> None:
        if not 0.0 <= float(t_mix) <= 1.0:
            raise ValueError(f"{self.name}: t_mix must lie in [0, 1], got {t_mix}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{self.name}: seed must be an int >= 0, got {seed!r}")
        self.t_mix, self.seed = float(t_mix), int(seed)
        self.normalization = _check_normalization(normalization)
        self._reset(None)

    def _reset(self, run: torch.Generator | None) -> None:
        self._run = run
        self._codes: Tensor | None = None
        self._counts: Tensor | None = None

    def fingerprint(self) -> dict[str, Any]:
        norm = [list(part) for part in self.normalization]
        return {"name": self.name, "t_mix": self.t_mix, "seed": self.seed,
                "normalization": norm, "version": 1}  # fmt: skip

    def _grow(self, num_labels: int, shape: tuple[int, ...], device: torch.device) -> None:
        have = 0 if self._codes is None else len(self._codes)
        if self._codes is not None and tuple(self._codes.shape[1:]) != shape:
            raise ValueError(f"{self.name}: inputs of shape {shape} after inputs of shape "
                             f"{tuple(self._codes.shape[1:])}")  # fmt: skip
        if num_labels <= have:
            return
        new = torch.stack([draw_code(c, shape, self.seed, self.normalization)
                           for c in range(have, num_labels)]).to(device)  # fmt: skip
        zeros = torch.zeros(num_labels - have, dtype=torch.long, device=device)
        self._codes = new if self._codes is None else torch.cat([self._codes, new])
        self._counts = zeros if self._counts is None else torch.cat([self._counts, zeros])

    def transform(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        if gen is not self._run:
            self._reset(gen)
        self._grow(int(y.max()) + 1, tuple(x.shape[1:]), x.device)
        assert self._codes is not None and self._counts is not None
        if self._codes.device != x.device:
            self._codes, self._counts = self._codes.to(x.device), self._counts.to(x.device)
        replace = (torch.rand(len(y), generator=gen, device=gen.device) < self.t_mix).to(x.device)
        x = torch.where(replace.view(-1, *([1] * (x.ndim - 1))), self._codes[y].to(x.dtype), x)
        self._counts += torch.bincount(y[replace], minlength=len(self._counts))
        return x, y

    def artifacts(self) -> dict[str, Tensor]:
        if self._codes is None or self._counts is None:
            return {}
        return {CODES: self._codes.detach().cpu(), COUNTS: self._counts.detach().cpu()}

    def restore(self, artifacts: dict[str, Tensor]) -> None:
        self._reset(None)
        if CODES in artifacts:
            self._codes, self._counts = artifacts[CODES], artifacts[COUNTS]


# --------------------------------------------------------------------------- the scrub


def sensitivity_ratio(fisher_forget: Tensor, fisher_remain: Tensor) -> Tensor:
    """``log F_f - log F_r`` with the official guards: NaN becomes 0 (ratio 1), an infinite
    value becomes the tensor's largest finite one (both signs, as in the official code,
    main.py:71-74 at commit b621078).

    With the epsilon both Fishers carry (``1e-16 / n``, utils.py:157 and 180-181) neither
    guard fires: a weight with zero gradient on every code gets ``n_r / n_f`` (9 for one
    class forgotten of ten), not 1. The guards matter only for Fishers passed without it.
    Returned in log space: the ratio itself can overflow float32 where ``F_r`` is tiny.
    """
    log_r = fisher_forget.log() - fisher_remain.log()
    finite = torch.isfinite(log_r)
    if bool(finite.all()):  # the usual case: both Fishers carry the epsilon
        return log_r
    log_r = torch.where(torch.isnan(log_r), torch.zeros_like(log_r), log_r)
    finite = torch.isfinite(log_r)
    top = log_r[finite].max() if bool(finite.any()) else log_r.new_zeros(())
    return torch.where(torch.isinf(log_r), top, log_r)


def perturbation(log_ratio: Tensor, lambda1: float, lambda2: float) -> tuple[Tensor, float]:
    """The official per-tensor step ``s * r`` with ``s = min(lambda1, lambda2 / max r)``.

    Every element moves by at most ``lambda1 * r`` and the largest move of the tensor is
    at most ``lambda2``. Computed as ``exp(log s + log r)`` so that it stays finite.
    Returns the step and ``log s``.
    """
    top = float(log_ratio.max())
    log_s = min(math.log(lambda1), math.log(lambda2) - top)
    # (log r - top) is exact near the maximum, and (log s + top) is formed in double.
    return torch.exp((log_ratio - top) + (log_s + top)), log_s


def _input_shape(data: Any) -> tuple[int, ...] | None:
    """The shape of one input of ``data`` from metadata alone, or None (labels, loaders)."""
    if isinstance(data, Samples):
        x = data.x
    elif isinstance(data, tuple | list) and len(data) == 2:
        x = data[0]
    elif isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) >= 2:
        x = data.tensors[0]
    else:
        return None
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[1:].numel() == 0:
        return None
    return tuple(x.shape[1:])


def _code_scores(model: nn.Module, codes: Tensor, labels: Tensor, forget: Tensor) -> float:
    """The official selection score on the codes: (1 - forget accuracy) + remaining accuracy."""
    with eval_mode(model), torch.no_grad():
        hit = (model(codes).argmax(-1) == labels).float()
    f = forget.to(hit.device)
    return float((1 - hit[f].mean()) + hit[~f].mean())


@register
class MnemonicUnlearning(UnlearningMethod):
    """Forget whole classes in one step from the codes the model was trained with.

    Train the original with ``hooks=method.training_hooks()``; then
    ``method.unlearn(original, forget)`` reads only the forget request's labels and the
    codes in the record (no retain or forget image). Defaults: the official MNIST config
    (``t_mix`` 0.1, ``lambda1`` 1e-3, ``lambda2`` 10); CIFAR-10 uses 0.3, 1e-5, 1e4.

    Options (official code first): ``sign="select"`` tries ``+`` and ``-`` and keeps the one
    with the better score on the codes (ties go to ``-``), or fix ``"plus"``/``"minus"``;
    ``perturbation="deterministic"`` moves each weight by ``s * r`` as the code does,
    ``"gaussian"`` multiplies the step by standard normal noise, a reading of the v1
    abstract's "add noise" (our reading; the paper's body was not available: unverified);
    ``code_normalization=(mean, std)`` puts the codes in the data's pixel space (what the
    official MNIST run amounts to, its data being unnormalised), ``()`` feeds raw [0, 1]
    values to a network on normalised data (the official CIFAR-10 run).
    """

    name = "mnemonic"
    needs = frozenset({"forget", "record"})
    labels_only = frozenset({"forget"})
    serves = frozenset({"class", "identity"})  # whole classes (an identity is a class)
    record_keys = frozenset({CODES, COUNTS})
    paper = "yamashita2024mnemonic"

    @dataclass(frozen=True)
    class Hyperparameters:
        """The mnemonic-code knobs (defaults: the official MNIST configuration).

        Parameters
        ----------
        lambda1
            Step scale: each weight moves by at most ``lambda1`` times its sensitivity ratio.
        lambda2
            Cap on the largest move within one tensor.
        t_mix
            Fraction of training inputs replaced by their class's code (a training-time
            setting: it enters the training hook).
        code_seed
            Seed of the random codes.
        code_normalization
            ``(mean, std)`` to put the codes in the data's normalised space, or ``()`` to
            feed raw [0, 1] codes.
        sign
            Direction of the step: ``"select"`` tries both and keeps the better on the
            codes; ``"plus"`` or ``"minus"`` fix it.
        perturbation
            ``"deterministic"`` step (official) or ``"gaussian"``: the step times normal
            noise (our reading of the v1 abstract's "noise"; unverified against the body).
        fisher_eps
            Added to both Fishers (divided by their sample counts) before the ratio.
        """

        lambda1: float = param(1e-3, float, gt=0)
        lambda2: float = param(10.0, float, gt=0)
        t_mix: float = param(0.1, float, ge=0, le=1)
        code_seed: int = param(0, int, ge=0)
        code_normalization: tuple = ()
        sign: str = param("select", str, choices=SIGNS)
        perturbation: str = param("deterministic", str, choices=PERTURBATIONS)
        fisher_eps: float = param(1e-16, float, gt=0)

        def __post_init__(self) -> None:
            validate(self, "mnemonic")  # the declarations above: types, ranges, choices
            _check_normalization(self.code_normalization)

    def training_hooks(self) -> tuple[TrainHook, ...]:
        """The one hook the original must be trained with: :class:`MnemonicCodes`.

        With :func:`~forgetkit.train.train_original` pass ``hooks=method.training_hooks()``.
        In a training loop of one's own, let :class:`~forgetkit.train.TrainingRecorder` run
        it: ``rec = TrainingRecorder(method, epochs=E)``, ``for epoch in rec:``, on every
        batch ``x, y = rec.transform(x, y)`` before the forward pass, and at forget time
        ``record=rec.record()``.
        """
        hp = self.hparams
        return (MnemonicCodes(hp.t_mix, hp.code_seed, hp.code_normalization),)

    def check_inputs(self, given: Any, record: Any) -> None:
        """The base checks, with a missing record explained: which keys, what they hold and
        how to produce them in one's own training loop."""
        absent = sorted(k for k in self.record_keys if (record or {}).get(k) is None)
        if "forget" in given and absent:
            raise ValueError(
                f"{self.name}: the record lacks {absent}: the class codes the original was "
                "trained with and how many training inputs each replaced, which only training "
                "with the codes produces. Train the original with "
                "hooks=method.training_hooks() and pass the TrainedModel as model; in a "
                "training loop of your own, use rec = forgetkit.train.TrainingRecorder(method, "
                "epochs=...): for epoch in rec, pass every batch through "
                "x, y = rec.transform(x, y), and give record=rec.record() here"
            )
        super().check_inputs(given, record)

    def unlearn(self, model: Any, forget: Any, retain: Any = None, **kwargs: Any) -> Any:
        """:meth:`UnlearningMethod.unlearn`, refusing first a forget set whose inputs do not
        have the codes' shape (only the shape is looked at: the images are never read)."""
        record = dict(self.record_from(model)) if isinstance(model, TrainedModel) else {}
        record.update(kwargs.get("record") or {})
        codes, shape = record.get(CODES), _input_shape(forget)
        if isinstance(codes, Tensor) and shape is not None and shape != tuple(codes.shape[1:]):
            raise ValueError(
                f"{self.name}: forget has inputs of shape {shape}, but the model was trained "
                f"with codes (and images) of shape {tuple(codes.shape[1:])}; expected "
                "samples of that shape, or the labels alone"
            )
        return super().unlearn(model, forget, retain, **kwargs)

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        hp = self.hparams
        codes, counts = data.record[CODES], data.record[COUNTS].cpu()
        covered = [c for c in range(len(counts)) if int(counts[c]) > 0]
        wanted = sorted({int(c) for c in data.forget.y.tolist()})
        missing = [c for c in wanted if c not in covered]
        if missing:
            raise ValueError(
                f"mnemonic: forget class(es) {missing} have no mnemonic code the model was "
                f"trained with (codes cover classes {covered}); only classes seen with their "
                "code in training can be forgotten"
            )
        remain = [c for c in covered if c not in wanted]
        if not remain:
            raise ValueError(f"mnemonic: forgetting {wanted} leaves no class with a code to "
                             "keep; the remaining Fisher needs at least one")  # fmt: skip
        dtype = next(model.parameters()).dtype
        labels = torch.tensor(covered, device=device)
        inputs = codes[labels.cpu()].to(device, dtype)
        try:
            num_outputs = predict(model, (inputs, labels)).shape[-1]
        except RuntimeError as err:
            raise ValueError(f"mnemonic: the model cannot read the codes of shape "
                             f"{tuple(codes.shape[1:])}: {err}") from err  # fmt: skip
        if num_outputs <= max(covered):
            raise ValueError(f"mnemonic: the codes cover class {max(covered)} but the model "
                             f"has {num_outputs} outputs")  # fmt: skip
        is_forget = torch.isin(labels, torch.tensor(wanted, device=device))
        started = time.perf_counter()
        fishers = [
            fisher_diagonal(model, (inputs[mask], labels[mask]), kind="empirical",
                            batch_size=int(mask.sum()), device=device)
            for mask in (is_forget, ~is_forget)
        ]  # fmt: skip
        fisher_seconds = time.perf_counter() - started
        n_f, n_r = int(is_forget.sum()), int((~is_forget).sum())
        steps, log_scales = {}, {}
        for name, f_f in fishers[0].items():
            f_r = fishers[1][name]
            log_r = sensitivity_ratio(f_f + hp.fisher_eps / n_f, f_r + hp.fisher_eps / n_r)
            step, log_scales[name] = perturbation(log_r, hp.lambda1, hp.lambda2)
            if hp.perturbation == "gaussian":
                step = step * torch.randn(step.shape, generator=gen, device=gen.device).to(step)
            steps[name] = step
        params = dict(model.named_parameters())
        start = {n: params[n].detach().clone() for n in steps}

        def apply(sign: float) -> None:
            with torch.no_grad():
                for n, step in steps.items():
                    params[n].copy_(start[n] + sign * step)

        scores = {}
        for label, sign in (("plus", 1.0), ("minus", -1.0)):
            if hp.sign in ("select", label):
                apply(sign)
                scores[label] = _code_scores(model, inputs, labels, is_forget)
        chosen = hp.sign
        if hp.sign == "select":
            chosen = "plus" if scores["plus"] > scores["minus"] else "minus"
        apply(1.0 if chosen == "plus" else -1.0)
        return {
            "forgotten_classes": wanted,
            "remaining_classes": remain,
            "sign": chosen,
            "code_scores": scores,
            "scale": {n: math.exp(v) for n, v in log_scales.items()},
            "max_step": {n: float(s.abs().max()) for n, s in steps.items()},
            "fisher_forget": fishers[0],
            "fisher_remain": fishers[1],
            "fisher_seconds": fisher_seconds,
        }


def paper_metrics(
    model: nn.Module, test: Any, forget_classes: Any, *, device: DeviceLike = None
) -> dict[str, float]:
    """EF and AR as the official ``evaluate`` computes them, in percent.

    EF: error on the test samples of the forgotten classes (100 = none classified right);
    AR: accuracy on the test samples of every other class. Batched here; the official code
    runs batch size 1, which gives the same numbers for a network in eval mode.
    """
    data = Samples.coerce(test, "test set")
    classes = torch.as_tensor(list(forget_classes) if not isinstance(forget_classes, int)
                              else [forget_classes])  # fmt: skip
    hit = (predict(model, data, device=device).argmax(1) == data.y.cpu()).float()
    forgotten = torch.isin(data.y.cpu(), classes)
    if not bool(forgotten.any()) or bool(forgotten.all()):
        raise ValueError(f"test set: needs samples of the forgotten classes {classes.tolist()} "
                         "and of the others")  # fmt: skip
    return {"EF": 100 * float(1 - hit[forgotten].mean()), "AR": 100 * float(hit[~forgotten].mean())}
