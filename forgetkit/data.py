"""Datasets: official downloads for users with network, a verified offline mirror for everyone else.

Every dataset arrives as an :class:`ImageDataset` of normalised float tensors held in memory;
the datasets used here are small enough for that, and it keeps batching fast and seedable.
The offline mirror is a folder of ``.npz`` files (no pickles) named by the ``FORGETKIT_DATA``
environment variable and checked against its ``MANIFEST.json`` before use.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from forgetkit.runtime import seeded

DATA_ENV = "FORGETKIT_DATA"
OFFLINE_ENV = "FORGETKIT_OFFLINE"

MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class _Source:
    """How one dataset is stored offline and normalised."""

    file: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    exact: bool
    note: str
    content_sha256: str | None = None  # of the raw arrays in layout order: a content pin


SOURCES: dict[str, _Source] = {
    "mnist": _Source(
        "mnist.npz", (0.1307,), (0.3081,), MNIST_CLASSES, True, "MNIST (official pixels)",
        "1e35582d42a90940c55b956deb61875c020b567ed20e3c5b174f52bf7809ed9b",
    ),
    "cifar10": _Source(
        "cifar10.npz", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES,
        True, "CIFAR-10 (official pixels)",
    ),
    "cifar10-jpeg15k": _Source(
        "cifar10_jpeg_15k.npz", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        CIFAR10_CLASSES, False,
        "CIFAR-10 15k subset decoded from JPEG (lossy: about 30 dB PSNR against the official "
        "pixels)",
        "012fbeb4efb05e0b07f58b5048097e611e8d6b0f6c4fc5e67bde16b593aa22ff",
    ),
    "olivetti": _Source(
        "olivetti_faces.npz", (0.5192,), (0.1637,), tuple(f"person {i}" for i in range(40)), True,
        "Olivetti faces (official pixels), 7 train / 3 test images per person",
        "f1e0f2355021edcde02f219a7623fe391b82324011c138ea6cb2addec083574c",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True, eq=False)
class Samples:
    """Inputs and labels, already normalised: the currency every method and metric takes.

    Parameters
    ----------
    x
        Normalised images, one per row (N, C, H, W).
    y
        Integer class labels (N,).
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError("Samples needs tensors x and y")
        if self.y.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"inputs and labels disagree in length: {self.x.shape[0]} inputs, "
                f"{self.y.shape[0]} labels"
            )
        if self.y.dtype != torch.int64:
            object.__setattr__(self, "y", _as_labels(self.y))
        if self.y.numel() and int(self.y.min()) < 0:
            raise ValueError(
                f"labels must be class indices >= 0, got a label of {int(self.y.min())}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Samples:
        """The same samples on ``device``.

        Parameters
        ----------
        device
            Where to move the tensors.
        """
        return Samples(self.x.to(device), self.y.to(device))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input."""
        return tuple(self.x.shape[1:])

    def cast(self, dtype: torch.dtype) -> Samples:
        """The same samples with inputs of ``dtype`` (no copy when they already are).

        Parameters
        ----------
        dtype
            The floating dtype the inputs are cast to (a model's own, float32 or float64).
        """
        return self if self.x.dtype == dtype else Samples(self.x.to(dtype), self.y)

    def head(self, n: int) -> Samples:
        """The first ``n`` samples (at least one).

        Parameters
        ----------
        n
            How many samples, from the start.
        """
        n = max(1, int(n))
        return Samples(self.x[:n], self.y[:n])

    def read(self) -> Samples:
        """These samples (already in memory; a streamed set's ``read`` loads it)."""
        return self

    def subset(self, index: Tensor | np.ndarray | Sequence[int]) -> Samples:
        """The samples at ``index`` (integer positions, or a boolean mask of length n).

        Parameters
        ----------
        index
            Integer positions, or a boolean mask of length n.
        """
        idx = _as_index(index, len(self), "index")
        return Samples(self.x[torch.as_tensor(idx, device=self.x.device)],
                       self.y[torch.as_tensor(idx, device=self.y.device)])  # fmt: skip

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` mini-batches; shuffling draws only from ``generator``.

        Parameters
        ----------
        batch_size
            Samples per batch (the last one may be smaller).
        shuffle
            Visit the samples in a random order.
        generator
            Source of the shuffling order (None: torch's global generator).
        """
        for idx in self.batch_indices(batch_size, shuffle=shuffle, generator=generator):
            yield self.x[idx], self.y[idx]

    def batch_indices(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[slice | Tensor]:
        """The rows of each batch :meth:`batches` yields, in its order: for a caller that keeps
        per-sample values beside the samples (a frozen teacher's logits).

        Parameters
        ----------
        batch_size
            Samples per batch (the last one may be smaller).
        shuffle
            Visit the samples in a random order.
        generator
            Source of the shuffling order (None: torch's global generator).
        """
        batch_size = _positive_int(batch_size, "batch_size")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                yield slice(start, start + batch_size)
            else:
                yield order[start : start + batch_size].to(self.x.device)

    @staticmethod
    def concat(parts: Sequence[Samples]) -> Samples:
        if not parts or not all(isinstance(p, Samples) for p in parts):
            raise ValueError("concat needs a non-empty sequence of Samples")
        return Samples(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))

    @classmethod
    def coerce(cls, data: Any, what: str = "data", *, seed: int = 0) -> Samples:
        """Accept ``Samples``, an ``(x, y)`` pair, a ``TensorDataset``, a map-style
        ``Dataset`` or a ``DataLoader``, and read it whole into memory.

        A ``DataLoader`` (or ``Dataset``) may yield ``(inputs, labels)`` pairs or dicts with
        one input key (``image``, ``images``, ``input``, ``inputs``, ``x``,
        ``pixel_values``) and one label key (``label``, ``labels``, ``target``, ``targets``,
        ``y``), as Hugging Face-style datasets do.

        Reading does not depend on, or disturb, the caller's global random state: a
        ``DataLoader`` that shuffles a whole map-style dataset is read in the dataset's own
        order (``shuffle=True`` and ``False`` give the same samples in the same order), and
        any other loader, random transforms and worker seeds run under global seeds fixed
        from ``seed``; the caller's random state is restored afterwards.

        Parameters
        ----------
        data
            The samples, in any of the forms above.
        what
            The argument's role in error messages ("forget set", ...).
        seed
            Fixes what reading a loader or dataset draws at random (order, transforms).
        """
        if isinstance(data, Samples):
            out = data
        elif isinstance(data, tuple | list) and len(data) == 2:
            out = cls(_tensor(data[0], what, "inputs"), _tensor(data[1], what, "labels"))
        elif isinstance(data, torch.utils.data.TensorDataset):
            if len(data.tensors) < 2:
                raise ValueError(f"{what}: a TensorDataset needs (inputs, labels) tensors")
            out = cls(data.tensors[0], data.tensors[1])
        elif isinstance(data, DataLoader | torch.utils.data.Dataset):
            if not isinstance(data, DataLoader):  # a map-style dataset
                if not hasattr(data, "__len__"):
                    raise TypeError(f"{what}: a {type(data).__name__} has no length; wrap it "
                                    "in a DataLoader")  # fmt: skip
                data = DataLoader(data, batch_size=1024)
            with seeded(_seed_of(seed, what), "cpu"):
                out = _read_loader(_in_order(data), what, cls)
        else:
            raise TypeError(
                f"{what}: expected Samples, an (inputs, labels) pair, a TensorDataset, a "
                f"Dataset or a DataLoader, got {type(data).__name__}"
            )
        if len(out) == 0:
            raise ValueError(f"{what} is empty")
        if not torch.is_floating_point(out.x):
            raise ValueError(f"{what}: inputs must be floating point, got {out.x.dtype}")
        if not bool(torch.isfinite(out.x).all()):
            raise ValueError(f"{what}: inputs contain NaN or infinite values")
        return out


def _seed_of(seed: Any, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{what}: seed must be an int, got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{what}: seed must be an int in [0, 2**63), got {seed!r}")
    return int(seed)


def _read_loader(loader: DataLoader, what: str, cls: type[Samples]) -> Samples:
    """Every batch of ``loader``, stacked into one ``Samples``."""
    xs, ys = [], []
    for batch in loader:
        x, y = _unpack_batch(batch, what)
        xs.append(_tensor(x, what, "inputs"))
        ys.append(_tensor(y, what, "labels"))
    if not xs:
        raise ValueError(f"{what} is empty: the DataLoader yielded no batches")
    shapes = sorted({tuple(x.shape[1:]) for x in xs} | {tuple(y.shape[1:]) for y in ys})
    if len({tuple(x.shape[1:]) for x in xs}) > 1 or any(y.ndim != 1 for y in ys):
        raise ValueError(
            f"{what}: the batches' inputs and labels do not stack (shapes after the "
            f"batch dimension: {shapes}); labels must be 1-D"
        )
    return cls(torch.cat(xs), torch.cat(ys))


def _in_order(loader: DataLoader) -> DataLoader:
    """A shuffling loader over the whole of a map-style dataset, re-made to read the dataset
    in order: the same samples, in an order that no random state decides."""
    sampler = loader.sampler
    full = (isinstance(sampler, RandomSampler) and not sampler.replacement
            and sampler.num_samples == len(sampler.data_source)
            and sampler.data_source is loader.dataset
            and isinstance(loader.batch_sampler, BatchSampler)
            and type(loader.batch_sampler) is BatchSampler)  # fmt: skip
    if not full:
        return loader
    extra = {"prefetch_factor": loader.prefetch_factor} if loader.num_workers > 0 else {}
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, shuffle=False,
        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, **extra,
    )  # fmt: skip


def read_samples(data: Any, what: str, seed: int) -> Samples:
    """``Samples.coerce(data, what, seed=seed)``: the whole of ``data`` in memory, read
    independently of the caller's global random state (see :meth:`Samples.coerce`).

    Parameters
    ----------
    data
        Samples, an (inputs, labels) pair, a TensorDataset, a Dataset or a DataLoader.
    what
        The argument's role in error messages.
    seed
        Fixes what reading draws at random (loader order, random transforms).
    """
    return Samples.coerce(data, what, seed=seed)


INPUT_KEYS = ("image", "images", "input", "inputs", "x", "pixel_values")
LABEL_KEYS = ("label", "labels", "target", "targets", "y")


def _unpack_batch(batch: Any, what: str) -> tuple[Any, Any]:
    """``(inputs, labels)`` of one DataLoader batch, a pair or a dict with known keys."""
    if isinstance(batch, dict):
        found = sorted(map(str, batch))
        x_keys = [k for k in INPUT_KEYS if k in batch]
        y_keys = [k for k in LABEL_KEYS if k in batch]
        if len(x_keys) != 1 or len(y_keys) != 1:
            raise ValueError(
                f"{what}: the DataLoader yields dicts with keys {found}; expected exactly one "
                f"input key of {list(INPUT_KEYS)} and one label key of {list(LABEL_KEYS)} "
                "(rename them, or pass an (inputs, labels) pair)"
            )
        return batch[x_keys[0]], batch[y_keys[0]]
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        f"{what}: the DataLoader must yield (inputs, labels) pairs or dicts, got a "
        f"{type(batch).__name__}"
        + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
    )


def _tensor(value: Any, what: str, part: str) -> Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{what}: the {part} must be a tensor or an array of numbers, got "
            f"{type(value).__name__} ({err})"
        ) from err


def _as_labels(y: Tensor) -> Tensor:
    """Labels as int64 class indices; float labels must be whole numbers (never truncated)."""
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}")
    if torch.is_floating_point(y):
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            first = y[bad][0].item()
            raise ValueError(
                f"labels must be whole numbers (class indices), got {first!r} in a float "
                f"tensor; {int(bad.sum())} of {y.numel()} labels are not whole"
            )
    return y.long()


def _as_index(index: Any, n: int, what: str) -> np.ndarray:
    """``index`` as a 1-D int64 array of positions in ``range(n)``, from integers or a mask."""
    if isinstance(index, Tensor):
        index = index.detach().cpu().numpy()
    idx = np.asarray(index)
    if idx.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got an array of shape {idx.shape}")
    if idx.dtype == bool:
        if idx.size != n:
            raise ValueError(f"{what}: a boolean mask needs {n} entries, got {idx.size}")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{what} must hold integers (or be a boolean mask), got dtype {idx.dtype}")
    if idx.min() < -n or idx.max() >= n:
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise ValueError(f"{what}: position {bad} is out of range for {n} samples")
    return idx.astype(np.int64)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset with fixed train and test parts, normalised per channel.

    Parameters
    ----------
    name
        The dataset's registered name.
    train
        The training images and labels.
    test
        The test images and labels.
    classes
        Class names, in label order.
    mean
        Per-channel mean used to normalise the images.
    std
        Per-channel standard deviation used to normalise the images.
    exact
        Whether the pixels are the official ones (False for a re-encoded copy such as JPEG).
    note
        Where the data came from and how it differs from the official release.
    """

    name: str
    train: Samples
    test: Samples
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    exact: bool
    note: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @functools.cached_property
    def fingerprint(self) -> str:
        """A content hash of the tensors, part of every checkpoint's cache key."""
        h = hashlib.sha256(self.name.encode())
        for t in (self.train.x, self.train.y, self.test.x, self.test.y):
            h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
        return h.hexdigest()[:16]

    def denormalize(self, x: Tensor) -> Tensor:
        """Back to pixel intensities in [0, 1], for display.

        Parameters
        ----------
        x
            Normalised images, as the model takes them.
        """
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def normalize(self, pixels: Tensor) -> Tensor:
        """From intensities in [0, 1] to the model's input space.

        Parameters
        ----------
        pixels
            Images with intensities in [0, 1].
        """
        mean = torch.tensor(self.mean, device=pixels.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(-1, 1, 1)
        return (pixels - mean) / std

    def subsample(self, n_train: int | None = None, n_test: int | None = None, *, seed: int = 0):
        """A class-stratified subset of the train and test parts, reproducible from ``seed``.

        Parameters
        ----------
        n_train
            Training samples to keep (None: all).
        n_test
            Test samples to keep (None: all).
        seed
            Seed of the draw.
        """
        for n, what in ((n_train, "n_train"), (n_test, "n_test")):
            if n is not None:
                _positive_int(n, what)
        rng = np.random.default_rng(seed)
        train = (
            self.train
            if n_train is None
            else self.train.subset(_stratified(self.train.y, n_train, rng, "n_train"))
        )
        test = (
            self.test
            if n_test is None
            else self.test.subset(_stratified(self.test.y, n_test, rng, "n_test"))
        )
        label = f"{self.name}[{len(train)}/{len(test)}, seed {seed}]"
        return _replace(self, name=label, train=train, test=test)

    def resized(self, size: int) -> ImageDataset:
        """Area-downsampled images (e.g. Olivetti's 64x64 to 32x32 for faster models).

        Parameters
        ----------
        size
            Side of the square output images, in pixels.
        """
        size = _positive_int(size, "size")

        def shrink(s: Samples) -> Samples:
            return Samples(F.interpolate(s.x, size=(size, size), mode="area"), s.y)

        return _replace(self, name=f"{self.name}@{size}px", train=shrink(self.train),
                        test=shrink(self.test))  # fmt: skip


def _replace(ds: ImageDataset, **changes: Any) -> ImageDataset:
    fields = {k: getattr(ds, k) for k in ImageDataset.__dataclass_fields__}
    fields.update(changes)
    return ImageDataset(**fields)


def _stratified(labels: Tensor, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    y = labels.cpu().numpy()
    if not 0 < n <= len(y):
        raise ValueError(f"{what}={n} is out of range: the set has {len(y)} samples")
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / len(y) * n).astype(int)
    for i in np.argsort(-(counts / len(y) * n - quota))[: n - quota.sum()]:
        quota[i] += 1
    picks = [rng.choice(np.flatnonzero(y == c), size=q, replace=False)
             for c, q in zip(classes, quota, strict=True)]  # fmt: skip
    return np.sort(np.concatenate(picks))


def per_class_indices(
    samples: Samples, classes: Sequence[int], per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``per_class`` random samples of each class in ``classes``, in dataset
    order: a balanced subset, drawn class by class from ``rng`` (so the same generator
    state gives the same subset).

    Parameters
    ----------
    samples
        The set to draw from.
    classes
        The labels to keep, in the order they are drawn.
    per_class
        How many samples of each class; at most the smallest class's size.
    rng
        The generator the draws come from (it advances).
    """
    labels = samples.y.cpu().numpy()
    chosen = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if per_class > len(members):
            raise ValueError(f"per_class={per_class} but class {c} has {len(members)} samples")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def data_dir() -> Path | None:
    """The offline mirror named by ``FORGETKIT_DATA``, or ``None`` when unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> tuple[int, int] | None:
    """Size and modification time of a file (``None`` if absent): a memo key per version."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_manifest(manifest: Path) -> list[dict[str, Any]]:
    """The entries of a MANIFEST.json, each with a ``file`` and a ``sha256``, or a clear error."""
    fix = (f"restore it from the data folder you copied, or delete it and run "
           f"`forgetkit-data prepare {manifest.parent}` to rebuild it")  # fmt: skip
    try:
        entries = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{manifest} is not valid JSON ({err}); {fix}") from err
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str)
        for e in entries
    ):
        raise ValueError(
            f"{manifest} is malformed: expected a list of {{'file': ..., 'sha256': ...}} "
            f"entries; {fix}"
        )
    return entries


def _verified(path: Path) -> None:
    """Check ``path`` against the MANIFEST.json beside it (memoised per file version)."""
    manifest = path.parent / "MANIFEST.json"
    _verified_version(path, _stamp(path), _stamp(manifest))


@functools.cache
def _verified_version(path: Path, stamp: Any, manifest_stamp: Any) -> None:
    manifest = path.parent / "MANIFEST.json"
    if manifest_stamp is None:
        raise FileNotFoundError(
            f"{path.parent} has no MANIFEST.json; run `forgetkit-data prepare {path.parent}`"
        )
    entries = {e["file"]: e for e in _read_manifest(manifest)}
    if path.name not in entries:
        raise ValueError(f"{path.name} is not listed in {manifest}")
    if _sha256(path) != entries[path.name]["sha256"]:
        raise ValueError(
            f"{path} does not match the checksum in {manifest}: the file is corrupt or "
            "truncated; copy it again from the original data folder (or delete it and run "
            f"`forgetkit-data prepare {path.parent}`)"
        )


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file (pickles refused), or an error naming the file."""
    fix = "copy it again from the original data folder or rebuild it with `forgetkit-data prepare`"
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            arrays = {k: np.asarray(z[k]) for k in keys if k in files}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .npz archive ({err}); {fix}") from err
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing} (it holds {files}); {fix}")
    return arrays


def _content_sha256(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


_LAYOUT = {"olivetti": ("images", "target")}
_DEFAULT_LAYOUT = ("x_train", "y_train", "x_test", "y_test")


def _raw_arrays(name: str, root: Path | None, download: bool) -> dict[str, np.ndarray]:
    """The arrays in the offline file's own layout (uint8 images, int64 labels)."""
    src = SOURCES[name]
    if root is not None and (root / src.file).exists():
        path = root / src.file
        _verified(path)
        return _read_npz(path, _LAYOUT.get(name, _DEFAULT_LAYOUT))
    if name == "cifar10-jpeg15k":
        raise FileNotFoundError(
            f"the CIFAR-10 JPEG subset exists only as an offline file ({src.file}); "
            f"set {DATA_ENV} to the folder that holds it"
        )
    if not download:
        where = f"{DATA_ENV}={root}" if root is not None else f"{DATA_ENV} is not set"
        raise FileNotFoundError(
            f"dataset {name!r} is not available offline ({where}) and downloads are disabled "
            f"({OFFLINE_ENV}=1): point {DATA_ENV} at a folder prepared with `forgetkit-data "
            "prepare`"
        )
    return _download(name, Path(tempfile.gettempdir()) / "forgetkit-downloads")


def _train_test(name: str, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) with NHWC images."""
    if name != "olivetti":
        return tuple(arrays[k] for k in _DEFAULT_LAYOUT)
    # A fixed split, 7 train and 3 test images per person (seed 0 within each person).
    images, target = arrays["images"][..., None], arrays["target"].astype(np.int64)
    rng = np.random.default_rng(0)
    train, test = [], []
    for person in np.unique(target):
        idx = rng.permutation(np.flatnonzero(target == person))
        train.extend(idx[:7])
        test.extend(idx[7:])
    train, test = np.sort(train), np.sort(test)
    return images[train], target[train], images[test], target[test]


def _download(name: str, root: Path) -> dict[str, np.ndarray]:
    """Official data through torchvision (MNIST, CIFAR-10) or scikit-learn (Olivetti)."""
    if name == "olivetti":
        from sklearn.datasets import fetch_olivetti_faces

        faces = fetch_olivetti_faces(data_home=str(root))
        images = np.rint(faces.images * 255).astype(np.uint8)
        return {"images": images, "target": faces.target.astype(np.int64)}
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    arrays = {}
    for train, part in ((True, "train"), (False, "test")):
        ds = cls(str(root), train=train, download=True)
        x = np.asarray(ds.data, dtype=np.uint8)
        arrays[f"x_{part}"] = x[..., None] if x.ndim == 3 else x
        arrays[f"y_{part}"] = np.asarray(ds.targets, dtype=np.int64)
    return arrays


def load_dataset(name: str, *, root: str | Path | None = None, download: bool | None = None):
    """Load ``"mnist"``, ``"cifar10"``, ``"cifar10-jpeg15k"`` or ``"olivetti"``.

    Looks first in ``root`` (default: ``$FORGETKIT_DATA``), verifying the file against the
    folder's MANIFEST.json; otherwise downloads the official data unless ``download`` is
    false or ``$FORGETKIT_OFFLINE`` is ``1``.

    Parameters
    ----------
    name
        Which dataset to load.
    root
        Folder with the offline files (default ``$FORGETKIT_DATA``).
    download
        Whether a missing file may be downloaded (default: yes unless ``$FORGETKIT_OFFLINE=1``).
    """
    if not isinstance(name, str) or name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SOURCES)}")
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be True, False or None, got {download!r}")
    # Everything the result depends on is resolved here, so the memo below never serves a
    # dataset from a folder, setting or file version other than the current one.
    folder = Path(root).expanduser() if root is not None else data_dir()
    if download is None:
        download = os.environ.get(OFFLINE_ENV, "0") != "1"
    file = None if folder is None else folder / SOURCES[name].file
    stamp = None if file is None else (_stamp(file), _stamp(folder / "MANIFEST.json"))
    return _load_cached(name, None if folder is None else str(folder), download, stamp)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str | None, download: bool, stamp: Any) -> ImageDataset:
    src = SOURCES[name]
    folder = None if root is None else Path(root)
    arrays = _raw_arrays(name, folder, download)
    if (
        src.content_sha256 is not None
        and _content_sha256(list(arrays.values())) != src.content_sha256
    ):
        where = folder / src.file if folder is not None else "the downloaded files"
        raise ValueError(
            f"{name}: the arrays in {where} differ from the pinned content (sha256 "
            f"{src.content_sha256[:12]}...); the file is not the release forgetkit expects, "
            "so copy the original file again"
        )
    x_tr, y_tr, x_te, y_te = _train_test(name, arrays)
    dataset = ImageDataset(
        name=name,
        train=Samples(_to_tensor(x_tr, src), torch.as_tensor(y_tr, dtype=torch.long)),
        test=Samples(_to_tensor(x_te, src), torch.as_tensor(y_te, dtype=torch.long)),
        classes=src.classes,
        mean=src.mean,
        std=src.std,
        exact=src.exact,
        note=src.note,
    )
    return dataset


def _to_tensor(images: np.ndarray, src: _Source) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(src.mean).view(1, -1, 1, 1)
    std = torch.tensor(src.std).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


# --------------------------------------------------------------------------- mirror CLI


def prepare(folder: str | Path, names: Sequence[str] = ("mnist", "olivetti")) -> Path:
    """Write (or verify) an offline mirror of the official data in ``folder``.

    Existing files listed in the folder's manifest are only verified; missing ones are
    downloaded once and written atomically, so tests and chapters never download later.
    """
    unknown = [n for n in names if n not in SOURCES]
    if isinstance(names, str) or unknown:
        raise ValueError(f"names must be a list of datasets from {sorted(SOURCES)}, got {names!r}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "MANIFEST.json"
    manifest = _read_manifest(manifest_path) if manifest_path.exists() else []
    listed = {e["file"] for e in manifest}
    for name in names:
        src = SOURCES[name]
        path = folder / src.file
        if path.exists() and src.file in listed:
            _verified(path)
            continue
        if name == "cifar10-jpeg15k":
            raise FileNotFoundError("the CIFAR-10 JPEG subset cannot be downloaded; copy it")
        arrays = _download(name, folder / "downloads")
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        manifest = [e for e in manifest if e["file"] != src.file]
        manifest.append({
            "file": src.file,
            "sha256": _sha256(path),
            "arrays": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()},
        })  # fmt: skip
        tmp_manifest = manifest_path.with_suffix(".tmp")
        tmp_manifest.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp_manifest, manifest_path)
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="forgetkit-data", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["prepare", "verify"])
    parser.add_argument("folder", help="the offline data folder (FORGETKIT_DATA)")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "olivetti"],
                        choices=sorted(SOURCES))  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.folder, args.datasets)
    for name in args.datasets:
        ds = load_dataset(name, root=args.folder, download=False)
        print(f"{name}: {len(ds.train)} train / {len(ds.test)} test, verified ({ds.note})")


if __name__ == "__main__":
    main()
