"""Shared fixtures: offline data (never downloaded in tests) and a private checkpoint cache."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

os.environ["FORGETKIT_OFFLINE"] = "1"  # tests never download


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session trains into its own cache, so tests never read a user's checkpoints."""
    monkeypatch.setenv("FORGETKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _offline_dataset(name: str):
    from forgetkit.data import data_dir, load_dataset

    if data_dir() is None or not (data_dir() / _FILES[name]).exists():
        message = f"{name} needs the offline data folder (FORGETKIT_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message + " in CI")
        pytest.skip(message)
    return load_dataset(name)


_FILES = {"mnist": "mnist.npz", "olivetti": "olivetti_faces.npz",
          "cifar10-jpeg15k": "cifar10_jpeg_15k.npz"}  # fmt: skip


@pytest.fixture(scope="session")
def mnist():
    return _offline_dataset("mnist")


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """2,000 training and 1,000 test images: enough to learn, quick to train on."""
    return mnist.subsample(2000, 1000, seed=0)


@pytest.fixture(scope="session")
def olivetti():
    return _offline_dataset("olivetti")


@pytest.fixture(scope="session")
def cifar_jpeg():
    return _offline_dataset("cifar10-jpeg15k")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run much faster on one thread than on contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_script(name: str):
    """``scripts/NAME.py`` as a module (the scripts are not a package), registered in
    ``sys.modules`` first because their dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def toc_files() -> list[str]:
    """The documents of _toc.yml in order, as the book build reads them
    (``toc_files()`` of scripts/build_book.py)."""
    return load_script("build_book").toc_files()


def tiny_dataset(seed: int = 0, n_train: int = 90, n_test: int = 60):
    """Three separable classes of 1x6x6 images (an ``ImageDataset``): a task that trains in
    milliseconds, for tests that drive every method."""
    from forgetkit.data import ImageDataset, Samples

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(99))

    def part(n: int) -> Samples:
        y = torch.arange(n) % 3
        return Samples(centres[y] + 0.5 * torch.randn(n, 1, 6, 6, generator=g), y)

    return ImageDataset("tiny", part(n_train), part(n_test), ("a", "b", "c"), (0.0,), (1.0,),
                        True, "toy")  # fmt: skip
