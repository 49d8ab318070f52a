"""A content-addressed checkpoint cache: chapters share trained models, nothing trains twice.

Keys are SHA-256 hashes of everything that determines the weights (model config, data,
hyperparameters, seed, device type, training-code version). Each entry is one safetensors
file (tensors plus a JSON metadata header), written to a temporary file, flushed to disk and
renamed, so a crash never leaves a half-written checkpoint under an entry's name, and loading
never executes pickled code.

The cache does not trust its files. Each entry records its own key and a SHA-256 digest of
its tensors (names, dtypes, shapes and bytes) in its header, and
:meth:`~forgetkit.cache.CheckpointCache.load` recomputes both. An entry that is unreadable,
truncated, altered, renamed from another key or not safetensors at all (a pickle, say) is a
*miss*: it is reported with a :class:`~forgetkit.cache.CacheWarning` naming the file, and
the caller retrains and overwrites it. Entries written before digests were recorded (caches
without ``integrity`` in the header) cannot be verified and are treated the same way: a
miss, with a warning, retrained once and then stored with a digest; whoever wrote such a
cache can instead vouch for it once with :meth:`~forgetkit.cache.CheckpointCache.adopt_legacy`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from torch import nn

CACHE_ENV = "FORGETKIT_CACHE"
INTEGRITY_FORMAT = 1  # version of the integrity record in each entry's header


class CacheWarning(UserWarning):
    """A cache entry was ignored (damaged, altered or unverifiable) and will be recomputed."""


def default_cache_dir() -> Path:
    """``$FORGETKIT_CACHE``, else ``$XDG_CACHE_HOME/forgetkit/checkpoints`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "forgetkit" / "checkpoints"


def hash_payload(payload: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-serialisable description."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_tensors(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (shape, dtype and bytes)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def digest_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """The full SHA-256 of named tensors (names, dtypes, shapes, bytes), in name order: what
    each entry's integrity record stores."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot be loaded into ``model`` (missing, unexpected or mis-shaped
    tensors), or ``None`` if it fits; checked before loading, so the model is never left
    half-overwritten."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"its weights do not fit the model (missing {missing}, unexpected {unexpected})"
    for name, ref in expected.items():
        if tuple(state[name].shape) != tuple(ref.shape) or state[name].dtype != ref.dtype:
            return (f"its tensor {name!r} is {state[name].dtype} {tuple(state[name].shape)}, "
                    f"the model needs {ref.dtype} {tuple(ref.shape)}")  # fmt: skip
    return None


class CheckpointCache:
    """Tensors and metadata stored under a key, atomically and verified, in ``root``.

    The folder is created and checked for writing when the cache is opened, so an unusable
    ``FORGETKIT_CACHE`` fails before any training rather than after it.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self._check_usable(from_env=root is None and bool(os.environ.get(CACHE_ENV)))

    def _check_usable(self, from_env: bool) -> None:
        where = f"cache folder {self.root}"
        if from_env:
            where = f"{CACHE_ENV}={os.environ[CACHE_ENV]!r}"
        hint = f"point {CACHE_ENV} at a writable folder, or pass cache=False to train uncached"
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"{where} is a file, not a folder; {hint}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise PermissionError(f"{where} cannot be written to ({err}); {hint}") from err

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def discard(self, key: str, reason: str) -> None:
        """Report the entry under ``key`` as unusable; the caller recomputes and overwrites it."""
        warnings.warn(
            f"forgetkit cache: ignoring {self.path(key)}: {reason}; it will be recomputed "
            "and overwritten",
            CacheWarning,
            stacklevel=3,
        )

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The stored tensors and metadata, or ``None`` (a miss) if absent or not verified."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                # Copied out of the memory map: a file changed later cannot reach them.
                tensors = {name: f.get_tensor(name).clone() for name in f.keys()}  # noqa: SIM118
            meta = json.loads(header.get("forgetkit", "{}"))
            integrity = json.loads(header["integrity"]) if "integrity" in header else None
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            self.discard(key, f"it is not a readable safetensors checkpoint ({err})")
            return None
        if not isinstance(integrity, dict) or "sha256" not in integrity:
            self.discard(key, "it has no content hash (written by an older forgetkit), so it "
                         "cannot be verified")  # fmt: skip
            return None
        if integrity.get("key") != key:
            self.discard(key, f"it was stored under another key ({integrity.get('key')!r})")
            return None
        if digest_tensors(tensors) != integrity["sha256"]:
            self.discard(key, "its tensors do not match their content hash (altered or "
                         "corrupt)")  # fmt: skip
            return None
        return tensors, meta if isinstance(meta, dict) else {}

    def adopt_legacy(self) -> list[Path]:
        """Stamp entries written before content hashes (readable safetensors files without an
        integrity record) with their key and digest, so they load as hits again.

        This trusts those files as they are now: run it once, by hand, only on a cache that
        forgetkit itself wrote (it spares retraining every checkpoint after an upgrade).
        Entries that are unreadable or already stamped are left alone. Returns the stamped
        files.
        """
        stamped = []
        for path in sorted(self.root.glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    header = f.metadata() or {}
                    tensors = {name: f.get_tensor(name).clone() for name in f.keys()}  # noqa: SIM118
            except (SafetensorError, OSError, ValueError, RuntimeError):
                continue
            if "integrity" in header:
                continue
            self.save(path.stem, tensors, json.loads(header.get("forgetkit", "{}")))
            stamped.append(path)
        return stamped

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
            integrity = {"format": INTEGRITY_FORMAT, "key": key, "sha256": digest_tensors(clean)}
            save_file(clean, tmp, metadata={"forgetkit": json.dumps(meta, default=str),
                                            "integrity": json.dumps(integrity)})  # fmt: skip
            with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
