"""Where a result came from: profile, device, seeds, time, code and library versions.

A chapter run at the ``paper`` profile (hours, often on a GPU) stores its table of results
with :func:`save_results`, next to a :class:`Provenance` record; the book, built at the
``ci`` profile, loads it back with :func:`load_results` and shows the numbers together with
where and how they were made. Nothing here imports the book toolchain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DirtyResultsError",
    "Provenance",
    "git_commit",
    "load_results",
    "save_results",
]

RESULTS_FORMAT = "forgetkit-results"
RESULTS_VERSION = 1


class DirtyResultsError(ValueError):
    """A stored result was made from a checkout with uncommitted changes: nobody can rerun
    the code that made it, so the book refuses it unless the caller says it will show that."""


@dataclass(frozen=True)
class Provenance:
    """How one set of results was produced.

    Build one with :meth:`Provenance.collect` at the end of a run, rather than by hand.
    """

    profile: str
    device: str
    seeds: tuple[int, ...]
    seconds: float
    forgetkit_version: str
    git_commit: str | None
    torch_version: str
    python: str
    platform: str
    cpu: str
    accelerator: str | None
    threads: int
    date: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def collect(
        cls,
        profile: str,
        device: str | Any,
        seeds: Sequence[int] | int,
        seconds: float,
        **extra: Any,
    ) -> Provenance:
        """Record this process's environment for results produced under ``profile``.

        ``device`` is what the run used (``"cpu"``, ``"cuda"``, a ``torch.device``),
        ``seeds`` the seeds it averaged over, ``seconds`` its wall-clock time; ``extra``
        keeps anything else worth stating (JSON values only).
        """
        import torch

        import forgetkit

        device = str(device)
        accelerator = None
        if device.startswith("cuda") and torch.cuda.is_available():
            accelerator = torch.cuda.get_device_name(torch.device(device))
        seeds = (seeds,) if isinstance(seeds, int | np.integer) else seeds
        return cls(
            profile=str(profile),
            device=device,
            seeds=tuple(int(s) for s in seeds),
            seconds=float(seconds),
            forgetkit_version=forgetkit.__version__,
            git_commit=git_commit(),
            torch_version=torch.__version__,
            python=platform.python_version(),
            platform=platform.platform(),
            cpu=_cpu_name(),
            accelerator=accelerator,
            threads=torch.get_num_threads(),
            date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            extra=_jsonable(dict(extra)),
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values."""
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """The inverse of :meth:`as_dict`; unknown or missing fields are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"provenance must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}  # fmt: skip
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown:
            raise ValueError(f"unknown provenance fields {unknown}")
        if missing:
            raise ValueError(f"provenance fields missing: {missing}")
        return cls(**{**data, "seeds": tuple(int(s) for s in data["seeds"])})

    @property
    def dirty(self) -> bool:
        """Whether the run was made from a checkout with uncommitted changes."""
        return bool(self.git_commit) and self.git_commit.endswith("-dirty")

    def describe(self) -> str:
        """One line for a caption or a table note; a dirty commit is said in words."""
        where = self.device + (f" ({self.accelerator})" if self.accelerator else "")
        commit = f" @ {self.git_commit}" if self.git_commit else ""
        if self.dirty:
            commit += " (UNCOMMITTED CHANGES: the code that made it is not in any commit)"
        seeds = ", ".join(str(s) for s in self.seeds)
        return (
            f"profile {self.profile}, {where}, seeds {seeds}, {self.seconds:.0f} s, "
            f"forgetkit {self.forgetkit_version}{commit}, torch {self.torch_version}, "
            f"{self.date[:10]}"
        )


RESULTS_DIR = "book/results"  # where chapters store their paper-profile results


def git_commit(path: str | Path | None = None) -> str | None:
    """The short commit of the git checkout holding ``path`` (default: this package),
    with ``-dirty`` when tracked files outside ``book/results/`` (stored results, not code)
    differ from it. Outside a checkout (a copy of the
    tree sent to a lent GPU machine, which travels without ``.git``) it is what the
    launcher put in ``$FORGETKIT_GIT_COMMIT``, read from the checkout it copied, else
    ``None``."""
    root = Path(path) if path is not None else Path(__file__).resolve().parent.parent
    fallback = os.environ.get("FORGETKIT_GIT_COMMIT") or None

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return fallback  # not a checkout, or an unrelated repository around a copy
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return fallback
        # Stored results are outputs, not code: a paper run writing its own file (or a
        # parallel run's) into book/results/ does not make the code that ran uncommitted.
        dirty = (
            git("diff", "--quiet", "HEAD", "--", ".", f":(exclude){RESULTS_DIR}").returncode == 1
        )
    except (OSError, subprocess.SubprocessError):
        return fallback
    return head.stdout.strip() + ("-dirty" if dirty else "")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _jsonable(value: Any) -> Any:
    """Plain JSON values from numpy scalars, tuples and friends; NaN becomes ``None``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    raise TypeError(f"cannot store a value of type {type(value).__name__} as JSON: {value!r}")


# --------------------------------------------------------------------------- results files


def save_results(path: str | Path, records: pd.DataFrame, provenance: Provenance) -> Path:
    """Write ``records`` and ``provenance`` to ``path`` as JSON, atomically.

    The text is built completely before anything touches the disk, then written to a
    temporary file beside ``path`` and renamed over it: a failure leaves the previous file
    (or none) and no partial one. A non-default index is stored and restored.
    """
    if not isinstance(records, pd.DataFrame):
        raise TypeError(f"records must be a pandas DataFrame, got {type(records).__name__}")
    if not isinstance(provenance, Provenance):
        raise TypeError(f"provenance must be a Provenance, got {type(provenance).__name__}")
    index: list[str | None] = []  # the index's level names, when it carries information
    frame = records
    if not isinstance(records.index, pd.RangeIndex) or records.index.name is not None:
        index = [None if n is None else str(n) for n in records.index.names]
        frame = records.reset_index(names=[f"__index{i}__" for i in range(len(index))])
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"column names must be unique, got {columns}")
    payload = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "provenance": provenance.as_dict(),
        "columns": columns,
        "dtypes": [str(t) for t in frame.dtypes],
        "index": index,
        "data": _jsonable(frame.astype(object).values.tolist()),
    }
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"

    return write_text_atomic(path, text)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed over ``path`` (after an fsync) when
    the block succeeds and removed when it fails: readers see the old file or the new one,
    never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def load_results(path: str | Path, *, allow_dirty: bool = False) -> tuple[pd.DataFrame, Provenance]:
    """Read a file written by :func:`save_results`: ``(records, provenance)``.

    A result whose provenance commit ends in ``-dirty`` raises :class:`DirtyResultsError`
    unless ``allow_dirty=True``: a chapter that still shows one must opt in, and should say
    so on the page (:meth:`Provenance.describe` does, in capitals).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no stored results at {path}: run the chapter with PROFILE='paper' to make them"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is damaged") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a forgetkit results file (no format {RESULTS_FORMAT!r})")
    if payload.get("version") != RESULTS_VERSION:
        raise ValueError(
            f"{path} has results format version {payload.get('version')!r}; this forgetkit "
            f"reads version {RESULTS_VERSION}"
        )
    missing = [k for k in ("provenance", "columns", "dtypes", "index", "data") if k not in payload]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    columns, dtypes, data = payload["columns"], payload["dtypes"], payload["data"]
    if len(columns) != len(dtypes) or any(len(row) != len(columns) for row in data):
        raise ValueError(f"{path}: rows, columns and dtypes disagree in length")
    try:
        provenance = Provenance.from_dict(payload["provenance"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    if provenance.dirty and not allow_dirty:
        raise DirtyResultsError(
            f"{path} was made from commit {provenance.git_commit!r}, a checkout with "
            "uncommitted changes; rerun it from a clean commit, or pass allow_dirty=True and "
            "say on the page that it is not reproducible from any commit"
        )
    frame = pd.DataFrame(data, columns=columns)
    for column, dtype in zip(columns, dtypes, strict=True):
        if dtype != "object":
            frame[column] = frame[column].astype(dtype)
    if payload["index"]:
        frame = frame.set_index([f"__index{i}__" for i in range(len(payload["index"]))])
        frame.index.names = payload["index"]
    return frame, provenance
