"""Devices, seeds and timers: the few runtime facts every other module agrees on."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

DeviceLike = str | torch.device | None


def resolve_device(device: DeviceLike = None) -> torch.device:
    """Turn ``None``/``"auto"`` into CUDA when present, else CPU; validate explicit choices.

    (``unlearn`` reads ``device=None`` as the model's own device instead, see
    :func:`model_device`.)

    Asking for CUDA on a machine without it is an error rather than a silent fallback,
    so a GPU experiment never quietly runs (and is timed) on the CPU.

    Parameters
    ----------
    device
        None or ``"auto"`` to pick, else a device name, index or ``torch.device``.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available on this machine")
    return dev


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); CPU for a parameterless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def generator(seed: int, device: DeviceLike = "cpu") -> torch.Generator:
    """A fresh torch generator on ``device``: explicit generators keep library calls from
    disturbing (or depending on) the caller's global random state."""
    return torch.Generator(device=resolve_device(device)).manual_seed(int(seed))


@contextlib.contextmanager
def seeded(seed: int, device: DeviceLike = None) -> Iterator[None]:
    """Run a block under fixed global seeds (torch, numpy, random) and restore the caller's
    random state afterwards, so that seeding a library call has no side effects."""
    dev = resolve_device(device)
    cuda_devices = [dev] if dev.type == "cuda" else []
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (restoring the legacy global)
    with torch.random.fork_rng(devices=cuda_devices):
        # Seed only the generators that are restored afterwards: torch.manual_seed would
        # also reseed every CUDA device, a side effect on the caller's GPU random state.
        torch.random.default_generator.manual_seed(int(seed))
        for cuda in cuda_devices:
            with torch.cuda.device(cuda):
                torch.cuda.manual_seed(int(seed))
        random.seed(int(seed))
        np.random.seed(int(seed) % 2**32)  # noqa: NPY002 (code that uses the global)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock seconds of a block, with CUDA synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def best_of(fn: Callable[[], object], repeats: int, device: DeviceLike = None) -> float:
    """The shortest of ``repeats`` timed calls of ``fn``, in seconds (CUDA synchronised).

    The minimum, not the mean: on a shared machine the noise only ever adds time, so the
    fastest run is the best estimate of what the work itself costs.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"best_of: repeats must be a positive int, got {repeats!r}")
    dev = resolve_device(device)
    times = []
    for _ in range(repeats):
        with Stopwatch(dev) as watch:
            fn()
        times.append(watch.seconds)
    return min(times)
