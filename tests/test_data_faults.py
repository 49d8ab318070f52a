"""Bad data and broken mirrors: each fault raises where it enters, naming the file or the
argument and saying what to do; nothing is truncated, reinterpreted or served stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetkit.data import SOURCES, Samples, _content_sha256, data_dir, load_dataset

FACES = "olivetti_faces.npz"


@pytest.fixture
def mirror(tmp_path):
    """A private copy of the faces file and its manifest entry (writable, unlike the original)."""
    src = data_dir()
    if src is None or not (src / FACES).exists():
        pytest.skip("needs the offline data folder (FORGETKIT_DATA)")
    shutil.copy(src / FACES, tmp_path / FACES)
    entries = [e for e in json.loads((src / "MANIFEST.json").read_text()) if e["file"] == FACES]
    (tmp_path / "MANIFEST.json").write_text(json.dumps(entries))
    return tmp_path


# --------------------------------------------------------------------------- the mirror


def test_changing_forgetkit_data_inside_a_process_is_honoured(mirror, tmp_path_factory,
                                                                monkeypatch):  # fmt: skip
    monkeypatch.setenv("FORGETKIT_DATA", str(mirror))
    assert len(load_dataset("olivetti", download=False).train) == 280
    empty = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("FORGETKIT_DATA", str(empty))  # no longer there: must not be served
    with pytest.raises(FileNotFoundError, match=f"not available offline.*{empty}"):
        load_dataset("olivetti", download=False)
    monkeypatch.delenv("FORGETKIT_DATA")
    with pytest.raises(FileNotFoundError, match="FORGETKIT_DATA is not set"):
        load_dataset("olivetti", download=False)


def test_a_file_replaced_in_place_is_verified_again(mirror):
    assert len(load_dataset("olivetti", root=mirror, download=False).train) == 280
    blob = bytearray((mirror / FACES).read_bytes())
    blob[200] ^= 0xFF
    (mirror / FACES).write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"{FACES} does not match the checksum.*copy it again"):
        load_dataset("olivetti", root=mirror, download=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ('{"file": "olivetti_faces.npz"}', "is malformed: expected a list"),
        ('[{"file": "olivetti_faces.npz"}]', "is malformed"),
        ('[{"file": 3, "sha256": "x"}]', "is malformed"),
    ],
    ids=["garbage", "empty", "an object", "no checksum", "file not a string"],
)
def test_malformed_manifest_is_named_with_the_fix(mirror, text, message):
    (mirror / "MANIFEST.json").write_text(text)
    with pytest.raises(ValueError, match=f"MANIFEST.json {message}.*forgetkit-data prepare"):
        load_dataset("olivetti", root=mirror, download=False)


def test_truncated_npz_is_named_with_the_fix(mirror):
    blob = (mirror / FACES).read_bytes()
    (mirror / FACES).write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match=f"{FACES} does not match the checksum.*truncated"):
        load_dataset("olivetti", root=mirror, download=False)


def _relist(folder: Path) -> None:
    """Make the manifest agree with the file as it now is (so only the file's content is wrong)."""
    import hashlib

    digest = hashlib.sha256((folder / FACES).read_bytes()).hexdigest()
    (folder / "MANIFEST.json").write_text(json.dumps([{"file": FACES, "sha256": digest}]))


def test_unreadable_npz_with_a_matching_manifest_is_named(mirror):
    blob = (mirror / FACES).read_bytes()
    (mirror / FACES).write_bytes(blob[: len(blob) // 3])
    _relist(mirror)
    with pytest.raises(ValueError, match=f"{FACES} is not a readable .npz archive.*copy it"):
        load_dataset("olivetti", root=mirror, download=False)


def test_npz_without_the_expected_arrays_is_named(mirror):
    np.savez(mirror / FACES, pictures=np.zeros((2, 4, 4), np.uint8))
    _relist(mirror)
    with pytest.raises(ValueError, match=r"lacks the arrays \['images', 'target'\]"):
        load_dataset("olivetti", root=mirror, download=False)


def test_npz_holding_a_pickle_is_refused(mirror):
    np.savez(mirror / FACES, images=np.array([{"a": 1}], dtype=object), target=np.zeros(1))
    _relist(mirror)
    with pytest.raises(ValueError, match=f"{FACES} is not a readable .npz.*allow_pickle"):
        load_dataset("olivetti", root=mirror, download=False)


def test_content_pin_catches_a_different_release(mirror):
    with np.load(mirror / FACES) as z:
        images, target = z["images"].copy(), z["target"].copy()
    images[0, 0, 0] ^= 1  # one pixel off: checksummed by its own manifest, not the release
    np.savez(mirror / FACES, images=images, target=target)
    _relist(mirror)
    with pytest.raises(ValueError, match=f"{FACES} differ from the pinned content"):
        load_dataset("olivetti", root=mirror, download=False)


def test_every_offline_dataset_has_a_content_pin(cifar_jpeg):
    assert all(src.content_sha256 for name, src in SOURCES.items() if name != "cifar10")
    with np.load(data_dir() / SOURCES["cifar10-jpeg15k"].file) as z:
        arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    assert _content_sha256(arrays) == SOURCES["cifar10-jpeg15k"].content_sha256


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"name": "MNIST"}, ValueError, "unknown dataset 'MNIST'"),
        ({"name": ["mnist"]}, ValueError, r"unknown dataset \['mnist'\]"),
        ({"name": "mnist", "download": "no"}, TypeError, "download must be True, False or None"),
    ],
)
def test_load_dataset_arguments_are_checked(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_dataset(**kwargs)


# --------------------------------------------------------------------------- samples


def test_float_labels_must_be_whole_numbers():
    x = torch.randn(3, 2)
    assert Samples(x, torch.tensor([0.0, 1.0, 2.0])).y.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"whole numbers.*got 1\.5.*1 of 3 labels"):
        Samples(x, torch.tensor([0.0, 1.5, 2.0]))
    with pytest.raises(ValueError, match="whole numbers.*nan"):
        Samples(x, torch.tensor([0.0, float("nan"), 2.0]))
    with pytest.raises(ValueError, match="whole numbers"):
        Samples.coerce((x, np.array([0.2, 1.0, 2.0])), "retain set")


def test_labels_must_be_non_negative_integers():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="class indices >= 0, got a label of -1"):
        Samples(x, torch.tensor([0, -1, 2]))
    with pytest.raises(TypeError, match="integer class indices, got dtype torch.bool"):
        Samples(x, torch.tensor([True, False, True]))


def test_pairs_of_non_numbers_are_named():
    with pytest.raises(TypeError, match="forget set: the inputs must be a tensor.*str"):
        Samples.coerce(("abc", [0, 1]), "forget set")


def _loader(items, batch_size=4):
    return torch.utils.data.DataLoader(items, batch_size=batch_size)


@pytest.mark.parametrize("keys", [("image", "label"), ("x", "y"), ("pixel_values", "labels"),
                                  ("input", "target")])  # fmt: skip
def test_dataloader_of_dicts_is_accepted(keys):
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10) % 3
    items = [{keys[0]: x[i], keys[1]: y[i], "id": i} for i in range(10)]
    s = Samples.coerce(_loader(items), "forget set")
    assert torch.equal(s.x, x) and torch.equal(s.y, y)


@pytest.mark.parametrize(
    "item, message",
    [
        (
            {"img": torch.zeros(2), "label": 0},
            r"keys \['img', 'label'\]; expected exactly one input",
        ),
        ({"image": torch.zeros(2), "cls": 0}, r"keys \['cls', 'image'\]"),
        ({"image": torch.zeros(2), "x": torch.zeros(2), "y": 0}, r"keys \['image', 'x', 'y'\]"),
    ],
    ids=["no input key", "no label key", "two input keys"],
)
def test_dataloader_of_unknown_dicts_names_the_keys(item, message):
    with pytest.raises(ValueError, match="retain set: the DataLoader yields dicts with " + message):
        Samples.coerce(_loader([item] * 3), "retain set")


def test_dataloader_of_bare_tensors_is_named():
    with pytest.raises(TypeError, match="forget set: the DataLoader must yield .* got a Tensor"):
        Samples.coerce(_loader(torch.randn(6, 2)), "forget set")


@pytest.mark.parametrize(
    "index, error, message",
    [
        (
            np.zeros((2, 2), dtype=int),
            ValueError,
            r"index must be 1-D, got an array of shape \(2, 2\)",
        ),
        (np.array([0.0, 1.0]), TypeError, "index must hold integers .* got dtype float64"),
        ([0, 99], ValueError, "position 99 is out of range for 5 samples"),
        (np.array([True, False]), ValueError, "a boolean mask needs 5 entries, got 2"),
    ],
)
def test_subset_indices_are_checked(index, error, message):
    s = Samples(torch.randn(5, 2), torch.arange(5))
    with pytest.raises(error, match=message):
        s.subset(index)


def test_subset_takes_a_boolean_mask_as_a_mask():
    s = Samples(torch.randn(5, 2), torch.arange(5))
    assert s.subset(np.array([True, False, True, False, False])).y.tolist() == [0, 2]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d: d.subsample(2.5), TypeError, "n_train must be an int, got 2.5"),
        (lambda d: d.subsample(True), TypeError, "n_train must be an int, got True"),
        (lambda d: d.subsample(10, 0), ValueError, "n_test must be >= 1, got 0"),
        (lambda d: d.resized(0), ValueError, "size must be >= 1, got 0"),
        (lambda d: d.resized(16.0), TypeError, "size must be an int"),
    ],
)
def test_dataset_helpers_check_their_arguments(olivetti, call, error, message):
    with pytest.raises(error, match=message):
        call(olivetti)


def test_batches_concat_and_prepare_check_their_arguments(tmp_path):
    s = Samples(torch.randn(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(s.batches(0))
    with pytest.raises(TypeError, match="batch_size must be an int, got 2.0"):
        next(s.batches(2.0))
    with pytest.raises(ValueError, match="concat needs a non-empty sequence of Samples"):
        Samples.concat([])
    from forgetkit.data import prepare

    with pytest.raises(ValueError, match="names must be a list of datasets"):
        prepare(tmp_path, ["imagenet"])
    with pytest.raises(ValueError, match="names must be a list of datasets"):
        prepare(tmp_path, "mnist")


class _DictDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


def test_map_style_datasets_are_accepted():
    x, y = torch.randn(7, 1, 2, 2), torch.arange(7) % 2
    s = Samples.coerce(_DictDataset(x, y), "forget set")
    assert torch.equal(s.x, x) and torch.equal(s.y, y)


def test_batches_that_do_not_stack_are_named():
    items = [(torch.zeros(2), 0), (torch.zeros(3), 1)]
    with pytest.raises(
        ValueError, match=r"retain set: the batches' inputs and labels do not stack"
    ):
        Samples.coerce(torch.utils.data.DataLoader(items, batch_size=1), "retain set")
