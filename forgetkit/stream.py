"""Data read batch by batch: a user's dataset or loader, never held whole in memory.

:class:`~forgetkit.data.Samples` holds a set in memory, which is the fast path wherever a set
fits. A user's own data often does not: a lazy dataset of images on disk, decoded and
transformed one at a time. :class:`DatasetSamples` stands in for ``Samples`` there. It
offers what the methods, the training loop and the metrics read a set through (its length,
its labels, ``batches``, ``subset``, ``head``) and reads only the batch at hand, on the
device, in the model's dtype, applying the dataset's own transforms.

Reading never depends on, or disturbs, the caller's global random state: each batch is read
under global seeds fixed from the set's ``seed`` and the batch's number (random transforms
therefore draw the same crops for the same seed), and the caller's state is restored after
each batch, so the code between batches (dropout in a training step) draws exactly what it
would draw on in-memory data. A batch of a shuffled pass visits the same samples, in the same
order, as ``Samples.batches`` with the same generator: on a deterministic dataset both paths
give the same model.

:func:`as_source` decides: in-memory data (``Samples``, tensors, a ``TensorDataset``, a loader
over one) become ``Samples``; a map-style dataset, or a loader over the whole of one, becomes
a ``DatasetSamples`` with the loader's ``collate_fn`` and ``num_workers``; anything else (an
iterable dataset, a loader with a sampler of its own) is read whole, as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Union

import torch
from torch import Tensor
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    default_collate,
)

from forgetkit.data import (
    Samples,
    _as_index,
    _positive_int,
    _seed_of,
    _tensor,
    _unpack_batch,
    read_samples,
)
from forgetkit.runtime import seeded
from forgetkit.validation import check_labels

LABEL_BATCH = 256  # samples per batch when labels must be read through the dataset
STREAM_BATCH = 256  # at most this many samples per batch when predicting on a streamed set


class DatasetSamples:
    """A map-style dataset read on demand, batch by batch: the streaming twin of ``Samples``.

    Parameters
    ----------
    dataset
        A sized map-style dataset whose items collate to ``(inputs, labels)`` (or a dict
        with one input and one label key, as :meth:`~forgetkit.data.Samples.coerce` accepts).
    what
        The set's role in error messages ("retain set", ...).
    collate_fn
        How items become a batch (the user's loader's own; default: ``default_collate``).
    num_workers
        Worker processes that read items (the user's loader's own; 0 reads in this process).
    seed
        Fixes what reading draws at random (random transforms, worker seeds).
    indices
        The positions of the dataset this set holds (None: all of it, in order).
    device, dtype
        Where each batch is put, and the floating dtype its inputs are cast to (None: as read).
    """

    def __init__(
        self,
        dataset: Dataset,
        what: str = "data",
        *,
        collate_fn: Any = None,
        num_workers: int = 0,
        seed: int = 0,
        indices: Sequence[int] | Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(dataset, torch.utils.data.IterableDataset) or not _sized(dataset):
            raise TypeError(f"{what}: a streamed set needs a sized map-style dataset, got "
                            f"{type(dataset).__name__}")  # fmt: skip
        self.dataset = dataset
        self.what = what
        self.collate_fn = collate_fn or default_collate
        self.num_workers = int(num_workers)
        self.seed = _seed_of(seed, what)
        full = len(dataset)  # type: ignore[arg-type]
        idx = torch.arange(full) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        if idx.ndim != 1:
            raise ValueError(f"{what}: indices must be 1-D, got shape {tuple(idx.shape)}")
        self.indices = idx
        self._device = torch.device(device)
        self.dtype = dtype
        self._labels: Tensor | None = None
        self._shape: tuple[int, ...] | None = None
        self.outputs: int | None = None  # the model's outputs, once known (label check)
        self.owner = what
        if len(self) == 0:
            raise ValueError(f"{what} is empty")

    # ------------------------------------------------------------------ what Samples offers

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __repr__(self) -> str:
        return (f"DatasetSamples({type(self.dataset).__name__}, {len(self)} samples, "
                f"device={self.device}, dtype={self.dtype})")  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def x(self) -> Tensor:
        raise TypeError(
            f"{self.what} is streamed from a {type(self.dataset).__name__} and has no tensor of "
            "all its inputs: read it with .batches(batch_size), or .read() it into memory"
        )

    @property
    def y(self) -> Tensor:
        """All labels, read once (from the dataset's ``targets`` when it has trustworthy
        ones, else through the dataset, keeping the labels alone), on the set's device."""
        if self._labels is None:
            self._labels = self._read_labels()
        return self._labels.to(self.device)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input (read from the first sample)."""
        if self._shape is None:
            self._shape = tuple(self.head(1).x.shape[1:])
        return self._shape

    def _replace(self, **changes: Any) -> DatasetSamples:
        new = object.__new__(DatasetSamples)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def to(self, device: torch.device | str) -> DatasetSamples:
        """The same set, its batches put on ``device``."""
        return self._replace(_device=torch.device(device))

    def cast(self, dtype: torch.dtype) -> DatasetSamples:
        """The same set, its inputs cast to ``dtype`` as they are read."""
        return self._replace(dtype=dtype)

    def subset(self, index: Tensor | Sequence[int]) -> DatasetSamples:
        """The samples at ``index`` (positions or a boolean mask), still streamed."""
        idx = torch.as_tensor(_as_index(index, len(self), "index"), dtype=torch.long)
        labels = None if self._labels is None else self._labels[idx]
        return self._replace(indices=self.indices[idx], _labels=labels)

    def head(self, n: int) -> Samples:
        """The first ``n`` samples, in memory."""
        return self._read(self.indices[: max(1, min(int(n), len(self)))].tolist(), 0)

    def read(self) -> Samples:
        """The whole set in memory (for sets known to be small, e.g. a few retain batches)."""
        x_all = y_all = None
        start = 0
        for x, y in self.batches(LABEL_BATCH):  # filled in place: no second copy at the end
            if x_all is None or y_all is None:
                x_all = x.new_empty((len(self), *x.shape[1:]))
                y_all = y.new_empty((len(self),))
            x_all[start : start + len(x)], y_all[start : start + len(y)] = x, y
            start += len(x)
        assert x_all is not None and y_all is not None  # a streamed set is never empty
        return Samples(x_all, y_all)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches on the set's device, in the order ``Samples.batches``
        visits an in-memory set of the same length with the same ``generator``."""
        batch_size = _positive_int(batch_size, "batch_size")
        n = len(self)
        order = torch.randperm(n, generator=generator).cpu() if shuffle else torch.arange(n)
        chunks = [self.indices[order[i : i + batch_size]].tolist() for i in range(0, n, batch_size)]
        if self.num_workers > 0:  # the user's workers, seeded from ``seed`` (not the global RNG)
            loader = DataLoader(
                self.dataset, batch_sampler=chunks, num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                generator=torch.Generator().manual_seed(self.seed),
            )  # fmt: skip
            for batch in loader:
                yield self._finish(batch)
            return
        for number, chunk in enumerate(chunks):
            s = self._read(chunk, number)
            yield s.x, s.y

    # ------------------------------------------------------------------ reading

    def _read(self, chunk: list[int], number: int) -> Samples:
        # Each batch under seeds of its own, the caller's random state restored after it.
        with seeded((self.seed * 1_000_003 + number) % 2**63, "cpu"):
            batch = self.collate_fn([self.dataset[i] for i in chunk])
        return Samples(*self._finish(batch))

    def expect_classes(self, outputs: int, owner: str) -> DatasetSamples:
        """The same set, checking as each batch is read that its labels index ``outputs``
        model outputs (reading every label up front would read every input too)."""
        if self._labels is not None or _trusted_targets(self.dataset) is not None:
            check_labels(self.y, outputs, owner, self.what)
        return self._replace(outputs=int(outputs), owner=owner)

    def _finish(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = _unpack_batch(batch, self.what)
        x, y = _tensor(x, self.what, "inputs"), _tensor(y, self.what, "labels")
        if not torch.is_floating_point(x):
            raise ValueError(f"{self.what}: inputs must be floating point, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self.what}: inputs contain NaN or infinite values")
        s = Samples(x, y)  # checks the labels' shape and values
        if self.outputs is not None:
            check_labels(s.y, self.outputs, self.owner, self.what)
        x = s.x.to(self.device, self.dtype) if self.dtype else s.x.to(self.device)
        return x, s.y.to(self.device)

    def _read_labels(self) -> Tensor:
        targets = _trusted_targets(self.dataset)
        if targets is not None:
            return Samples(torch.zeros(len(targets), 0), targets).y[self.indices]
        ys = [y.cpu() for _, y in self._replace(_device=torch.device("cpu")).batches(LABEL_BATCH)]
        return torch.cat(ys)


Source = Union[Samples, DatasetSamples]  # noqa: UP007 (a runtime alias for type hints)


def _sized(dataset: Any) -> bool:
    try:
        len(dataset)
    except TypeError:
        return False
    return True


def _trusted_targets(dataset: Any) -> Tensor | None:
    """The labels a dataset declares (``targets``, as torchvision's datasets have), when they
    are what its items return: no ``target_transform``, one label per item."""
    if isinstance(dataset, Subset):
        inner = _trusted_targets(dataset.dataset)
        return None if inner is None else inner[torch.as_tensor(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is None or getattr(dataset, "target_transform", None) is not None:
        return None
    try:
        t = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None
    if t.ndim != 1 or len(t) != len(dataset) or t.is_floating_point():
        return None
    return t


def _in_memory(data: Any) -> bool:
    """Data whose tensors are already in memory (reading them whole costs nothing new)."""
    if isinstance(data, Samples | torch.utils.data.TensorDataset):
        return True
    return isinstance(data, tuple | list) and len(data) == 2


def as_source(data: Any, what: str = "data", *, seed: int = 0) -> Source:
    """``data`` as something a method can read batch by batch: ``Samples`` where it is in
    memory (tensors, a ``TensorDataset``, a loader over one) or cannot be streamed (an
    iterable dataset, a loader with a sampler of its own: read whole, as
    :meth:`~forgetkit.data.Samples.coerce` does), else a :class:`DatasetSamples` over the
    map-style dataset
    (a loader's ``collate_fn`` and ``num_workers`` kept, its batch size and shuffling left
    to the method, which batches and shuffles with its own seed).

    Parameters
    ----------
    data
        Samples, an (inputs, labels) pair, a TensorDataset, a Dataset, a DataLoader or a
        DatasetSamples.
    what
        The argument's role in error messages.
    seed
        Fixes what reading draws at random (random transforms, workers).
    """
    if isinstance(data, DatasetSamples):
        return data
    if _in_memory(data):
        return read_samples(data, what, seed)
    if isinstance(data, DataLoader):
        whole = (
            _sized(data.dataset)
            and not isinstance(data.dataset, torch.utils.data.IterableDataset)
            and isinstance(data.sampler, SequentialSampler | RandomSampler)
            and not getattr(data.sampler, "replacement", False)
            and len(data.sampler) == len(data.dataset)  # type: ignore[arg-type]
        )
        if whole and not _in_memory(data.dataset):
            return DatasetSamples(data.dataset, what, collate_fn=data.collate_fn,
                                  num_workers=data.num_workers, seed=seed)  # fmt: skip
        return read_samples(data, what, seed)
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        if not _sized(data):
            raise TypeError(f"{what}: a {type(data).__name__} has no length; wrap it in a "
                            "DataLoader")  # fmt: skip
        return DatasetSamples(data, what, seed=seed)
    return read_samples(data, what, seed)


class _TensorItems(Dataset):
    """In-memory samples served item by item (to concatenate them with a streamed set)."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples.to("cpu")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.samples.x[i], self.samples.y[i]


def concat_sources(parts: Sequence[Source], what: str = "data") -> Source:
    """The parts one after the other: ``Samples.concat`` when all are in memory, else one
    streamed set over their datasets (batches may then straddle two parts, as a
    ``ConcatDataset`` of the official code does)."""
    if all(isinstance(p, Samples) for p in parts):
        return Samples.concat(list(parts))  # type: ignore[arg-type]
    streamed = [p for p in parts if isinstance(p, DatasetSamples)]
    first = streamed[0]
    datasets = [
        Subset(p.dataset, p.indices.tolist()) if isinstance(p, DatasetSamples)
        else _TensorItems(p)
        for p in parts
    ]  # fmt: skip
    return DatasetSamples(ConcatDataset(datasets), what, collate_fn=first.collate_fn,
                          num_workers=first.num_workers, seed=first.seed,
                          device=first.device, dtype=first.dtype)  # fmt: skip


def in_memory(source: Source) -> Samples:
    """The whole of ``source`` in memory (a no-op for ``Samples``)."""
    return source if isinstance(source, Samples) else source.read()


def read_batch(source: Source, batch_size: int) -> int:
    """The batch size to read ``source`` in for a forward pass without gradients:
    ``batch_size`` in memory (the computation the methods always made), at most
    ``STREAM_BATCH`` on a streamed set, whose inputs are decoded for the batch alone, so that
    the batch, not the set, bounds the memory."""
    return batch_size if isinstance(source, Samples) else min(batch_size, STREAM_BATCH)


def outputs_of(model: Any, source: Source, batch_size: int = 1024) -> Tensor:
    """``model``'s outputs on every sample of ``source``: one call on an in-memory set (the
    computation the methods always made), batch by batch on a streamed one."""
    if isinstance(source, Samples):
        return model(source.x)
    return torch.cat([model(x) for x, _ in source.batches(read_batch(source, batch_size))])
