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
import functools
import inspect
import numbers
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    RandomSampler,
    SequentialSampler,
    Subset,
    default_collate,
)

from forgetkit.data import Samples, read_samples
from forgetkit.runtime import DeviceLike, Stopwatch, generator, model_device, resolve_device
from forgetkit.stream import DatasetSamples, Source, as_source
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

SEED_LIMIT = 2**63  # seeds lie in [0, 2**63): torch generators and numpy both take them
PROBE_SIZE = 512  # retain (else validation) samples the utility check reads, at most
INPUTS = ("forget", "retain", "nonmember", "validation", "record")
# The sets read batch by batch when given as a dataset or loader (``forgetkit.stream``); the
# forget set, small by nature and indexed sample by sample by several methods, is read whole.
STREAMED = frozenset({"retain", "nonmember", "validation"})
# The kinds of forget request (``ForgetTask.kind`` in :mod:`forgetkit.scenarios`).
REQUESTS = ("class", "subclass", "random", "identity", "injected", "indices")


@dataclass(frozen=True, eq=False)
class ForgetData:
    """Everything a method may see at forget time, already on the method's device."""

    forget: Samples
    retain: Source | None = None  # Samples, or a DatasetSamples read batch by batch
    nonmember: Source | None = None
    validation: Source | None = None
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


class _ClassOrInstance:
    """A method that works on the class (its defaults) and on an instance (its own values)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type) -> Any:
        @functools.wraps(self.fn)
        def bound() -> Any:
            return self.fn(owner, obj)

        return bound


def hyperparameter_signature(hyperparameters: type) -> inspect.Signature:
    """A keyword-only signature built from a ``Hyperparameters`` dataclass: its fields, their
    types and defaults, so ``inspect.signature(JiT)`` and ``help(JiT)`` list the knobs
    that ``**hyperparameters`` accepts."""
    try:
        hints = typing.get_type_hints(hyperparameters)
    except Exception:  # an annotation that does not resolve: keep it as written
        hints = {}
    params = []
    for f in dataclasses.fields(hyperparameters):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        kind = inspect.Parameter.KEYWORD_ONLY
        annotation = hints.get(f.name, f.type)
        params.append(inspect.Parameter(f.name, kind, default=default, annotation=annotation))
    return inspect.Signature(params)


class UnlearningMethod(ABC):
    """Base class: subclasses set ``name``, ``needs``, ``Hyperparameters`` and ``_unlearn``.

    Parameters
    ----------
    **hyperparameters
        Overrides of the method's ``Hyperparameters`` defaults, by field name; unknown names and
        invalid values raise. Each subclass's signature lists them as typed keyword arguments
        (``inspect.signature(JiT)``), generated from its ``Hyperparameters``.
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass with its own __init__ keeps the signature it wrote.
        if "__init__" not in cls.__dict__ and dataclasses.is_dataclass(cls.Hyperparameters):
            cls.__signature__ = hyperparameter_signature(cls.Hyperparameters)

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

    @_ClassOrInstance
    def describe(cls, self: UnlearningMethod | None = None) -> dict[str, Any]:
        """A method card: its name, inputs (at training and at forget time), paper and
        hyperparameters: an instance's own values (``get_method("scrub", lr=1e-3)``), the
        defaults when called on the class (``SCRUB.describe()``)."""
        instance = cls() if self is None else self
        return {
            "name": cls.name,
            "needs": sorted(cls.needs),
            "uses": sorted(cls.uses),
            "record_keys": sorted(cls.record_keys),
            "training_hooks": [h.name for h in instance.training_hooks()],
            "paper": cls.paper,
            "serves": sorted(cls.serves),
            "hyperparameters": dataclasses.asdict(instance.hparams),
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
            own = (
                "; in a training loop of your own, make it with rec = "
                "forgetkit.train.TrainingRecorder(method, epochs=...): rec.before_epoch(epoch) "
                "at each epoch's start, x, y = rec.transform(x, y) on each batch, "
                "rec.after_backward(model) after each backward, then record=rec.record()"
                if hooks
                else ""
            )
            whole = sorted(self.record_keys)
            needs = f" (the record needs {whole})" if absent != whole else ""
            raise ValueError(
                f"{self.name}: the record lacks {absent}; {how}pass the TrainedModel as "
                f"model, or record=method.record_from(trained){own}{needs}"
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
        the run, for every method and whether or not it reads them, ``details["utility"]``
        compares the input and the unlearned model on the same probe of up to 512 retain
        (else validation) samples, drawn with ``seed``, and their weight norms; it warns
        with a :class:`UtilityWarning` when probe accuracy fell more than 10 points
        (``degraded``; ``collapsed`` when down to the majority-class level), when the
        weights grew tenfold (``collapsed``), or when the weights came back bit-identical
        (``details["unchanged"]``).

        Loaders are read independently of the global random state: a shuffling loader over
        a whole dataset is read in the dataset's order, any other under seeds fixed from
        ``seed``, so the same ``seed`` gives the same model whatever ``torch.manual_seed``
        the caller set.

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
            Where to run (default: where the model is, even on a machine with CUDA).
        seed
            Seed of the method's random draws, an int in [0, 2**63): the same seed gives the
            same model.
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
        if not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"{self.name}: seed must be an int in [0, 2**63), got {seed!r}")
        seed = int(seed)
        # None: where the model is (a CPU model stays on the CPU on a CUDA machine).
        dev = model_device(model) if device is None else resolve_device(device)
        given = {"forget": forget, "retain": retain, "nonmember": nonmember,
                 "validation": validation, "record": record}  # fmt: skip
        self.check_inputs({k for k, v in given.items() if v is not None}, record)
        # Only what the method declares is read whole (a zero-shot method's retain set is
        # never copied); the utility check reads a bounded probe of what is there.
        wanted = self.needs | self.uses
        sets = {
            k: _labels_of(v, f"{k} set", dev, seed)
            if k in self.labels_only
            else _source(v, f"{k} set", seed, stream=k in STREAMED).to(dev).cast(dtype)
            for k, v in given.items()
            if k != "record" and v is not None and k in wanted
        }
        work = model if inplace else copy.deepcopy(model)
        # The input's weights, to tell an unchanged model (the caller's own model when it
        # is untouched; a copy only when working in place).
        reference = _state(model, copy=inplace)
        work.to(dev)
        in_shape = getattr((record or {}).get("model_config"), "in_shape", None)
        imaged = {k: v for k, v in sets.items() if k not in self.labels_only}
        outputs = None
        for k, v in imaged.items():
            outputs = num_outputs(work, v.head(2).x, self.name, f"{k} set", in_shape)
            if isinstance(v, DatasetSamples):  # labels checked as each batch is read
                sets[k] = v.expect_classes(outputs, self.name)
            else:
                check_labels(v.y, outputs, self.name, f"{k} set")
        imaged = {k: sets[k] for k in imaged}
        if outputs is not None:  # labels-only sets against the outputs seen on images
            for k in sets.keys() - imaged.keys():
                check_labels(sets[k].y, outputs, self.name, f"{k} set")
        # Bit-for-bit overlap needs both sets in memory: a streamed retain set is not read
        # whole for it (its transforms may draw at random anyway).
        if all(isinstance(imaged.get(k), Samples) for k in ("retain", "forget")):
            both = overlapping_rows(sets["forget"], sets["retain"])
            if len(both):
                raise ValueError(f"{self.name}: the retain set contains {len(both)} sample(s) of "
                                 f"the forget set (e.g. retain rows {both[:5].tolist()}); "
                                 f"remove them from retain")  # fmt: skip
        probe = _probe(given, imaged, seed, dev, dtype)
        if probe:
            what = probe["name"]
            outputs = num_outputs(work, probe["x"], self.name, what, in_shape)
            check_labels(probe["y"], outputs, self.name, what)
        before = utility_snapshot(work, probe)
        data = ForgetData(
            record=dict(record or {}),
            seed=seed,
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
        unchanged = _same_state(reference, work)
        health = utility_report(before, utility_snapshot(work, probe), probe, unchanged=unchanged)
        details.setdefault("utility", health)
        details.setdefault("unchanged", unchanged)
        if health["collapsed"] or health["degraded"]:
            verb = "collapsed" if health["collapsed"] else "fell"
            why = "; ".join(r for r in health["reasons"] if "bit-identical" not in r)
            message = (f"{self.name}: the unlearned model's utility {verb}: {why} "
                       "(see result.details['utility'])")  # fmt: skip
            warnings.warn(message, UtilityWarning, stacklevel=2)
        if unchanged:
            # A method that knows why (``details["unchanged_reason"]``) says so; one warning.
            why = details.get("unchanged_reason") or (
                "no step taken, steps too small to move a weight, or every change reverted"
            )
            warnings.warn(f"{self.name} changed nothing: the returned weights are bit-identical "
                          f"to the input model's ({why}; see result.details)",
                          UtilityWarning, stacklevel=2)  # fmt: skip
        return UnlearnResult(work, watch.seconds, details)

    @abstractmethod
    def _unlearn(
        self, model: nn.Module, data: ForgetData, device: torch.device, gen: torch.Generator
    ) -> dict[str, Any] | None:
        """Modify ``model`` in place; return method-specific details."""


class UtilityWarning(UserWarning):
    """An unlearned model that lost its utility or did not change at all.

    Raised by every method's :meth:`~UnlearningMethod.unlearn` when probe accuracy on the
    retain (else validation) set fell more than 10 points below the input model's, the
    weight norm grew tenfold, or the weights came back bit-identical; the numbers are in
    ``result.details["utility"]``.
    """


def _cast(s: Samples, dtype: torch.dtype) -> Samples:
    return s.cast(dtype)


def _source(data: Any, what: str, seed: int, *, stream: bool) -> Source:
    """A set as a method reads it: streamed where it is a dataset or loader and the role
    allows (``STREAMED``), else whole in memory."""
    return as_source(data, what, seed=seed) if stream else read_samples(data, what, seed)


def _pick(n: int, size: int, seed: int) -> torch.Tensor:
    """Up to ``size`` sorted indices of ``range(n)``, drawn with ``seed`` (not the global RNG)."""
    if n <= size:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].sort().values


def _probe(
    given: Mapping[str, Any], read: Mapping[str, Samples], seed: int, device: torch.device,
    dtype: torch.dtype, size: int = PROBE_SIZE,
) -> dict[str, Any]:  # fmt: skip
    """Up to ``size`` samples of the retain (else validation) set, drawn with ``seed``, for
    the utility check; empty when neither was given.

    Checked for every method, whether or not it reads the set: a set the method already
    read is indexed; otherwise only the probe's samples are read where the data allow it
    (tensors, a map-style dataset, a loader reading one in full), else the set once.
    """
    for name in ("retain", "validation"):
        data = given.get(name)
        if data is None:
            continue
        what = f"{name} set"
        if name in read:
            s = read[name]
            idx = _pick(len(s), size, seed)
            if isinstance(s, DatasetSamples):  # streamed: read the probe's samples alone
                picked = s.subset(idx).read()
                return {"x": picked.x, "y": picked.y, "name": what}
            idx = idx.to(s.device)
            return {"x": s.x[idx], "y": s.y[idx], "name": what}
        if isinstance(data, torch.Tensor) and data.ndim == 1 and not data.is_floating_point():
            continue  # labels alone (a labels-only input): nothing to run the model on
        dataset, collate = data, default_collate
        if isinstance(data, DataLoader):  # its dataset, when the loader reads all of it
            whole = (_sized(data.dataset)
                     and isinstance(data.sampler, SequentialSampler | RandomSampler)
                     and len(data.sampler) == len(data.dataset))  # fmt: skip
            dataset, collate = (data.dataset if whole else None), data.collate_fn
        tensors = _tensors_of(dataset) if collate is default_collate else None
        if tensors is not None:  # in memory: index first, check only what is read
            x, y = tensors
            idx = _pick(len(y), size, seed)
            s = Samples.coerce((x[idx.to(x.device)], y[idx.to(y.device)]), what)
        elif isinstance(dataset, torch.utils.data.Dataset) and _sized(dataset):
            idx = _pick(len(dataset), size, seed)
            if len(idx) == 0:
                raise ValueError(f"{what} is empty")
            picked = DataLoader(Subset(dataset, idx.tolist()), batch_size=size, collate_fn=collate)
            s = Samples.coerce(picked, what, seed=seed)  # random transforms drawn from seed
        else:  # an iterable dataset or a custom sampler: read it once, then pick
            s = read_samples(data, what, seed)
            s = s.subset(_pick(len(s), size, seed))
        s = _cast(s.to(device), dtype)
        return {"x": s.x, "y": s.y, "name": what}
    return {}


def _tensors_of(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (inputs, labels) tensors of in-memory data, without copying; None otherwise."""
    if isinstance(data, Samples):
        return data.x, data.y
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0], data.tensors[1]
    pair = isinstance(data, tuple | list) and len(data) == 2
    if pair and all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in data):
        return (data[0], data[1]) if len(data[0]) == len(data[1]) else None
    return None


def _sized(dataset: Any) -> bool:
    try:
        len(dataset)
    except TypeError:
        return False
    return not isinstance(dataset, torch.utils.data.IterableDataset)


def _state(model: nn.Module, *, copy: bool) -> dict[str, torch.Tensor]:
    """A model's parameters and buffers by name (cloned with ``copy``)."""
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {k: v.detach().clone() if copy else v.detach() for k, v in state.items()}


def _same_state(reference: Mapping[str, torch.Tensor], model: nn.Module) -> bool:
    """Whether ``model`` holds exactly the weights of ``reference`` (bit for bit)."""
    now = _state(model, copy=False)
    if now.keys() != reference.keys():
        return False
    for k, v in now.items():
        ref = reference[k]
        if v.shape != ref.shape or v.dtype != ref.dtype:
            return False
        if not torch.equal(v, ref.to(v.device)):
            return False
    return True


def _labels_of(data: Any, what: str, device: torch.device, seed: int = 0) -> Samples:
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
        y = read_samples(data, what, seed).y
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
