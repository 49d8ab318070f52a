"""Seeded training, the checkpoint cache, training hooks and the retrain oracle."""

from __future__ import annotations

import copy

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


# --------------------------------------------------------------------------- own loop

SMALL = ModelConfig("mlp", (1, 4, 4), 3, {"hidden": (12,)})
SMALL_TRAIN = TrainConfig(epochs=4, lr=0.1, momentum=0.0, weight_decay=0.01, batch_size=32)


def _blobs(n: int, seed: int) -> Samples:
    centres = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(99))
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return Samples(centres[y] + 0.8 * torch.randn(n, 1, 4, 4, generator=gen), y)


def test_the_recorder_in_a_loop_like_forgetkits_gives_train_models_record(one_thread):
    """The same loop as ``fit`` (same batches, generators, seeds), written by hand with the
    recorder: weights and artifacts bit for bit those of ``train_model``."""
    from forgetkit.methods import LCodec
    from forgetkit.models import build_model
    from forgetkit.runtime import generator, seeded
    from forgetkit.train import TrainingRecorder, deterministic

    data = _blobs(300, 0)
    ref = train_model(SMALL, data, SMALL_TRAIN, hooks=LCodec().training_hooks(), cache=False)
    model = build_model(SMALL, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, weight_decay=0.01)
    rec = TrainingRecorder(LCodec(), epochs=4, seed=104729)  # fit's stream for the hooks
    order = generator(7919)  # fit's stream for the batch order
    with seeded(0, "cpu"), deterministic():
        for _ in rec:
            model.train()
            for x, y in data.batches(32, shuffle=True, generator=order):
                x, y = rec.transform(x, y)
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                rec.after_backward(model)
                opt.step()
    record = rec.record()
    assert record["train_size"] == len(data) == ref.train_size
    assert record.keys() == {*ref.artifacts, "train_size"}
    assert all(torch.equal(record[k], ref.artifacts[k]) for k in ref.artifacts)
    assert _same(_weights(model), _weights(ref.model))


def test_a_plain_pytorch_loop_makes_the_records_lcodec_and_mnemonic_need(one_thread):
    """A user's loop over a shuffling DataLoader, with both methods' hooks, then unlearn."""
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    from forgetkit.methods import LCodec, MnemonicUnlearning, UtilityWarning
    from forgetkit.train import TrainingRecorder

    lcodec, mnemonic = LCodec(n_perturbations=40, val_gap_skip=1.0), MnemonicUnlearning()
    train, validation = _blobs(300, 0), _blobs(150, 1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 3))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=32, shuffle=True)
    rec = TrainingRecorder([*lcodec.training_hooks(), *mnemonic.training_hooks()], epochs=3)
    for epoch in range(3):
        rec.before_epoch(epoch)
        for x, y in loader:
            x, y = rec.transform(x, y)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            rec.after_backward(model)
            opt.step()
    record = rec.record()
    assert record["train_size"] == 300 and "mnemonic_codes" in record
    assert int(record["lcodec.samples"].sum()) == 2 * 300  # the last two epochs, every sample
    before = copy.deepcopy(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UtilityWarning)
        removed = lcodec.unlearn(model, train.subset([0, 1]), validation=validation,
                                 record=record)  # fmt: skip
        forgot = mnemonic.unlearn(model, train.subset(torch.nonzero(train.y == 0).flatten()),
                                  record=record)  # fmt: skip
    assert len(removed.details["removals"]) == 2
    assert forgot.details["forgotten_classes"] == [0]
    assert not _same(_weights(forgot.model), before)
    assert _same(_weights(model), before)  # the user's model untouched


def test_the_missing_record_error_points_to_the_recorder():
    from forgetkit.methods import LCodec

    data = _blobs(6, 0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with pytest.raises(ValueError) as err:
        LCodec().unlearn(model, data.subset([0]), validation=data.subset(range(1, 6)))
    message = str(err.value)
    parts = ("lcodec.grad_prev", "train_size", "method.training_hooks()", "['lcodec-gradients']",
             "TrainingRecorder(method, epochs=...)", "rec.transform(x, y)",
             "rec.after_backward(model)", "record=rec.record()")  # fmt: skip
    for part in parts:
        assert part in message, part


def test_the_recorder_refuses_a_loop_that_skips_a_call():
    from forgetkit.train import TrainingRecorder

    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    rec = TrainingRecorder([Recorder()], epochs=2)
    with pytest.raises(RuntimeError, match=r"call before_epoch\(\) at the start"):
        rec.transform(x, y)
    with pytest.raises(ValueError, match="got epoch 1, expected 0 of 0..1"):
        rec.before_epoch(1)
    rec.before_epoch()
    rec.transform(x, y)
    with pytest.raises(RuntimeError, match="1 of the 2 declared epochs ran"):
        rec.record()
    rec.before_epoch()
    with pytest.raises(ValueError, match="got epoch 2, expected 2 of 0..1"):
        rec.before_epoch()
    with pytest.raises(RuntimeError, match="transform was called on 1 batches and "
                       "after_backward after 0"):  # fmt: skip
        rec.record()
    rec.after_backward(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="no sample passed through transform in the last"):
        rec.record()
    rec.transform(x, y)
    rec.after_backward(torch.nn.Linear(2, 2))
    record = rec.record()
    assert record.keys() == {"steps", "train_size"} and record["train_size"] == 4
    assert int(record["steps"]) == 2
    with pytest.raises(TypeError, match="hooks must be an unlearning method or a sequence"):
        TrainingRecorder("lcodec", epochs=2)
    with pytest.raises(TypeError, match=r"hooks must be TrainHooks, got \['int'\]"):
        TrainingRecorder([1], epochs=2)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        TrainingRecorder([], epochs=0)


def test_a_recorder_refuses_fewer_epochs_than_a_hook_records_from():
    from forgetkit.methods import LCodec
    from forgetkit.train import TrainingRecorder

    with pytest.raises(ValueError, match=r"lcodec-gradients.*at least 2 epochs"):
        TrainingRecorder(LCodec(), epochs=1)
