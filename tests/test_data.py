"""Datasets, the offline mirror and its checks, and the Samples container."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from forgetkit.data import Samples, load_dataset, prepare


def test_samples_coerce_accepts_pairs_datasets_and_loaders():
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10) % 3
    dataset = torch.utils.data.TensorDataset(x, y)
    for form in ((x, y), dataset, torch.utils.data.DataLoader(dataset, batch_size=3)):
        s = Samples.coerce(form, "forget set")
        assert torch.equal(s.x, x) and torch.equal(s.y, y)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.randn(0, 2), torch.zeros(0, dtype=torch.long), "forget set is empty"),
        (torch.full((3, 2), float("nan")), torch.zeros(3, dtype=torch.long), "NaN"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), "floating point"),
    ],
)
def test_samples_coerce_rejects_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        Samples.coerce((x, y), "forget set")


def test_samples_rejects_length_mismatch_and_unknown_types():
    with pytest.raises(ValueError, match="disagree in length"):
        Samples(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="expected Samples"):
        Samples.coerce("not data", "retain set")


def test_batches_cover_every_sample_once_and_shuffle_is_seeded():
    s = Samples(torch.arange(10.0).view(10, 1), torch.arange(10))
    seen = torch.cat(
        [y for _, y in s.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1))]
    )
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat(
        [y for _, y in s.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1))]
    )
    assert torch.equal(seen, again)


class _Jittered(torch.utils.data.Dataset):
    """A dataset whose transform draws noise from the global generator, as many do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i] + torch.randn(self.x[i].shape), self.y[i]


def test_coerce_reads_loaders_independently_of_the_global_random_state():
    x, y = torch.randn(20, 1, 2, 2), torch.arange(20) % 4
    shuffled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6,
                                           shuffle=True)  # fmt: skip
    jittered = torch.utils.data.DataLoader(_Jittered(x, y), batch_size=6)
    reads = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        state = torch.random.get_rng_state()
        reads.append([Samples.coerce(shuffled, "retain set"), Samples.coerce(jittered, "j"),
                      Samples.coerce(jittered, "j", seed=5)])  # fmt: skip
        assert torch.equal(torch.random.get_rng_state(), state)  # the caller's state untouched
    (plain, noisy, other), (plain_1, noisy_1, other_1) = reads
    assert torch.equal(plain.x, x) and torch.equal(plain.y, y)  # a whole shuffle: in order
    assert torch.equal(plain_1.x, x)
    assert torch.equal(noisy.x, noisy_1.x) and torch.equal(other.x, other_1.x)  # from seed
    assert not torch.equal(noisy.x, other.x)  # and only from seed
    with pytest.raises(ValueError, match=r"retain set: seed must be an int in \[0, 2\*\*63\)"):
        Samples.coerce(shuffled, "retain set", seed=2**64)


def test_the_methods_read_samples_is_the_data_modules():
    from forgetkit import data
    from forgetkit.methods import base

    assert base.read_samples is data.read_samples


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_mnist_is_exact_and_normalised(mnist):
    assert mnist.exact and len(mnist.train) == 60000 and len(mnist.test) == 10000
    assert mnist.image_shape == (1, 28, 28) and mnist.num_classes == 10
    pixels = mnist.denormalize(mnist.train.x[:1000])
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert abs(float(mnist.train.x.mean())) < 0.05  # normalised with MNIST's own statistics


def test_faces_split_seven_three_per_person(olivetti):
    assert len(olivetti.train) == 280 and len(olivetti.test) == 120
    assert np.bincount(olivetti.train.y.numpy()).tolist() == [7] * 40
    assert olivetti.image_shape == (1, 64, 64)
    assert olivetti.resized(32).image_shape == (1, 32, 32)


def test_cifar_subset_is_labelled_lossy(cifar_jpeg):
    assert not cifar_jpeg.exact and "lossy" in cifar_jpeg.note
    assert cifar_jpeg.name == "cifar10-jpeg15k" and len(cifar_jpeg.train) == 10000


def test_subsample_is_stratified_and_reproducible(mnist):
    a = mnist.subsample(1000, 500, seed=3)
    b = mnist.subsample(1000, 500, seed=3)
    assert torch.equal(a.train.y, b.train.y) and len(a.test) == 500
    counts = np.bincount(a.train.y.numpy(), minlength=10)
    expected = np.bincount(mnist.train.y.numpy(), minlength=10) / 60
    assert np.all(np.abs(counts - expected) <= 1)
    with pytest.raises(ValueError, match="n_train=70000 is out of range"):
        mnist.subsample(70000)


@pytest.fixture
def faces_copy(olivetti, tmp_path):
    """A private mirror holding only the faces file, to damage freely."""
    from forgetkit.data import data_dir

    src = data_dir()
    shutil.copy(src / "olivetti_faces.npz", tmp_path / "olivetti_faces.npz")
    manifest = [e for e in json.loads((src / "MANIFEST.json").read_text())
                if e["file"] == "olivetti_faces.npz"]  # fmt: skip
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    return tmp_path


def test_mirror_is_verified_against_its_manifest(faces_copy):
    ds = load_dataset("olivetti", root=faces_copy, download=False)
    assert len(ds.train) == 280
    prepare(faces_copy, ["olivetti"])  # present and listed: verified, nothing downloaded
    with open(faces_copy / "olivetti_faces.npz", "r+b") as f:
        f.seek(100)
        f.write(b"corrupted")
    from forgetkit.data import _load_cached

    _load_cached.cache_clear()
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_dataset("olivetti", root=faces_copy, download=False)


def test_missing_manifest_and_missing_files_are_explained(faces_copy, tmp_path_factory):
    from forgetkit.data import _load_cached

    _load_cached.cache_clear()
    (faces_copy / "MANIFEST.json").unlink()
    with pytest.raises(FileNotFoundError, match="no MANIFEST.json"):
        load_dataset("olivetti", root=faces_copy, download=False)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="downloads are disabled"):
        load_dataset("mnist", root=empty, download=False)
    with pytest.raises(FileNotFoundError, match="exists only as an offline file"):
        load_dataset("cifar10-jpeg15k", root=empty, download=False)


def test_fingerprint_tracks_content(mnist):
    a = mnist.subsample(500, 100, seed=0)
    b = mnist.subsample(500, 100, seed=1)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == mnist.subsample(500, 100, seed=0).fingerprint


def test_per_class_indices_is_balanced_sorted_and_seeded():
    from forgetkit.data import per_class_indices

    samples = Samples(torch.zeros(30, 1), torch.arange(30) % 3)
    idx = per_class_indices(samples, [2, 0], 4, np.random.default_rng(0))
    assert list(idx) == sorted(idx) and len(set(idx)) == 8
    assert sorted(samples.y[idx].tolist()) == [0] * 4 + [2] * 4
    again = per_class_indices(samples, [2, 0], 4, np.random.default_rng(0))
    assert np.array_equal(idx, again)
    with pytest.raises(ValueError, match="per_class=11"):
        per_class_indices(samples, [1], 11, np.random.default_rng(0))
