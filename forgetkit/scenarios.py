"""Forget scenarios: which training samples a deletion request names, reproducible from a seed.

A :class:`ForgetTask` holds a dataset and four disjoint index sets: ``forget`` and ``retain``
partition the training part; ``test`` and ``heldout`` partition the test part, the held-out
samples serving as known non-members for membership-inference attacks.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forgetkit.data import ImageDataset, Samples, _replace


@dataclass(frozen=True, eq=False)
class ForgetTask:
    """One forgetting experiment's data: what to forget, what to keep, what to test on."""

    data: ImageDataset
    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray
    heldout: np.ndarray
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)
    forget_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n_train, n_test = len(self.data.train), len(self.data.test)
        for part, pool in (("forget", n_train), ("retain", n_train), ("test", n_test),
                           ("heldout", n_test)):  # fmt: skip
            idx = np.asarray(getattr(self, part), dtype=np.int64)
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
        return (
            f"{self.kind} forgetting on {self.data.name}: forget {self.forget.size}, "
            f"retain {self.retain.size}, test {self.test.size}, held-out {self.heldout.size}"
        )


# --------------------------------------------------------------------------- helpers


def _class_index(data: ImageDataset, cls: int | str) -> int:
    if isinstance(cls, str):
        if cls not in data.classes:
            raise ValueError(f"unknown class {cls!r} for {data.name}; classes: {data.classes}")
        return data.classes.index(cls)
    if isinstance(cls, bool) or not isinstance(cls, int | np.integer):
        raise TypeError(f"a class is an int or a class name, got {type(cls).__name__}")
    if not 0 <= int(cls) < data.num_classes:
        raise ValueError(f"class {cls} is not in {data.name} (classes 0..{data.num_classes - 1})")
    return int(cls)


def _count(n: int | float, available: int, what: str) -> int:
    """``n`` as a count (an int) or a fraction of ``available`` (a float in (0, 1])."""
    if isinstance(n, float):
        if not 0 < n <= 1:
            raise ValueError(f"{what}: a fraction must lie in (0, 1], got {n}")
        n = max(1, round(n * available))
    if n <= 0:
        raise ValueError(f"{what}: the forget set would be empty (n={n})")
    if n > available:
        raise ValueError(f"{what}: asked for {n} samples but only {available} exist")
    return int(n)


def _test_split(data: ImageDataset, heldout_fraction: float, rng: np.random.Generator):
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must lie in (0, 1), got {heldout_fraction}")
    perm = rng.permutation(len(data.test))
    n_held = round(heldout_fraction * len(perm))
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _task(data, forget, kind, spec, rng, heldout_fraction, forget_classes=()) -> ForgetTask:
    forget = np.sort(np.asarray(forget, dtype=np.int64))
    retain = np.setdiff1d(np.arange(len(data.train)), forget)
    test, heldout = _test_split(data, heldout_fraction, rng)
    return ForgetTask(data, forget, retain, test, heldout, kind, spec, tuple(forget_classes))


# --------------------------------------------------------------------------- scenarios


def forget_class(
    data: ImageDataset, cls: int | str, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget every training sample of one class."""
    c = _class_index(data, cls)
    rng = np.random.default_rng(seed)
    forget = np.flatnonzero(data.train.y.numpy() == c)
    if forget.size == 0:
        raise ValueError(f"class {c} has no training samples in {data.name}")
    return _task(data, forget, "class", {"class": c, "seed": seed}, rng, heldout_fraction, (c,))


def forget_identity(
    data: ImageDataset, person: int, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget every image of one person (a face dataset's class is an identity)."""
    task = forget_class(data, person, seed=seed, heldout_fraction=heldout_fraction)
    return _replace_task(task, kind="identity", spec={"person": task.spec["class"], "seed": seed})


def forget_subclass(
    data: ImageDataset, cls: int | str, n: int | float, *, seed: int = 0,
    heldout_fraction: float = 0.5,
) -> ForgetTask:  # fmt: skip
    """Forget ``n`` random samples (or a fraction) of one class; the rest of it is kept."""
    c = _class_index(data, cls)
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(data.train.y.numpy() == c)
    k = _count(n, members.size, f"sub-class of class {c}")
    if k == members.size:
        raise ValueError(f"n={k} takes all of class {c}: use forget_class for that")
    forget = rng.choice(members, size=k, replace=False)
    return _task(data, forget, "subclass", {"class": c, "n": k, "seed": seed}, rng,
                 heldout_fraction)  # fmt: skip


def forget_random(
    data: ImageDataset, n: int | float, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget ``n`` training samples (or a fraction) drawn uniformly at random."""
    rng = np.random.default_rng(seed)
    k = _count(n, len(data.train) - 1, "random")
    forget = rng.choice(len(data.train), size=k, replace=False)
    return _task(data, forget, "random", {"n": k, "seed": seed}, rng, heldout_fraction)


def forget_indices(
    data: ImageDataset, indices, *, seed: int = 0, heldout_fraction: float = 0.5
) -> ForgetTask:
    """Forget the given training indices (checked: in range, distinct, non-empty)."""
    idx = np.asarray(indices)
    if idx.size == 0:
        raise ValueError("the forget set is empty")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"forget indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= len(data.train):
        bad = idx[(idx < 0) | (idx >= len(data.train))][0]
        raise ValueError(
            f"forget index {bad} is out of range for {len(data.train)} training samples"
        )
    if np.unique(idx).size != idx.size:
        raise ValueError("forget indices contain duplicates")
    rng = np.random.default_rng(seed)
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
    """
    rng = np.random.default_rng(seed)
    if n <= 0:
        raise ValueError(f"injected: the forget set would be empty (n={n})")
    c, h, w = data.image_shape
    gen = torch.Generator().manual_seed(seed)
    if isinstance(source, str):
        if source != "noise":
            raise ValueError(f"source must be 'noise' or an ImageDataset, got {source!r}")
        pixels = torch.rand((n, c, h, w), generator=gen)
        origin = "noise"
    else:
        if n > len(source.train):
            raise ValueError(f"injected: asked for {n} samples but {source.name} has "
                             f"{len(source.train)}")  # fmt: skip
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
