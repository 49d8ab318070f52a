"""Devices, seeds, timers and progress bars: the few runtime facts every module agrees on.

Progress bars
-------------
Long operations (training and retraining epochs, evaluation over models, relearn time)
show a `tqdm <https://tqdm.github.io>`_ bar on a terminal and in a notebook, and nothing
when output goes to a file or a pipe. One switch silences them all (or forces them on)::

    import forgetkit.runtime
    forgetkit.runtime.set_progress(False)   # or: export FORGETKIT_PROGRESS=0

The book's chapters execute with ``FORGETKIT_PROGRESS=0``, so bars never enter a
notebook's stored outputs. Code of one's own (a method's unlearning loop) gets the same
behaviour from :func:`progress`.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

DeviceLike = str | torch.device | None
PROGRESS_ENV = "FORGETKIT_PROGRESS"
_OFF, _ON = ("0", "false", "no", "off"), ("1", "true", "yes", "on")
_progress_setting: bool | None = None  # what set_progress chose; None: the environment


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


# --------------------------------------------------------------------------- progress


def set_progress(enabled: bool | None) -> None:
    """Show (``True``) or silence (``False``) every forgetkit progress bar, in this process.

    ``False`` wins over everything, including a call's own ``progress=True``; ``None``
    returns to the default: the ``FORGETKIT_PROGRESS`` environment variable (``0`` or
    ``1``) when set, else bars on a terminal or in a notebook and none in a log file.

    Parameters
    ----------
    enabled
        True to show bars, False to silence them, None for the default.
    """
    global _progress_setting
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress: enabled must be True, False or None, got {enabled!r}")
    _progress_setting = enabled


def _switch() -> bool | None:
    """The explicit choice: ``set_progress``'s, else the environment's, else None (auto)."""
    if _progress_setting is not None:
        return _progress_setting
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if not value:
        return None
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"{PROGRESS_ENV}={os.environ[PROGRESS_ENV]!r}: expected 0 (silence "
                     f"progress bars) or 1 (show them), or leave it unset")  # fmt: skip


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where bars render in the cell's output)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether a progress bar shows: never after ``set_progress(False)`` or with
    ``FORGETKIT_PROGRESS=0``; else as ``requested`` (a call's own ``progress=``) when
    given; else as the switch says; else on a terminal or in a notebook.

    Parameters
    ----------
    requested
        A call's own choice (its ``progress=`` argument), None when it has none.
    """
    switch = _switch()
    if switch is False:
        return False
    if requested is not None:
        return bool(requested)
    if switch is True:
        return True
    try:
        tty = bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        tty = False
    return tty or _in_notebook()


def _bar_class() -> Any:
    """tqdm's notebook widget in a kernel that has ipywidgets, its text bar everywhere else.

    Chosen here rather than through ``tqdm.auto``, which warns (into the cell's output)
    in a kernel without ipywidgets before falling back to the text bar.
    """
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401 (only whether it is installed)
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar
        except ImportError:
            pass
    from tqdm.std import tqdm as text_bar

    return text_bar


class _Silent:
    """What :func:`progress` returns when bars are off: iterates, and ignores the rest."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None) -> None:
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def __len__(self) -> int:
        if self.total is not None:
            return int(self.total)
        return len(self.iterable)  # type: ignore[arg-type]

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: int | None = None,
    leave: bool = False,
    show: bool | None = None,
) -> Any:
    """``iterable`` with a progress bar when bars are on (see :func:`progress_enabled`).

    The bar is tqdm's (a widget in a notebook with ipywidgets, text elsewhere) and is
    removed when done (``leave=False``); with bars off the iterable comes back wrapped in a
    silent stand-in. Either way the result also has tqdm's ``update``, ``set_postfix`` and
    ``close`` and works as a context manager, so a loop written for the bar runs without it::

        for batch in progress(batches, desc="scrub", total=len(batches)):
            ...

    Parameters
    ----------
    iterable
        What to iterate over (None: a bar advanced by hand with ``update``).
    desc
        The bar's label: what the work is ("retrain", "evaluate", a method's name).
    total
        Number of steps, when ``iterable`` has no length (or there is no iterable).
    leave
        Keep the finished bar on screen.
    show
        The call's own choice (None: the switch's); ``set_progress(False)`` overrides it.
    """
    if not isinstance(desc, str):
        raise TypeError(f"progress: desc must be a string, got {desc!r}")
    if not progress_enabled(show):
        return _Silent(iterable, total)
    return _bar_class()(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
