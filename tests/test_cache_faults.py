"""The checkpoint cache does not trust its files: every damaged, altered or foreign entry is a
miss that is reported (naming the file), retrained and overwritten, and no pickle ever runs."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import safe_open, save_file

from forgetkit import train as train_module
from forgetkit.cache import CacheWarning, CheckpointCache
from forgetkit.models import ModelConfig
from forgetkit.train import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]
CFG = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 32})
QUICK = TrainConfig(epochs=1, lr=0.05, batch_size=64)


@pytest.fixture(scope="module")
def data(mnist_small):
    return mnist_small.train.subset(range(500))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).clone() for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


class _Marker:
    """A pickle whose loading would create a file: proof of whether pickle code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


# Each corruption rewrites the entry at `path`; `other` is a valid entry under another key.
def _truncate(path, other):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _empty(path, other):
    path.write_bytes(b"")


def _garbage_header(path, other):
    body = b"{not json"
    path.write_bytes(len(body).to_bytes(8, "little") + body)


def _zero(path, other):
    tensors, header = _read(path)
    save_file({k: torch.zeros_like(v) for k, v in tensors.items()}, str(path), metadata=header)


def _flip_one_weight(path, other):
    tensors, header = _read(path)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, str(path), metadata=header)


def _reshape(path, other):
    tensors, header = _read(path)
    name = next(k for k, v in tensors.items() if v.ndim == 2)
    tensors[name] = tensors[name].reshape(-1).clone()  # same bytes, another shape
    save_file(tensors, str(path), metadata=header)


def _swap_keys(path, other):
    shutil.copyfile(other, path)


def _legacy(path, other):  # an entry as forgetkit wrote it before content hashes
    tensors, header = _read(path)
    save_file(tensors, str(path), metadata={"forgetkit": header["forgetkit"]})


def _torch_pickle(path, other):
    tensors, _ = _read(path)
    torch.save(tensors, path)


CORRUPTIONS = {
    "truncated": (_truncate, "not a readable safetensors checkpoint"),
    "empty": (_empty, "not a readable safetensors checkpoint"),
    "garbage header": (_garbage_header, "not a readable safetensors checkpoint"),
    "zeroed": (_zero, "do not match their content hash"),
    "one weight changed": (_flip_one_weight, "do not match their content hash"),
    "reshaped": (_reshape, "do not match their content hash"),
    "swapped between keys": (_swap_keys, "stored under another key"),
    "written by older code": (_legacy, "no content hash"),
    "torch.save pickle": (_torch_pickle, "not a readable safetensors checkpoint"),
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupt_entry_is_detected_retrained_and_overwritten(corrupt, data, tmp_path):
    store = CheckpointCache(tmp_path)
    first = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    other = train_model(CFG, data, QUICK, seed=1, device="cpu", cache=store)
    path = store.path(first.key)
    damage, reason = CORRUPTIONS[corrupt]
    damage(path, store.path(other.key))
    with pytest.warns(CacheWarning, match=re.escape(str(path)) + ".*" + reason):
        again = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    assert not again.cached and _same(again.model, first.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # overwritten: a clean hit now
        third = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    assert third.cached and _same(third.model, first.model)


def test_a_pickle_in_the_cache_never_runs(data, tmp_path):
    marker = tmp_path / "pickle-ran"
    # The payload works: unpickling it does create the marker (so the check below can fail).
    pickle.loads(pickle.dumps(_Marker(tmp_path / "control")))
    assert (tmp_path / "control").exists()

    store = CheckpointCache(tmp_path / "cache")
    first = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    store.path(first.key).write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.warns(CacheWarning, match="not a readable safetensors checkpoint"):
        again = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    assert not marker.exists(), "loading the cache ran pickled code"
    assert not again.cached and _same(again.model, first.model)


def _save_state(store, key, state, meta):
    store.save(key, {f"model.{k}": v for k, v in state.items()}, meta)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda s: {k: v for k, v in s.items() if k != sorted(s)[0]}, r"missing \['1.bias'\]"),
        (lambda s: {**s, "extra.weight": torch.zeros(3)}, r"unexpected \['extra.weight'\]"),
        (lambda s: {k: (v[:1] if v.ndim == 2 else v) for k, v in s.items()}, "the model needs"),
        (lambda s: {k: v.double() for k, v in s.items()}, "torch.float64"),
    ],
    ids=["missing tensor", "extra tensor", "wrong shape", "wrong dtype"],
)
def test_verified_entry_that_does_not_fit_the_model_is_a_miss(edit, reason, data, tmp_path):
    store = CheckpointCache(tmp_path)
    first = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    state = {k: v.clone() for k, v in first.model.state_dict().items()}
    _save_state(store, first.key, edit(state), first.meta)  # a valid, hashed entry
    assert store.load(first.key) is not None
    with pytest.warns(CacheWarning, match=re.escape(str(store.path(first.key))) + ".*" + reason):
        again = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    assert not again.cached and _same(again.model, first.model)  # the model was not half-loaded
    assert train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store).cached


def _no_training(*args, **kwargs):
    raise AssertionError("training started before the cache folder was checked")


def test_cache_folder_that_is_a_file_fails_before_training(data, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(train_module, "fit", _no_training)
    monkeypatch.setenv("FORGETKIT_CACHE", str(blocker))
    with pytest.raises(NotADirectoryError, match=r"FORGETKIT_CACHE=.*not-a-folder.* is a file"):
        train_model(CFG, data, QUICK, seed=0, device="cpu")
    monkeypatch.setenv("FORGETKIT_CACHE", str(blocker / "below"))
    with pytest.raises(PermissionError, match=r"FORGETKIT_CACHE=.*below.* cannot be written"):
        train_model(CFG, data, QUICK, seed=0, device="cpu")
    with pytest.raises(NotADirectoryError, match="cache folder .*not-a-folder is a file"):
        CheckpointCache(blocker)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_cache_folder_fails_before_training(data, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setattr(train_module, "fit", _no_training)
    try:
        with pytest.raises(PermissionError, match="cannot be written"):
            train_model(CFG, data, QUICK, seed=0, device="cpu", cache=CheckpointCache(folder))
    finally:
        folder.chmod(0o700)


# --------------------------------------------------------------------------- killed training

KILL_CONFIG = TrainConfig(epochs=30, lr=0.05, batch_size=64)
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import forgetkit.cache
    from forgetkit.cache import CheckpointCache
    from safetensors.torch import load_file
    from forgetkit.data import Samples
    from forgetkit.models import ModelConfig
    from forgetkit.train import TrainConfig, train_model

    if sys.argv[2] == "die-while-saving":  # SIGKILL once half the checkpoint is on disk
        def half_then_die(tensors, path, metadata=None):
            forgetkit.cache.__dict__["_real_save"](tensors, path, metadata=metadata)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        forgetkit.cache._real_save = forgetkit.cache.save_file
        forgetkit.cache.save_file = half_then_die
    data = Samples(**load_file(sys.argv[3]))
    config = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 32})
    print("training", flush=True)
    train_model(config, data, TrainConfig(epochs=30, lr=0.05, batch_size=64), seed=0,
                device="cpu", cache=CheckpointCache(sys.argv[1]))
    print("done", flush=True)
    """
)


def _child(folder: Path, mode: str, data_file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), mode, str(data_file)],
                            env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def _trusted_entries(folder: Path) -> list[Path]:
    store = CheckpointCache(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        return [p for p in folder.glob("*.safetensors") if store.load(p.stem) is not None]


@pytest.mark.slow
def test_training_killed_at_a_random_point_leaves_nothing_trusted(data, tmp_path, one_thread):
    reference = train_model(CFG, data, KILL_CONFIG, seed=0, device="cpu", cache=False)
    data_file = tmp_path / "data.safetensors"
    save_file({"x": data.x.contiguous(), "y": data.y.contiguous()}, str(data_file))
    rng = random.Random(os.getpid())  # a different kill point on every run
    outcomes = []
    for i, mode in enumerate(("random", "die-while-saving", "complete")):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        child = _child(folder, mode, data_file)
        assert child.stdout.readline().strip() == "training"
        if mode == "random":
            time.sleep(rng.uniform(0.0, 2.5))
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
        child.stdout.close()
        trusted = _trusted_entries(folder)
        assert len(trusted) <= 1
        again = train_model(CFG, data, KILL_CONFIG, seed=0, device="cpu",
                            cache=CheckpointCache(folder))  # fmt: skip
        # Whatever the kill left, a later run either retrains or finds a complete entry.
        assert again.cached == bool(trusted)
        assert _same(again.model, reference.model)
        outcomes.append((mode, child.returncode, again.cached))
    assert outcomes[1][1:] == (-signal.SIGKILL, False), outcomes  # the half-written file unseen
    assert outcomes[2][1:] == (0, True), outcomes  # a finished run's entry is trusted, and its
    # weights (trained in another process) are bit-identical to the ones trained here
    assert [p.name for p in (tmp_path / "run1").glob("*.safetensors")] == [
        f"{reference.key}.safetensors"
    ]
    leftovers = json.dumps(sorted(p.name for p in (tmp_path / "run1").iterdir()))
    assert ".tmp" in leftovers  # the killed writer's temporary file, never read as an entry


def test_legacy_entries_can_be_adopted_once_by_hand(data, tmp_path):
    store = CheckpointCache(tmp_path)
    first = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    _legacy(store.path(first.key), None)
    (tmp_path / "broken.safetensors").write_bytes(b"junk")
    assert store.adopt_legacy() == [store.path(first.key)]  # the unreadable file is left alone
    assert store.adopt_legacy() == []  # already stamped
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = train_model(CFG, data, QUICK, seed=0, device="cpu", cache=store)
    assert again.cached and _same(again.model, first.model)
    assert again.history == first.history
