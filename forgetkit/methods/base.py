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
                          membership oracle; the original's recipe (retrain)
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
:meth:`UnlearningMethod.check_inputs` says whether a method can run on the inputs a caller
has; ``unlearn`` and the NeurIPS adapter both ask it.

Hyperparameters are declared per field with :func:`forgetkit.validation.param` (type and
range) and checked by one mechanism (:mod:`forgetkit.validation`), shared with
:class:`~forgetkit.train.TrainConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import warnings
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.runtime import DeviceLike, Stopwatch, generator, resolve_device
from forgetkit.train import TrainedModel, TrainHook
from forgetkit.validation import (
    check_field,
    check_labels,
    check_model,
    num_outputs,
    overlapping_rows,
    utility_report,
    utility_snapshot,
    validate,
)

INPUTS = ("forget", "retain", "nonmember", "validation", "record")
# The kinds of forget request (``ForgetTask.kind`` in :mod:`forgetkit.scenarios`).
REQUESTS = ("class", "subclass", "random", "identity", "injected", "indices")


@dataclass(frozen=True, eq=False)
class ForgetData:
    """Everything a method may see at forget time, already on the method's device."""

    forget: Samples
    retain: Samples | None = None
    nonmember: Samples | None = None
    validation: Samples | None = None
    record: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0  # the ``seed`` given to ``unlearn`` (``gen`` is seeded from it)


@dataclass
class UnlearnResult:
    """The unlearned model, the seconds the unlearning took, and what the method reports.

    Parameters
    ----------
    model
        The unlearned network (a copy: the caller's model is untouched).
    seconds
        Wall-clock time of the unlearning.
    details
        What the method reports (noise scales, selected units, ...).
    """

    model: nn.Module
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoHyperparameters:
    """For methods without knobs."""


class UnlearningMethod(ABC):
    """Base class: subclasses set ``name``, ``needs``, ``Hyperparameters`` and ``_unlearn``.

    Parameters
    ----------
    **hyperparameters
        Overrides of the method's ``Hyperparameters`` defaults, by field name; unknown names and
        invalid values raise.
    """

    name: ClassVar[str] = "method"
    needs: ClassVar[frozenset[str]] = frozenset({"forget"})
    uses: ClassVar[frozenset[str]] = frozenset()  # optional inputs, used when given
    record_keys: ClassVar[frozenset[str]] = frozenset()  # keys the ``record`` must hold
    # Inputs read for their labels alone (a class-forgetting request): their images are
    # never read, copied or moved, and the method sees an empty (n, 0) placeholder instead.
    labels_only: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""  # bibliography key of the source paper
    # The kinds of request (``REQUESTS``) the method is designed to serve: a class-only
    # method still runs on a random forget set, but what it forgets is then not what was
    # asked, so generic drivers (the benchmark) report it as not applicable instead.
    serves: ClassVar[frozenset[str]] = frozenset(REQUESTS)
    Hyperparameters: ClassVar[type] = NoHyperparameters

    def __init__(self, **hyperparameters: Any) -> None:
        fields = {f.name: f for f in dataclasses.fields(self.Hyperparameters)}
        unknown = sorted(set(hyperparameters) - set(fields))
        if unknown:
            raise TypeError(
                f"{self.name}: unknown hyperparameter(s) {unknown}; known: {sorted(fields)}"
            )
        checked = {k: check_field(self.Hyperparameters, self.name, k, v)
                   for k, v in hyperparameters.items()}  # fmt: skip
        try:
            self.hparams = dataclasses.replace(self.Hyperparameters(), **checked)
            validate(self.hparams, self.name)  # declared fields, defaults included
        except (TypeError, ValueError) as err:
            if str(err).startswith(f"{self.name}:"):
                raise
            raise type(err)(f"{self.name}: {err}") from None

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
            "serves": sorted(cls.serves),
            "hyperparameters": dataclasses.asdict(cls.Hyperparameters()),
        }

    def check_inputs(self, given: Collection[str], record: Mapping[str, Any] | None) -> None:
        """Raise a ``ValueError`` naming what this method lacks to run, given the names of
        the inputs a caller supplies (a subset of ``INPUTS``) and the ``record``.

        :meth:`unlearn` calls it before anything runs, and so does the NeurIPS adapter at
        wrap time, so both refuse the same things. Override it (calling ``super()``) for a
        need that depends on the hyperparameters, as :class:`~forgetkit.methods.Retrain`
        does for its recipe.

        Parameters
        ----------
        given
            Names of the inputs the caller supplies (``forget``, ``retain``, ``nonmember``, ...).
        record
            The training-time record the caller supplies, if any.
        """
        missing = sorted(k for k in self.needs if k not in given)
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

    def training_hooks(self) -> tuple[TrainHook, ...]:
        """The hooks the original must be trained with for this method to work; none by
        default (the method works from any trained model). Pass them to
        :func:`~forgetkit.train.train_original` as ``hooks=``."""
        return ()

    def record_from(self, trained: TrainedModel) -> dict[str, Any]:
        """The forget-time ``record`` taken from the original's
        :class:`~forgetkit.train.TrainedModel`: its hooks' artifacts under their own names,
        and the recipe it was trained with.

        Parameters
        ----------
        trained
            The original model as training returned it.
        """
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

        Checked first, in this order, each with an error naming what is wrong: the input
        model (finite weights of one dtype, float32 or float64: the data are cast to it, so
        float64 works end to end; half precision is refused), the inputs the method needs
        (:meth:`check_inputs`), each set's shape against the model (and against the
        record's ``model_config``) and its labels against the model's outputs, and that the
        retain set holds no sample of the forget set (same input bits and label). After
        the run, ``details["utility"]`` compares the input and the unlearned model on up to
        256 retain (else validation) samples and their weight norms; a collapse (accuracy
        down to the majority-class level, or weights grown tenfold) sets ``collapsed`` and
        warns with a :class:`UtilityWarning`.

        Parameters
        ----------
        model
            The model to unlearn from: a network or the original's TrainedModel.
        forget
            The samples to forget.
        retain
            The samples to keep, for methods that read them.
        nonmember
            Samples the model never saw, from the forget set's distribution, for methods that need
            them.
        validation
            Held-out samples, for methods that check themselves on them (and for the utility check
            when no retain set is given).
        record
            What training recorded (hook artifacts, recipe), for methods that need it.
        device
            Where to run (default: where the model is).
        seed
            Seed of the method's random draws: the same seed gives the same model.
        inplace
            Modify ``model`` itself instead of a copy.
        """
        if isinstance(model, TrainedModel):
            record = {**self.record_from(model), **(record or {})}
            model = model.model
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name}: model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")  # fmt: skip
        dtype = check_model(model, self.name)  # a broken input is the caller's, not the method's
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"{self.name}: seed must be an int, got {seed!r} "
                            f"({type(seed).__name__})")  # fmt: skip
        dev = resolve_device(device)
        given = {"forget": forget, "retain": retain, "nonmember": nonmember,
                 "validation": validation, "record": record}  # fmt: skip
        self.check_inputs({k for k, v in given.items() if v is not None}, record)
        # Only what the method declares is read (a zero-shot method's retain set is never
        # touched); the overlap and utility checks use what is there.
        wanted = self.needs | self.uses
        sets = {
            k: _labels_of(v, f"{k} set", dev)
            if k in self.labels_only
            else _cast(Samples.coerce(v, f"{k} set").to(dev), dtype)
            for k, v in given.items()
            if k != "record" and v is not None and k in wanted
        }
        work = model if inplace else copy.deepcopy(model)
        work.to(dev)
        in_shape = getattr((record or {}).get("model_config"), "in_shape", None)
        imaged = {k: v for k, v in sets.items() if k not in self.labels_only}
        outputs = None
        for k, v in imaged.items():
            outputs = num_outputs(work, v.x, self.name, f"{k} set", in_shape)
            check_labels(v.y, outputs, self.name, f"{k} set")
        if outputs is not None:  # labels-only sets against the outputs seen on images
            for k in sets.keys() - imaged.keys():
                check_labels(sets[k].y, outputs, self.name, f"{k} set")
        if "retain" in imaged and "forget" in imaged:
            both = overlapping_rows(sets["forget"], sets["retain"])
            if len(both):
                raise ValueError(f"{self.name}: the retain set contains {len(both)} sample(s) of "
                                 f"the forget set (e.g. retain rows {both[:5].tolist()}); "
                                 f"remove them from retain")  # fmt: skip
        probe = _probe(imaged)
        before = utility_snapshot(work, probe)
        data = ForgetData(
            record=dict(record or {}),
            seed=int(seed),
            **sets,
        )
        gen = generator(seed, dev)
        with Stopwatch(dev) as watch:
            details = self._unlearn(work, data, dev, gen) or {}
        bad = [n for n, p in work.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise FloatingPointError(
                f"{self.name} produced NaN or infinite weights in {bad[:3]} with {self.hparams}"
            )
        work.eval()
        health = utility_report(before, utility_snapshot(work, probe), probe)
        details.setdefault("utility", health)
        if health["collapsed"]:
            warnings.warn(f"{self.name}: the unlearned model's utility collapsed: "
                          f"{'; '.join(health['reasons'])} (see result.details['utility'])",
                          UtilityWarning, stacklevel=2)  # fmt: skip
        return UnlearnResult(work, watch.seconds, details)

    @abstractmethod
    def _unlearn(
        self, model: nn.Module, data: ForgetData, device: torch.device, gen: torch.Generator
    ) -> dict[str, Any] | None:
        """Modify ``model`` in place; return method-specific details."""


class UtilityWarning(UserWarning):
    """An unlearned model whose utility collapsed (see ``result.details["utility"]``)."""


def _cast(s: Samples, dtype: torch.dtype) -> Samples:
    return s if s.x.dtype == dtype else Samples(s.x.to(dtype), s.y)


def _probe(sets: Mapping[str, Samples], size: int = 256) -> dict[str, Any]:
    """Up to ``size`` evenly spaced samples of the retain (else validation) set, for the
    utility check; empty when neither was given."""
    for name in ("retain", "validation"):
        if name in sets:
            s = sets[name]
            idx = torch.linspace(0, len(s) - 1, min(size, len(s))).round().long()
            idx = idx.to(s.device)
            return {"x": s.x[idx], "y": s.y[idx], "name": f"{name} set"}
    return {}


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
    """An instance of the registered method ``name`` with the given hyperparameters.

    Parameters
    ----------
    name
        A registered method name (see :func:`available_methods`).
    **hyperparameters
        Overrides of the method's defaults.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {available_methods()}")
    return _REGISTRY[name](**hyperparameters)


def available_methods() -> list[str]:
    """The names :func:`get_method` accepts, sorted: every method registered with
    :func:`register` (the package's own and any a user has added)."""
    return sorted(_REGISTRY)
