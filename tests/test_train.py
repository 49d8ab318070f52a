"""Seeded training, the checkpoint cache, training hooks and the retrain oracle."""

from __future__ import annotations

import pytest
import torch

from forgetkit.cache import CheckpointCache
from forgetkit.data import Samples
from forgetkit.models import ModelConfig
from forgetkit.scenarios import forget_class
from forgetkit.train import TrainConfig, TrainHook, retrain, train_model, train_original

CFG = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 64})
QUICK = TrainConfig(epochs=2, lr=0.05, batch_size=64)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_bit_identical_weights(mnist_small):
    a = train_model(CFG, mnist_small.train, QUICK, seed=3, device="cpu", cache=False)
    b = train_model(CFG, mnist_small.train, QUICK, seed=3, device="cpu", cache=False)
    c = train_model(CFG, mnist_small.train, QUICK, seed=4, device="cpu", cache=False)
    assert _same(_weights(a.model), _weights(b.model))
    assert not _same(_weights(a.model), _weights(c.model))
    assert a.history[-1]["accuracy"] > 0.8  # it learns


def test_cache_hit_returns_the_same_model_without_training(mnist_small, tmp_path):
    store = CheckpointCache(tmp_path)
    first = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store)
    second = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store)
    assert not first.cached and second.cached and first.key == second.key
    assert _same(_weights(first.model), _weights(second.model))
    assert second.history == first.history
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{first.key}.safetensors"]  # one file, no temporary left behind
    with open(tmp_path / files[0], "rb") as f:  # safetensors: a JSON header, no pickle
        header_len = int.from_bytes(f.read(8), "little")
        assert f.read(header_len).startswith(b"{")
    other = train_model(CFG, mnist_small.train, TrainConfig(epochs=1, lr=0.02, batch_size=64),
                        seed=0, device="cpu", cache=store)  # fmt: skip
    assert other.key != first.key and not other.cached


def test_damaged_cache_entry_is_recomputed(mnist_small, tmp_path):
    store = CheckpointCache(tmp_path)
    first = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store)
    store.path(first.key).write_bytes(b"not a checkpoint")
    again = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store)
    assert not again.cached and _same(_weights(first.model), _weights(again.model))


class Recorder(TrainHook):
    """Flips every image's sign and counts the steps: a transform and an artifact."""

    name = "recorder"

    def __init__(self):
        self.steps = torch.zeros(1)

    def transform(self, x, y, gen):
        return -x, y

    def after_backward(self, model, epoch, n_epochs):
        self.steps += 1

    def artifacts(self):
        return {"steps": self.steps}

    def restore(self, artifacts):
        self.steps = artifacts["steps"]


def test_hooks_change_the_key_and_their_artifacts_are_cached(mnist_small, tmp_path):
    store = CheckpointCache(tmp_path)
    plain = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store)
    hook = Recorder()
    hooked = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store,
                         hooks=[hook])  # fmt: skip
    assert hooked.key != plain.key and int(hook.steps) == 2 * -(-len(mnist_small.train) // 64)
    fresh = Recorder()
    again = train_model(CFG, mnist_small.train, QUICK, seed=0, device="cpu", cache=store,
                        hooks=[fresh])  # fmt: skip
    assert again.cached and torch.equal(fresh.steps, hook.steps)


def test_divergence_is_reported(mnist_small):
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_model(CFG, mnist_small.train, TrainConfig(epochs=1, lr=1e6), device="cpu",
                    cache=False)  # fmt: skip


def test_l2_to_init_holds_weights_near_their_start(mnist_small):
    data = mnist_small.train.subset(range(256))
    free = train_model(CFG, data, TrainConfig(epochs=2, lr=0.05, weight_decay=0.0), cache=False)
    tied = train_model(CFG, data, TrainConfig(epochs=2, lr=0.05, weight_decay=5.0,
                                              l2_to_init=True), cache=False)  # fmt: skip
    from forgetkit.models import build_model

    init = build_model(CFG, seed=0)

    def drift(m):
        return sum(
            float((p - q).detach().norm())
            for p, q in zip(m.parameters(), init.parameters(), strict=True)
        )

    toward_zero = train_model(CFG, data, TrainConfig(epochs=2, lr=0.05, weight_decay=5.0),
                              cache=False)  # fmt: skip
    assert drift(tied.model) < 0.8 * drift(free.model)
    assert drift(tied.model) < 0.5 * drift(toward_zero.model)


def test_oracle_trains_on_the_retain_set_only_from_fresh_weights(mnist_small):
    task = forget_class(mnist_small, 3)
    original = train_original(task, CFG, QUICK, device="cpu")
    oracle = retrain(task, CFG, QUICK, seeds=(0, 1), device="cpu")
    assert len(oracle) == 2 and oracle[0].key != oracle[1].key
    with torch.no_grad():
        assert (original.model(task.forget_set.x).argmax(1) == 3).float().mean() > 0.5
        assert (oracle[0].model(task.forget_set.x).argmax(1) == 3).sum() == 0
    with pytest.raises(ValueError, match="at least one seed"):
        retrain(task, CFG, QUICK, seeds=())


def test_training_data_is_validated():
    with pytest.raises(ValueError, match="training data is empty"):
        train_model(CFG, (torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), QUICK)
    with pytest.raises(ValueError, match="TrainConfig: lr must be a float > 0, got 0.0"):
        TrainConfig(lr=0.0)
    bad = Samples(torch.full((4, 1, 28, 28), float("inf")), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_model(CFG, bad, QUICK)
