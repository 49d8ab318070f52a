"""One validation layer for configs, hyperparameters and the data and models they meet.

Every knob is declared once, on its dataclass field, with :func:`param` (its type and its
range); :func:`validate` checks a whole instance and :func:`check_field` one value, so
:class:`~forgetkit.train.TrainConfig` and every method's ``Hyperparameters`` refuse bad
values the same way, with a message that names the owner (the method or config), the
argument, the value and what was expected. A subclass that only changes a default
(``lr: float = 1e-3``) inherits the declaration of the field it overrides.

The data checks here (:func:`num_outputs`, :func:`check_labels`, :func:`overlapping_rows`,
:func:`check_model`) are shared by training and unlearning. forgetkit computes in the
model's dtype: a model's weights must share one dtype, float32 (what
:func:`~forgetkit.models.build_model` makes) or float64, and data are cast to it, so a
float64 model or data set works end to end through training and unlearning; a half-precision
or mixed-dtype model is refused up front rather than failing deep inside a matrix multiply.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

SPEC = "forgetkit.spec"
DTYPES = (torch.float32, torch.float64)  # a model computes in one of these; data follow it


@dataclass(frozen=True)
class Spec:
    """A field's declared type and range. ``kind`` is ``int``, ``float``, ``bool``, ``str`` or
    a class (checked with ``isinstance``); bounds apply to numbers, ``choices`` to anything."""

    kind: type | tuple[type, ...]
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def expected(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        names = {int: "an int", float: "a float", bool: "a bool", str: "a string"}
        what = " or ".join(names.get(k, f"a {k.__name__}") for k in kinds)
        if self.choices is not None:
            what = f"one of {self.choices}"
        low = high = ""
        if self.ge is not None or self.gt is not None:
            low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}"
        if self.le is not None or self.lt is not None:
            high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})"
        if low and high:
            what += f" in {low}, {high}"
        elif low:
            what += f" {'>=' if self.ge is not None else '>'} {low[1:]}"
        elif high:
            what += f" {'<=' if self.le is not None else '<'} {high[:-1]}"
        return what + (" or None" if self.optional else "")

    def check(self, owner: str, name: str, value: Any) -> Any:
        """``value`` converted to its canonical type (numpy scalars and ints for floats are
        accepted), or a ``TypeError``/``ValueError`` naming ``owner``, ``name`` and ``value``."""
        if value is None and self.optional:
            return None
        converted = _convert(self.kind, value)
        if converted is _BAD:
            raise TypeError(f"{owner}: {name} must be {self.expected()}, got {value!r} "
                            f"({type(value).__name__})")  # fmt: skip
        if self.choices is not None and converted not in self.choices:
            raise ValueError(f"{owner}: {name} must be {self.expected()}, got {value!r}")
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ValueError(f"{owner}: {name} must be finite ({self.expected()}), got {value!r}")
        if isinstance(converted, int | float) and not isinstance(converted, bool):
            bad = ((self.ge is not None and not converted >= self.ge)
                   or (self.gt is not None and not converted > self.gt)
                   or (self.le is not None and not converted <= self.le)
                   or (self.lt is not None and not converted < self.lt))  # fmt: skip
            if bad:
                raise ValueError(f"{owner}: {name} must be {self.expected()}, got {value!r}")
        return converted


_BAD = object()


def _convert(kind: type | tuple[type, ...], value: Any) -> Any:
    for k in kind if isinstance(kind, tuple) else (kind,):
        if k is bool:
            if isinstance(value, bool | np.bool_):
                return bool(value)
        elif k is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
                return int(value)
        elif k is float:
            if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
                return float(value)
        elif isinstance(value, k):
            return value
    return _BAD


def param(default: Any, kind: type | tuple[type, ...], **spec: Any) -> Any:
    """A dataclass field with a declared type and range (see :class:`Spec`), for example
    ``lr: float = param(0.05, float, gt=0)``."""
    return field(default=default, metadata={SPEC: Spec(kind, **spec)})


def spec(kind: type | tuple[type, ...], **bounds: Any) -> dict[str, Spec]:
    """The metadata :func:`param` attaches, for ``field(default=..., metadata=spec(...))``."""
    return {SPEC: Spec(kind, **bounds)}


def spec_of(cls: type, name: str) -> Spec | None:
    """The declaration of field ``name``, looked up through the base classes so that a
    subclass overriding only the default keeps it."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and SPEC in f.metadata:
            return f.metadata[SPEC]
    return None


def check_field(cls: type, owner: str, name: str, value: Any) -> Any:
    """Check one value for field ``name`` of dataclass ``cls``; fields without a declaration
    are checked against the type of their default (``None`` defaults accept anything, and
    ``None`` is refused where the default is not ``None``)."""
    spec = spec_of(cls, name)
    if spec is not None:
        return spec.check(owner, name, value)
    default = {f.name: f.default for f in dataclasses.fields(cls)}.get(name)
    if default is None or default is dataclasses.MISSING:
        return value
    kind = float if isinstance(default, float) else type(default)
    if value is None or _convert(kind, value) is _BAD:
        raise TypeError(f"{owner}: {name} must be {type(default).__name__}, got {value!r} "
                        f"({type(value).__name__})")  # fmt: skip
    return value


def validate(obj: Any, owner: str | None = None) -> None:
    """Check every declared field of a dataclass instance (call it from ``__post_init__``);
    converted values (an int given for a float) are written back, frozen or not."""
    owner = owner or type(obj).__qualname__
    for f in dataclasses.fields(obj):
        spec = spec_of(type(obj), f.name)
        if spec is not None:
            object.__setattr__(obj, f.name, spec.check(owner, f.name, getattr(obj, f.name)))


# --------------------------------------------------------------------------- models and data


def check_model(model: nn.Module, owner: str) -> torch.dtype:
    """The caller's model before anything runs on it: finite weights of one floating dtype,
    float32 or float64 (returned; the data are cast to it)."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    kinds = {t.dtype for _, t in tensors if t.is_floating_point()}
    if len(kinds) > 1 or not kinds <= set(DTYPES):
        names = ", ".join(sorted(str(k) for k in kinds))
        raise TypeError(f"{owner}: the input model has {names} weights; forgetkit computes "
                        f"in one dtype, float32 or float64: pass model.float()")  # fmt: skip
    bad = [n for n, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{owner}: the input model is already broken: NaN or infinite values "
                         f"in {bad[:3]} before unlearning (the method was not run)")  # fmt: skip
    return kinds.pop() if kinds else DTYPES[0]


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of a model's first floating parameter (float32 if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return DTYPES[0]


def num_outputs(model: nn.Module, x: Tensor, owner: str, what: str, expected: Any = None) -> int:
    """Run ``model`` (in eval mode, no gradients) on two rows of ``x``: the number of outputs,
    or a ``ValueError`` naming the set and both shapes when the inputs do not fit."""
    shape = tuple(x.shape[1:])
    if expected is not None and tuple(expected) != shape:
        raise ValueError(f"{owner}: {what} inputs have shape {shape} but the model takes "
                         f"{tuple(expected)}")  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:2])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"{owner}: {what} inputs have shape {shape}, which the model does not take (it "
            f"expects {describe_input(model)}): {first}"
        ) from None
    finally:
        model.train(was_training)
    return int(out.shape[-1])


def describe_input(model: nn.Module) -> str:
    """What the first layer with weights accepts, as far as it says (for error messages)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d):
            return f"{m.in_channels} input channels"
        if isinstance(m, nn.Linear):
            return f"{m.in_features} input features"
    return "another shape"


def check_labels(y: Tensor, outputs: int, owner: str, what: str) -> None:
    """Labels must index the model's outputs; otherwise the loss fails with a bare
    ``IndexError`` (or, on a GPU, a device-side assert) far from the cause."""
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= outputs:
        raise ValueError(f"{owner}: {what} labels span {lo}..{hi} but the model has {outputs} "
                         f"outputs (labels must lie in 0..{outputs - 1})")  # fmt: skip


def _row_keys(x: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """One int64 per sample from the exact bits of its input and its label (wrapping integer
    arithmetic: identical rows give identical keys on every device and batch position)."""
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    bits = x.reshape(len(x), -1).contiguous().view(ints)
    rows = max(1, 2**22 // max(bits.shape[1], 1))  # chunks of ~32 MB of int64
    keys = torch.cat([(chunk.to(torch.int64) * weights).sum(1) for chunk in bits.split(rows)])
    return keys * 1_000_003 + y.to(torch.int64)


def overlapping_rows(a: Any, b: Any) -> Tensor:
    """Indices of samples of ``b`` (inputs and label) that also appear, bit for bit, in ``a``.

    Vectorised: rows are hashed to int64 keys, candidates matched with ``isin`` and then
    compared exactly, so a hash collision cannot report a false overlap.
    """
    xa, xb = a.x.reshape(len(a), -1), b.x.reshape(len(b), -1)
    if xa.shape[1] != xb.shape[1] or xa.dtype != xb.dtype or xa.element_size() not in (2, 4, 8):
        return torch.zeros(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    weights = torch.randint(1, 2**62, (xa.shape[1],), generator=gen, dtype=torch.int64)
    weights = weights.to(xa.device)
    ka, kb = _row_keys(xa, a.y, weights), _row_keys(xb, b.y.to(xa.device), weights)
    candidates = torch.nonzero(torch.isin(kb, ka)).flatten()
    if candidates.numel() == 0:
        return candidates
    order = torch.argsort(ka)
    pos = torch.searchsorted(ka[order], kb[candidates]).clamp(max=len(ka) - 1)
    match = order[pos]
    same = (xa[match] == xb.to(xa.device)[candidates]).all(1) & (a.y[match] == b.y[candidates])
    return candidates[same]


def weight_norm(model: nn.Module) -> float:
    return float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in model.parameters())))


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in eval mode, in batches (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            pairs = zip(x.split(batch_size), y.split(batch_size), strict=True)
            right = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in pairs)
    finally:
        model.train(was_training)
    return right / max(len(y), 1)


def utility_snapshot(model: nn.Module, probe: Mapping[str, Any]) -> dict[str, float]:
    """The weight norm, and the accuracy on ``probe`` (when given), of one model."""
    snap = {"weight_norm": weight_norm(model)}
    if probe:
        snap["accuracy"] = accuracy(model, probe["x"], probe["y"])
    return snap


def utility_report(
    before: Mapping[str, float], after: Mapping[str, float], probe: Mapping[str, Any],
    *, blowup: float = 10.0, drop: float = 0.10, unchanged: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Did the unlearned model lose its utility? Compares snapshots of the input and the
    unlearned model (:func:`utility_snapshot`) on the same probe samples of the retain (or
    validation) set.

    ``degraded``: probe accuracy fell more than ``drop`` (10 points) below the input
    model's, the signal a user acts on. ``collapsed``, the severe case: accuracy down to the
    majority-class level from well above it, or a weight norm grown more than ``blowup``
    times. ``unchanged``: the method returned the input weights bit for bit. Any of the
    three is a reason (``reasons``) to warn.
    """
    ratio = after["weight_norm"] / max(before["weight_norm"], 1e-12)
    report: dict[str, Any] = {"weight_norm_ratio": ratio}
    reasons, collapsed, degraded = [], False, False
    if ratio > blowup:
        collapsed = True
        reasons.append(f"the weight norm grew {ratio:.3g} times (the limit is {blowup:g})")
    if probe:
        y, name = probe["y"], probe["name"]
        chance = float(torch.bincount(y).max()) / len(y)
        acc_before, acc_after = before["accuracy"], after["accuracy"]
        report |= {"probe": name, "probe_size": len(y), "chance": chance,
                   "accuracy_before": acc_before, "accuracy_after": acc_after}  # fmt: skip
        if acc_before - acc_after > drop:
            degraded = True
            level = ""
            if acc_after <= chance + 0.05 and acc_before > chance + 0.2:
                collapsed = True
                level = f", the majority-class level ({chance:.3f})"
            reasons.append(
                f"{name} accuracy fell from {acc_before:.3f} to {acc_after:.3f} on {len(y)} "
                f"samples ({100 * (acc_before - acc_after):.1f} points; the limit is "
                f"{100 * drop:g}){level}"
            )
    if unchanged:
        reasons.append("the weights are bit-identical to the input model's: nothing changed")
    report |= {"collapsed": collapsed, "degraded": degraded, "unchanged": bool(unchanged),
               "reasons": reasons}  # fmt: skip
    return report
