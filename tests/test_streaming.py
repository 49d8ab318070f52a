"""Streaming: a user's lazy dataset or loader is read batch by batch, and gives the model the
in-memory path gives on the same samples (same seed), for every registered method."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_dataset
from torch.utils.data import DataLoader, Dataset

import forgetkit as fk
from forgetkit.data import Samples
from forgetkit.methods import available_methods, get_method
from forgetkit.scenarios import forget_class
from forgetkit.stream import DatasetSamples, as_source, concat_sources

MODEL = fk.ModelConfig("mlp", (1, 6, 6), 3, {"hidden": 16})
RECIPE = fk.TrainConfig(epochs=3, lr=0.1, batch_size=16)


class Lazy(Dataset):
    """Items made on request from in-memory samples, counting how many were read."""

    def __init__(self, samples: Samples, noise: float = 0.0) -> None:
        self.samples, self.noise, self.reads = samples, noise, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        self.reads += 1
        x = self.samples.x[i].clone()
        if self.noise:  # a random transform, drawn from the global RNG as torchvision's are
            x = x + self.noise * torch.randn_like(x)
        return x, int(self.samples.y[i])


@pytest.fixture(scope="module")
def task(one_thread):
    return forget_class(tiny_dataset(n_train=120), 0, seed=0)


@pytest.mark.parametrize("name", available_methods())
def test_streamed_sets_give_the_in_memory_model(task, name):
    method = get_method(name)
    original = fk.train_original(task, MODEL, RECIPE, seed=0, hooks=method.training_hooks())
    sets = {"retain": task.retain_set, "validation": task.test_set,
            "nonmember": task.heldout_set}  # fmt: skip
    wanted = {k: v for k, v in sets.items() if k in method.needs | method.uses}
    lazy = {k: Lazy(v) for k, v in wanted.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = method.unlearn(original, task.forget_set, seed=5, **wanted)
        b = method.unlearn(original, task.forget_set, seed=5, **lazy)
    for (n, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), f"{name}: {n} differs between in-memory and streamed sets"


def test_a_loader_is_streamed_with_its_collate_and_the_methods_batch_size(task):
    seen = []

    def collate(items):
        seen.append(len(items))
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    ds = Lazy(task.retain_set)
    loader = DataLoader(ds, batch_size=7, shuffle=True, collate_fn=collate)
    source = as_source(loader, "retain set")
    assert isinstance(source, DatasetSamples) and len(source) == len(task.retain_set)
    sizes = [len(y) for _, y in source.batches(32)]
    assert sizes[0] == 32 and seen[0] == 32  # the method's batch size, the loader's collate
    assert ds.reads == len(task.retain_set)
    with pytest.raises(TypeError, match="streamed"):
        _ = source.x


def test_streamed_order_matches_samples_batches(task):
    s = task.retain_set
    source = as_source(Lazy(s), "retain set")
    for shuffle in (False, True):
        ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        for (xa, ya), (xb, yb) in zip(s.batches(16, shuffle=shuffle, generator=ga),
                                      source.batches(16, shuffle=shuffle, generator=gb),
                                      strict=True):  # fmt: skip
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_random_transforms_follow_the_seed_not_the_global_state(task):
    source = as_source(Lazy(task.retain_set, noise=0.1), "retain set", seed=4)
    torch.manual_seed(0)
    a = next(source.batches(8))[0]
    state = torch.get_rng_state()
    torch.manual_seed(1)
    b = next(source.batches(8))[0]
    torch.manual_seed(0)
    torch.set_rng_state(state)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)  # reading drew nothing from the caller's
    other = as_source(Lazy(task.retain_set, noise=0.1), "retain set", seed=5)
    assert not torch.equal(a, next(other.batches(8))[0])


def test_concat_and_subset_stay_streamed(task):
    lazy = as_source(Lazy(task.retain_set), "retain set")
    both = concat_sources([lazy, task.forget_set])
    assert isinstance(both, DatasetSamples) and len(both) == len(task.retain_set) + len(
        task.forget_set
    )
    whole = Samples.concat([task.retain_set, task.forget_set])
    got = both.read()
    assert torch.equal(got.x, whole.x) and torch.equal(got.y, whole.y)
    part = lazy.subset([3, 1])
    assert torch.equal(part.read().x, task.retain_set.subset([3, 1]).x)
    assert torch.equal(lazy.y, task.retain_set.y)


def test_a_streamed_label_outside_the_model_is_named(task):
    bad = Samples(task.retain_set.x, torch.full((len(task.retain_set),), 7))
    original = fk.train_original(task, MODEL, RECIPE, seed=0)
    with pytest.raises(ValueError, match="retain set labels span 7..7"):
        get_method("ssd").unlearn(original, task.forget_set, Lazy(bad))


def test_evaluate_streams_ones_own_sets_and_matches_the_in_memory_table(task):
    original = fk.train_original(task, MODEL, RECIPE, seed=0)
    oracle = fk.retrain(task, MODEL, RECIPE, seeds=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = get_method("ssd").unlearn(original, task.forget_set, task.retain_set)
    sets = {"forget": task.forget_set, "retain": task.retain_set, "test": task.test_set,
            "heldout": task.heldout_set}  # fmt: skip
    kw = {"oracle": oracle, "forget_classes": (0,), "seed": 0}
    a = fk.evaluate({"ssd": result}, **sets, **kw)
    lazy = {k: Lazy(v) for k, v in sets.items()}
    b = fk.evaluate({"ssd": result}, **lazy, **kw)
    assert a[["method", "split", "metric"]].equals(b[["method", "split", "metric"]])
    assert np.allclose(a.value.to_numpy(), b.value.to_numpy(), equal_nan=True)
