"""A content-addressed checkpoint cache: chapters share trained models, nothing trains twice.

Keys are SHA-256 hashes of everything that determines the weights (model config, data,
hyperparameters, seed, device type, training-code version). Each entry is one safetensors
file (tensors plus a JSON metadata header), written to a temporary file and renamed, so a
crash never leaves a half-written checkpoint and loading never executes pickled code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

CACHE_ENV = "FORGETKIT_CACHE"


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


class CheckpointCache:
    """Tensors and metadata stored under a key, atomically, in ``root``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The stored tensors and metadata, or ``None`` if absent or unreadable."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("forgetkit", "{}"))
            return load_file(str(path)), meta
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError):
            return None  # a damaged entry is a miss; the caller recomputes and overwrites it

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
            save_file(clean, tmp, metadata={"forgetkit": json.dumps(meta, default=str)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
