"""One small interface for every unlearning method, and a registry by name.

A method is a class with typed hyperparameters (defaults from its paper), a declaration of
the data it needs at forget time, and one method, :meth:`UnlearningMethod.unlearn`. The base
class does everything that must not differ between methods: input validation, copying the
caller's model, moving data to the device and timing the unlearning alone.

The five methods of the book need different things at forget time, and the interface names
them all from the start:

========================  ============================================================
input                     who needs it
========================  ============================================================
``forget``                everyone (JiT needs nothing else)
``retain``                Fisher forgetting (the Fisher), fine-tune, retrain; Forsaken
``nonmember``             Forsaken: data known not to be in training (its target output)
``validation``            L-CODEC: a validation set for its revert check
``record``                training-time artifacts: L-CODEC's saved gradients and training
                          size, the mnemonic codes of the mnemonic-code method, Forsaken's
                          membership oracle
========================  ============================================================

Some methods also need something from *training* time (L-CODEC's saved gradients, the
mnemonic codes). The contract for those is the same for every method, so generic code (a
benchmark, a test over :func:`available_methods`) can drive any of them by name::

    method = get_method(name)
    original = train_original(task, model_cfg, train_cfg, hooks=method.training_hooks())
    result = method.unlearn(original, task.forget_set, task.retain_set)

:meth:`UnlearningMethod.training_hooks` returns the hooks to train with (none for most
methods); passing the :class:`~forgetkit.train.TrainedModel` itself to ``unlearn`` fills the
``record`` through :meth:`UnlearningMethod.record_from` (the hooks' artifacts and the
original's recipe). ``record=`` passed explicitly overrides keys of that record.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.runtime import DeviceLike, Stopwatch, generator, resolve_device
from forgetkit.train import TrainedModel, TrainHook

INPUTS = ("forget", "retain", "nonmember", "validation", "record")


@dataclass(frozen=True, eq=False)
class ForgetData:
    """Everything a method may see at forget time, already on the method's device."""

    forget: Samples
    retain: Samples | None = None
    nonmember: Samples | None = None
    validation: Samples | None = None
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class UnlearnResult:
    """The unlearned model, the seconds the unlearning took, and what the method reports."""

    model: nn.Module
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoHyperparameters:
    """For methods without knobs."""


class UnlearningMethod(ABC):
    """Base class: subclasses set ``name``, ``needs``, ``Hyperparameters`` and ``_unlearn``."""

    name: ClassVar[str] = "method"
    needs: ClassVar[frozenset[str]] = frozenset({"forget"})
    uses: ClassVar[frozenset[str]] = frozenset()  # optional inputs, used when given
    record_keys: ClassVar[frozenset[str]] = frozenset()  # keys the ``record`` must hold
    # Inputs read for their labels alone (a class-forgetting request): their images are
    # never read, copied or moved, and the method sees an empty (n, 0) placeholder instead.
    labels_only: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""  # bibliography key of the source paper
    Hyperparameters: ClassVar[type] = NoHyperparameters

    def __init__(self, **hyperparameters: Any) -> None:
        fields = {f.name: f for f in dataclasses.fields(self.Hyperparameters)}
        unknown = sorted(set(hyperparameters) - set(fields))
        if unknown:
            raise TypeError(
                f"{self.name}: unknown hyperparameter(s) {unknown}; known: {sorted(fields)}"
            )
        defaults = self.Hyperparameters()
        for key, value in hyperparameters.items():
            _check_type(self.name, key, value, getattr(defaults, key))
        self.hparams = dataclasses.replace(defaults, **hyperparameters)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.hparams).items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A method card: its name, inputs (at training and at forget time), paper and
        hyperparameter defaults."""
        return {
            "name": cls.name,
            "needs": sorted(cls.needs),
            "uses": sorted(cls.uses),
            "record_keys": sorted(cls.record_keys),
            "training_hooks": [h.name for h in cls().training_hooks()],
            "paper": cls.paper,
            "hyperparameters": dataclasses.asdict(cls.Hyperparameters()),
        }

    def training_hooks(self) -> tuple[TrainHook, ...]:
        """The hooks the original must be trained with for this method to work; none by
        default (the method works from any trained model). Pass them to
        :func:`~forgetkit.train.train_original` as ``hooks=``."""
        return ()

    def record_from(self, trained: TrainedModel) -> dict[str, Any]:
        """The forget-time ``record`` taken from the original's :class:`TrainedModel`: its
        hooks' artifacts under their own names, and the recipe it was trained with."""
        return {
            **trained.artifacts,
            "model_config": trained.model_config,
            "train_config": trained.train_config,
            "train_size": trained.train_size,
        }

    def unlearn(
        self,
        model: nn.Module | TrainedModel,
        forget: Any,
        retain: Any = None,
        *,
        nonmember: Any = None,
        validation: Any = None,
        record: Mapping[str, Any] | None = None,
        device: DeviceLike = None,
        seed: int = 0,
        inplace: bool = False,
    ) -> UnlearnResult:
        """Make ``model`` forget ``forget``; return a new model unless ``inplace=True``.

        ``model`` is a network, or the :class:`~forgetkit.train.TrainedModel` that training
        returned (its ``record_from`` then fills ``record``; explicit keys win). Data may be
        :class:`~forgetkit.data.Samples`, ``(x, y)`` pairs, ``TensorDataset`` s or
        ``DataLoader`` s. The seconds returned cover the unlearning alone: validation,
        copying and data transfer happen before the clock starts.
        """
        if isinstance(model, TrainedModel):
            record = {**self.record_from(model), **(record or {})}
            model = model.model
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name}: model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")  # fmt: skip
        dev = resolve_device(device)
        given = {"forget": forget, "retain": retain, "nonmember": nonmember,
                 "validation": validation, "record": record}  # fmt: skip
        missing = sorted(k for k in self.needs if given[k] is None)
        if missing:
            raise ValueError(f"{self.name} needs {', '.join(missing)} at forget time "
                             f"(it uses {', '.join(sorted(self.needs))})")  # fmt: skip
        absent = sorted(k for k in self.record_keys if (record or {}).get(k) is None)
        if absent:
            hooks = [h.name for h in self.training_hooks()]
            how = (f"train the original with hooks=method.training_hooks() ({hooks}) and "
                   if hooks else "")  # fmt: skip
            raise ValueError(
                f"{self.name}: the record lacks {absent}; {how}pass the TrainedModel as "
                f"model, or record=method.record_from(trained)"
            )
        sets = {
            k: _labels_of(v, f"{k} set", dev)
            if k in self.labels_only
            else Samples.coerce(v, f"{k} set").to(dev)
            for k, v in given.items()
            if k != "record" and v is not None and (k in self.needs or k in self.uses)
        }
        imaged = {k: s for k, s in sets.items() if k not in self.labels_only}
        shape = next(iter(imaged.values())).x.shape[1:] if imaged else None
        for k, s in imaged.items():
            if s.x.shape[1:] != shape:
                raise ValueError(f"{self.name}: {k} inputs have shape {tuple(s.x.shape[1:])} but "
                                 f"forget inputs have {tuple(shape)}")  # fmt: skip
        work = model if inplace else copy.deepcopy(model)
        work.to(dev)
        self._check_labels(work, sets)
        data = ForgetData(record=dict(record or {}), **sets)
        gen = generator(seed, dev)
        with Stopwatch(dev) as watch:
            details = self._unlearn(work, data, dev, gen) or {}
        bad = [n for n, p in work.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise FloatingPointError(
                f"{self.name} produced NaN or infinite weights in {bad[:3]} with {self.hparams}"
            )
        work.eval()
        return UnlearnResult(work, watch.seconds, details)

    def _check_labels(self, model: nn.Module, sets: Mapping[str, Samples]) -> None:
        probe = next((s for k, s in sets.items() if k not in self.labels_only), None)
        if probe is None:  # labels only: the method checks them against what it has
            return
        was_training = model.training
        model.eval()
        with torch.no_grad():
            num_outputs = model(probe.x[:2]).shape[-1]
        model.train(was_training)
        for k, s in sets.items():
            lo, hi = int(s.y.min()), int(s.y.max())
            if lo < 0 or hi >= num_outputs:
                raise ValueError(f"{self.name}: {k} labels span {lo}..{hi} but the model has "
                                 f"{num_outputs} outputs")  # fmt: skip

    @abstractmethod
    def _unlearn(
        self, model: nn.Module, data: ForgetData, device: torch.device, gen: torch.Generator
    ) -> dict[str, Any] | None:
        """Modify ``model`` in place; return method-specific details."""


def _labels_of(data: Any, what: str, device: torch.device) -> Samples:
    """The labels of ``data`` without reading its inputs (for ``labels_only`` inputs).

    Accepts what :meth:`Samples.coerce` accepts, plus a 1-D integer tensor of labels; a
    ``DataLoader`` must be iterated, which does read its inputs.
    """
    if isinstance(data, Samples):
        y = data.y
    elif isinstance(data, torch.Tensor) and data.ndim == 1 and not data.is_floating_point():
        y = data
    elif isinstance(data, tuple | list) and len(data) == 2:
        y = torch.as_tensor(data[1])
    elif isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) >= 2:
        y = data.tensors[1]
    else:
        y = Samples.coerce(data, what).y
    if y.ndim != 1 or y.numel() == 0 or y.is_floating_point():
        raise ValueError(f"{what}: expected a non-empty 1-D integer tensor of labels, got "
                         f"{y.dtype} of shape {tuple(y.shape)}")  # fmt: skip
    return Samples(torch.empty(len(y), 0, device=device), y.to(device))


def _check_type(method: str, key: str, value: Any, default: Any) -> None:
    if default is None or value is None:
        return
    ok = isinstance(value, type(default))
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if isinstance(default, int) and isinstance(value, bool) and not isinstance(default, bool):
        ok = False
    if not ok:
        raise TypeError(f"{method}: hyperparameter {key} must be {type(default).__name__}, got "
                        f"{type(value).__name__} ({value!r})")  # fmt: skip


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[UnlearningMethod]] = {}


def register(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: make a method available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    unknown = (cls.needs | cls.uses) - set(INPUTS)
    if unknown:
        raise ValueError(f"{cls.name}: unknown inputs {sorted(unknown)}; known: {INPUTS}")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str, **hyperparameters: Any) -> UnlearningMethod:
    """An instance of the registered method ``name`` with the given hyperparameters."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {available_methods()}")
    return _REGISTRY[name](**hyperparameters)


def available_methods() -> list[str]:
    return sorted(_REGISTRY)
