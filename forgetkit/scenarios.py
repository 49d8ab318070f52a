"""Forget scenarios: which training samples a deletion request names, reproducible from a seed.

A :class:`ForgetTask` holds a dataset and four disjoint index sets: ``forget`` and ``retain``
partition the training part; ``test`` and ``heldout`` partition the test part, the held-out
samples serving as known non-members for membership-inference attacks. The scenarios below
draw them from a forgetkit dataset; :meth:`ForgetTask.from_splits` makes a task of one's
own four sets (datasets, loaders, tensors), splitting nothing unless asked to.

Sizes: an ``int`` ``n`` is a count of samples; a ``float`` ``n`` is a fraction of the pool it
is drawn from (all training samples for :func:`forget_random`, the class's samples for
:func:`forget_subclass`), rounded to the nearest count and at least 1. A request that would
leave nothing to retain (``forget_random(data, 1.0)``, or all of a class in
:func:`forget_subclass`) is an error, not silently shrunk. ``bool`` is neither a count nor a
fraction and is refused, like strings. Every bad argument raises ``TypeError`` (wrong kind)
or ``ValueError`` (wrong value) naming the argument.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forgetkit.data import ImageDataset, Samples, _replace
from forgetkit.validation import overlapping_rows

# The kinds of request a task can be (``methods.base.REQUESTS`` lists the same).
KINDS = ("class", "subclass", "random", "identity", "injected", "indices")


@dataclass(frozen=True, eq=False)
class ForgetTask:
    """One forgetting experiment's data: what to forget, what to keep, what to test on.

    Parameters
    ----------
    data
        The dataset the indices point into.
    forget
        Training-set indices to forget.
    retain
        Training-set indices to keep (disjoint from ``forget``).
    test
        Test-set indices used to measure utility.
    heldout
        Test-set indices no model trains on: the non-members of the membership attacks.
    kind
        The scenario that made the task ("class", "random", ...), for reports.
    spec
        The arguments that made it (class, count, seed), recorded for provenance.
    forget_classes
        Classes forgotten entirely (empty unless a whole class or identity goes).
    """

    data: ImageDataset
    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray
    heldout: np.ndarray
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)
    forget_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.data, ImageDataset):
            raise TypeError(f"data must be an ImageDataset, got {type(self.data).__name__}")
        n_train, n_test = len(self.data.train), len(self.data.test)
        for part, pool in (("forget", n_train), ("retain", n_train), ("test", n_test),
                           ("heldout", n_test)):  # fmt: skip
            idx = np.asarray(getattr(self, part))
            if idx.ndim != 1:
                raise ValueError(f"{part} indices must be 1-D, got shape {idx.shape}")
            if idx.size and not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"{part} indices must be integers, got dtype {idx.dtype}")
            idx = idx.astype(np.int64)
            object.__setattr__(self, part, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= pool):
                raise ValueError(f"{part} indices out of range: the pool has {pool} samples")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"{part} indices contain duplicates")
        if self.forget.size == 0:
            raise ValueError("the forget set is empty")
        if self.retain.size == 0:
            raise ValueError("the retain set is empty: nothing would be left to learn from")
        if np.intersect1d(self.forget, self.retain).size:
            raise ValueError("forget and retain sets overlap")
        if np.intersect1d(self.test, self.heldout).size:
            raise ValueError("test and held-out sets overlap")
        if self.test.size == 0 or self.heldout.size == 0:
            raise ValueError(
                f"the test and held-out sets must both be non-empty, got {self.test.size} and "
                f"{self.heldout.size}"
            )

    @classmethod
    def from_splits(
        cls,
        *,
        forget: Any,
        retain: Any,
        test: Any,
        heldout: Any = None,
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        heldout_fraction: float | None = None,
        forget_classes: Sequence[int] = (),
        kind: str | None = None,
        name: str = "own data",
        seed: int = 0,
    ) -> ForgetTask:
        """A task of one's own four sets, for :func:`~forgetkit.metrics.evaluate` and
        :func:`~forgetkit.train.retrain`.

        Each set may be anything :meth:`~forgetkit.data.Samples.coerce` accepts
        (``Samples``, an ``(x, y)`` pair of tensors, a ``TensorDataset``, a ``Dataset``, a
        ``DataLoader``); each is read once into memory, independently of the global random
        state. The original model was trained on ``forget`` and ``retain``; ``test``
        measures utility; ``heldout`` are samples no model trained on, the non-members of
        the membership attacks, and no other metric reads them.

        Nothing is split behind the caller's back: ``heldout`` must be given, or
        ``heldout_fraction`` asks for that share of ``test`` to be set aside (drawn with
        ``seed``; :meth:`describe` and ``spec`` then say so). Refused, naming the set:
        inputs of different shapes, labels outside ``0..num_classes-1``, a sample of
        ``forget`` also in ``retain``, a held-out sample also in training, and, with
        ``forget_classes``, a forget sample of another class or a retain sample of a
        forgotten one.

        Parameters
        ----------
        forget
            The training samples to forget.
        retain
            The other training samples (the retrained oracle learns from these alone).
        test
            Samples no model trained on, for utility (accuracy on unseen data).
        heldout
            More samples no model trained on, for the membership attacks (non-members).
        num_classes
            The models' number of outputs (or pass ``classes``).
        classes
            Class names, in label order (default: ``"0"``, ``"1"``, ...).
        heldout_fraction
            Instead of ``heldout``: the share of ``test`` to set aside as held-out.
        forget_classes
            Classes forgotten entirely (class forgetting): adds the accuracy on the test
            samples of those classes (``test_forgotten``) and of the others (``test_kept``).
        kind
            The kind of request, one of ``KINDS`` (default ``"class"`` with
            ``forget_classes``, else ``"indices"``: a named set of samples).
        name
            What to call the data in :meth:`describe` and reports.
        seed
            Seed of the ``heldout_fraction`` split and of reading loaders.
        """
        where = "ForgetTask.from_splits"
        if not isinstance(name, str):
            raise TypeError(f"{where}: name must be a string, got {name!r}")
        given = {"forget": forget, "retain": retain, "test": test, "heldout": heldout}
        if heldout is None and heldout_fraction is None:
            raise ValueError(
                f"{where}: pass heldout=... (samples no model trained on: the membership "
                "attacks' non-members), or heldout_fraction=0.5 to set aside that share of "
                "test; nothing is split unless you ask"
            )
        if heldout is not None and heldout_fraction is not None:
            raise ValueError(f"{where}: pass heldout or heldout_fraction, not both")
        sets = {role: Samples.coerce(v, f"{where}: {role}", seed=_seed_int(seed)).to("cpu")
                for role, v in given.items() if v is not None}  # fmt: skip
        shape = tuple(sets["forget"].x.shape[1:])
        for role, data in sets.items():
            if tuple(data.x.shape[1:]) != shape:
                raise ValueError(f"{where}: {role} inputs have shape {tuple(data.x.shape[1:])} "
                                 f"but forget inputs have {shape}")  # fmt: skip
        names = _class_names(num_classes, classes, where)
        for role, data in sets.items():
            if int(data.y.max()) >= len(names):
                raise ValueError(f"{where}: {role} has a label of {int(data.y.max())} but there "
                                 f"are {len(names)} classes (0..{len(names) - 1})")  # fmt: skip
        _refuse_overlap(sets["forget"], sets["retain"], "retain", "forget", where)
        if "heldout" in sets:
            train = Samples.concat([sets["forget"], sets["retain"]])
            _refuse_overlap(train, sets["heldout"], "heldout", "the training sets", where)
            _refuse_overlap(sets["test"], sets["heldout"], "heldout", "test", where)
        gone = tuple(_forgotten_classes(forget_classes, sets, len(names), where))
        if kind is None:
            kind = "class" if gone else "indices"
        if kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
        n_forget, n_retain = len(sets["forget"]), len(sets["retain"])
        spec: dict[str, Any] = {"splits": "given", "seed": seed}
        if "heldout" in sets:
            test_part = Samples.concat([sets["test"], sets["heldout"]])
            n_test = len(sets["test"])
            test_idx, held_idx = np.arange(n_test), np.arange(n_test, len(test_part))
        else:
            test_part = sets["test"]
            test_idx, held_idx = _split_test(len(test_part), heldout_fraction, _rng(seed))
            spec["heldout_fraction"] = float(heldout_fraction)
        data = ImageDataset(
            name=name,
            train=Samples.concat([sets["forget"], sets["retain"]]),
            test=test_part,
            classes=names,
            mean=(0.0,),
            std=(1.0,),
            exact=True,
            note="the caller's own splits (ForgetTask.from_splits), used as given",
        )
        return cls(data, np.arange(n_forget), np.arange(n_forget, n_forget + n_retain),
                   test_idx, held_idx, kind, spec, gone)  # fmt: skip

    # The four parts as tensors ------------------------------------------------------
    @property
    def forget_set(self) -> Samples:
        return self.data.train.subset(self.forget)

    @property
    def retain_set(self) -> Samples:
        return self.data.train.subset(self.retain)

    @property
    def train_set(self) -> Samples:
        """Forget and retain together in dataset order (what the original model sees)."""
        return self.data.train.subset(np.sort(np.concatenate([self.forget, self.retain])))

    @property
    def test_set(self) -> Samples:
        return self.data.test.subset(self.test)

    @property
    def heldout_set(self) -> Samples:
        return self.data.test.subset(self.heldout)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the data and the four index sets (part of checkpoint cache keys)."""
        h = hashlib.sha256(self.data.fingerprint.encode())
        for idx in (self.forget, self.retain, self.test, self.heldout):
            h.update(np.sort(idx).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]

    def describe(self) -> str:
        """One line for printing: the kind, the dataset and the size of every part (and,
        for a task of one's own splits whose held-out set was drawn from its test set, how)."""
        line = (
            f"{self.kind} forgetting on {self.data.name}: forget {self.forget.size}, "
            f"retain {self.retain.size}, test {self.test.size}, held-out {self.heldout.size}"
        )
        if self.spec.get("splits") == "given" and "heldout_fraction" in self.spec:
            line += (f" (held-out: {self.spec['heldout_fraction']:g} of the given test set, "
                     f"drawn with seed {self.spec['seed']})")  # fmt: skip
        return line


# --------------------------------------------------------------------------- helpers


def _check_data(data: Any) -> ImageDataset:
    if not isinstance(data, ImageDataset):
        hint = " (pass task.data to build another task on its dataset)" if isinstance(
            data, ForgetTask) else ""  # fmt: skip
        raise TypeError(f"data must be an ImageDataset (from forgetkit.load_dataset), got "
                        f"{type(data).__name__}{hint}")  # fmt: skip
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _rng(seed: Any) -> np.random.Generator:
    if not _is_int(seed):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


def _class_index(data: ImageDataset, cls: int | str, arg: str = "cls") -> int:
    if isinstance(cls, str):
        if cls not in data.classes:
            raise ValueError(f"{arg}: unknown class {cls!r} for {data.name}; classes: "
                             f"{data.classes}")  # fmt: skip
        return data.classes.index(cls)
    if not _is_int(cls):
        raise TypeError(f"{arg}: a class is an int or a class name, got {cls!r} "
                        f"({type(cls).__name__})")  # fmt: skip
    if not 0 <= int(cls) < data.num_classes:
        raise ValueError(f"{arg}: class {cls} is not in {data.name} (classes 0.."
                         f"{data.num_classes - 1})")  # fmt: skip
    return int(cls)


def _count(n: Any, available: int, what: str, arg: str = "n") -> int:
    """``n`` as a count (an int) or a fraction of ``available`` (a float in (0, 1]), leaving
    at least one of the ``available`` samples untouched."""
    if isinstance(n, float | np.floating):
        if not 0 < n <= 1:  # NaN fails this too
            raise ValueError(f"{what}: {arg}={n} as a fraction must lie in (0, 1]")
        k = max(1, round(float(n) * available))
    elif _is_int(n):
        k = int(n)
        if k <= 0:
            raise ValueError(f"{what}: {arg}={k} leaves the forget set empty (n must be >= 1)")
    else:
        raise TypeError(f"{what}: {arg} must be an int (a count) or a float (a fraction), got "
                        f"{n!r} ({type(n).__name__})")  # fmt: skip
    if k > available:
        raise ValueError(f"{what}: {arg}={n} asks for {k} samples but only {available} exist")
    if k == available:
        raise ValueError(f"{what}: {arg}={n} would forget all {available} samples and leave "
                         f"none to retain; the most is {available - 1}")  # fmt: skip
    return k


def _test_split(data: ImageDataset, heldout_fraction: Any, rng: np.random.Generator):
    return _split_test(len(data.test), heldout_fraction, rng)


def _split_test(n: int, heldout_fraction: Any, rng: np.random.Generator):
    """(test, held-out) positions of ``n`` test samples, ``heldout_fraction`` held out."""
    if isinstance(heldout_fraction, bool) or not isinstance(heldout_fraction, float | np.floating):
        raise TypeError(f"heldout_fraction must be a float in (0, 1), got {heldout_fraction!r} "
                        f"({type(heldout_fraction).__name__})")  # fmt: skip
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must lie in (0, 1), got {heldout_fraction}")
    perm = rng.permutation(n)
    n_held = round(float(heldout_fraction) * n)
    if not 0 < n_held < n:
        raise ValueError(f"heldout_fraction={heldout_fraction} of {n} test samples "
                         f"leaves the test or the held-out set empty")  # fmt: skip
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _seed_int(seed: Any) -> int:
    _rng(seed)  # type and range checks
    return int(seed)


def _class_names(num_classes: Any, classes: Any, where: str) -> tuple[str, ...]:
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise TypeError(f"{where}: classes must be a sequence of class names (strings), "
                            f"got {classes!r}")  # fmt: skip
        names = tuple(classes)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"{where}: num_classes={num_classes} but {len(names)} class "
                             f"names were given")  # fmt: skip
    elif num_classes is None:
        raise ValueError(f"{where}: pass num_classes= (the models' number of outputs) or "
                         f"classes= (their names, in label order)")  # fmt: skip
    elif not _is_int(num_classes):
        raise TypeError(f"{where}: num_classes must be an int, got {num_classes!r}")
    else:
        names = tuple(str(i) for i in range(int(num_classes)))
    if len(names) < 2:
        raise ValueError(f"{where}: a classification task needs at least 2 classes, got "
                         f"{len(names)}")  # fmt: skip
    return names


def _refuse_overlap(a: Samples, b: Samples, b_name: str, a_name: str, where: str) -> None:
    both = overlapping_rows(a, b)
    if len(both):
        raise ValueError(f"{where}: {b_name} contains {len(both)} sample(s) also in {a_name} "
                         f"(e.g. {b_name} rows {both[:5].tolist()}); the sets must be "
                         f"disjoint")  # fmt: skip


def _forgotten_classes(forget_classes: Any, sets: dict[str, Samples], n: int, where: str):
    if isinstance(forget_classes, str | bytes) or not isinstance(forget_classes, Sequence):
        raise TypeError(f"{where}: forget_classes must be a sequence of class indices, got "
                        f"{forget_classes!r}")  # fmt: skip
    gone = []
    for c in forget_classes:
        if not _is_int(c) or not 0 <= int(c) < n:
            raise ValueError(f"{where}: forget_classes holds {c!r}; expected class indices "
                             f"in 0..{n - 1}")  # fmt: skip
        gone.append(int(c))
    if not gone:
        return gone
    marked = torch.as_tensor(gone)
    stray = int((~torch.isin(sets["forget"].y, marked)).sum())
    if stray:
        raise ValueError(f"{where}: forget holds {stray} sample(s) of classes outside "
                         f"forget_classes={gone}; class forgetting forgets whole "
                         "classes")  # fmt: skip
    kept = int(torch.isin(sets["retain"].y, marked).sum())
    if kept:
        raise ValueError(f"{where}: retain holds {kept} sample(s) of the forgotten classes "
                         f"{gone}; move them to forget")  # fmt: skip
    return sorted(set(gone))


def _task(data, forget, kind, spec, rng, heldout_fraction, forget_classes=()) -> ForgetTask:
    forget = np.sort(np.asarray(forget, dtype=np.int64))
    retain = np.setdiff1d(np.arange(len(data.train)), forget)
    test, heldout = _test_split(data, heldout_fraction, rng)
    return ForgetTask(data, forget, retain, test, heldout, kind, spec, tuple(forget_classes))


# --------------------------------------------------------------------------- scenarios


def forget_class(
    data: ImageDataset, cls: int | str, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget every training sample of one class.

    Parameters
    ----------
    data
        The dataset whose training set the request removes from.
    cls
        The class to forget, by index or by name.
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    c = _class_index(_check_data(data), cls)
    rng = _rng(seed)
    forget = np.flatnonzero(data.train.y.numpy() == c)
    if forget.size == 0:
        raise ValueError(f"class {c} has no training samples in {data.name}")
    return _task(data, forget, "class", {"class": c, "seed": seed}, rng, heldout_fraction, (c,))


def forget_identity(
    data: ImageDataset, person: int, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget every image of one person (a face dataset's class is an identity).

    Parameters
    ----------
    data
        The dataset whose training set the request removes from.
    person
        The identity (class index) whose images are forgotten.
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    _class_index(_check_data(data), person, "person")
    task = forget_class(data, person, seed=seed, heldout_fraction=heldout_fraction)
    return _replace_task(task, kind="identity", spec={"person": task.spec["class"], "seed": seed})


def forget_subclass(
    data: ImageDataset, cls: int | str, n: int | float, *, seed: int = 0,
    heldout_fraction: float = 0.5,
) -> ForgetTask:  # fmt: skip
    """Forget ``n`` random samples (or a fraction of the class) of one class; at least one
    sample of the class is kept (all of it is :func:`forget_class`).

    Parameters
    ----------
    data
        The dataset whose training set the request removes from.
    cls
        The class the samples come from, by index or by name.
    n
        How many of its samples: a count (int) or a fraction of the class (float).
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    c = _class_index(_check_data(data), cls)
    rng = _rng(seed)
    members = np.flatnonzero(data.train.y.numpy() == c)
    k = _count(n, members.size, f"sub-class of class {c} (all of it is forget_class)")
    forget = rng.choice(members, size=k, replace=False)
    return _task(data, forget, "subclass", {"class": c, "n": k, "seed": seed}, rng,
                 heldout_fraction)  # fmt: skip


def forget_random(
    data: ImageDataset, n: int | float, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget ``n`` training samples drawn uniformly at random: an int is a count, a float a
    fraction of all training samples (rounded, at least 1). At least one sample must be left
    to retain, so ``n=1.0`` (everything) raises ``ValueError``.

    Parameters
    ----------
    data
        The dataset whose training set the request removes from.
    n
        How many samples: a count (int) or a fraction of the training set (float).
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    rng = _rng(seed)
    k = _count(n, len(_check_data(data).train), "random")
    forget = rng.choice(len(data.train), size=k, replace=False)
    return _task(data, forget, "random", {"n": k, "seed": seed}, rng, heldout_fraction)


def forget_indices(
    data: ImageDataset, indices, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget the given training indices (checked: 1-D, integers, in range, distinct,
    non-empty, and not all of them).

    Parameters
    ----------
    data
        The dataset whose training set the request removes from.
    indices
        Training-set indices to forget.
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    _check_data(data)
    if isinstance(indices, str | bytes | dict | set):
        raise TypeError(f"indices must be a 1-D sequence of ints, got {type(indices).__name__}")
    idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got an array of shape {idx.shape}")
    if idx.size == 0:
        raise ValueError("indices: the forget set is empty")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices: forget indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= len(data.train):
        bad = idx[(idx < 0) | (idx >= len(data.train))][0]
        raise ValueError(
            f"indices: forget index {bad} is out of range for {len(data.train)} training samples"
        )
    if np.unique(idx).size != idx.size:
        raise ValueError("indices: forget indices contain duplicates")
    if idx.size == len(data.train):
        raise ValueError("indices name every training sample: nothing would be left to retain")
    rng = _rng(seed)
    return _task(data, idx, "indices", {"n": int(idx.size), "seed": seed}, rng, heldout_fraction)


def forget_injected(
    data: ImageDataset, n: int, *, source: ImageDataset | str = "noise", seed: int = 0,
    heldout_fraction: float = 0.5,
) -> ForgetTask:  # fmt: skip
    """Inject ``n`` out-of-distribution "sensitive" samples with random labels, then forget them.

    The Forsaken setting (Liu et al.): samples that the model can only fit by memorising
    them. ``source="noise"`` draws uniform-noise images; an
    :class:`~forgetkit.data.ImageDataset` lends its training images, converted to this
    dataset's channels, size and normalisation.

    Parameters
    ----------
    data
        The dataset the samples are injected into.
    n
        How many samples to inject (and then forget).
    source
        ``"noise"`` for uniform noise, or a dataset (or its name) whose training images are
        injected.
    seed
        Seed of the random choices (which samples, which split of the test set).
    heldout_fraction
        Share of the test set set aside as held-out non-members for the membership attacks (the rest
        stays the test set).
    """
    rng = _rng(seed)
    _check_data(data)
    if not _is_int(n):
        raise TypeError(f"injected: n must be an int (a count of samples to inject), got {n!r} "
                        f"({type(n).__name__})")  # fmt: skip
    if n <= 0:
        raise ValueError(f"injected: n={n} leaves the forget set empty (n must be >= 1)")
    n = int(n)
    if not isinstance(source, str | ImageDataset):
        raise TypeError(f"source must be 'noise' or an ImageDataset, got "
                        f"{type(source).__name__}")  # fmt: skip
    c, h, w = data.image_shape
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(source, str):
        if source != "noise":
            raise ValueError(f"source must be 'noise' or an ImageDataset, got {source!r}")
        pixels = torch.rand((n, c, h, w), generator=gen)
        origin = "noise"
    else:
        if n > len(source.train):
            raise ValueError(f"injected: n={n} asks for {n} samples but source {source.name} "
                             f"has {len(source.train)}")  # fmt: skip
        pick = rng.choice(len(source.train), size=n, replace=False)
        pixels = source.denormalize(source.train.x[torch.as_tensor(pick)])
        pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", antialias=True)
        if pixels.shape[1] != c:
            pixels = pixels.mean(1, keepdim=True).expand(-1, c, -1, -1)
        origin = source.name
    labels = torch.as_tensor(rng.integers(0, data.num_classes, size=n), dtype=torch.long)
    injected = Samples(data.normalize(pixels.clamp(0, 1)).contiguous(), labels)
    train = Samples.concat([data.train, injected])
    grown = _replace(data, name=f"{data.name}+{n} {origin}", train=train)
    forget = np.arange(len(data.train), len(train))
    spec = {"n": n, "source": origin, "seed": seed}
    return _task(grown, forget, "injected", spec, rng, heldout_fraction)


def _replace_task(task: ForgetTask, **changes: Any) -> ForgetTask:
    fields = {k: getattr(task, k) for k in ForgetTask.__dataclass_fields__}
    fields.update(changes)
    return ForgetTask(**fields)
