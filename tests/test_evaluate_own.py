"""Evaluation on one's own data: four sets of any form, one's own oracle, nothing split unasked.

The reference is the book's own path, a scenario's :class:`ForgetTask`: the same samples
passed as tensors, datasets and shuffling loaders must give exactly the same table, under
any global random state.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from forgetkit.data import ImageDataset, Samples
from forgetkit.metrics import evaluate
from forgetkit.models import ModelConfig
from forgetkit.scenarios import KINDS, ForgetTask, forget_class
from forgetkit.train import TrainConfig, retrain

pytestmark = pytest.mark.usefixtures("one_thread")


def linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def task() -> ForgetTask:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 3, generator=g)
    x = torch.randn(240, 1, 4, 4, generator=g)
    xt = torch.randn(120, 1, 4, 4, generator=g)
    data = ImageDataset(
        "toy", Samples(x, (x.flatten(1) @ w).argmax(1)), Samples(xt, (xt.flatten(1) @ w).argmax(1)),
        ("a", "b", "c"), (0.0,), (1.0,), True, "toy data for tests",
    )  # fmt: skip
    return forget_class(data, 0, seed=0)


def _sets(task: ForgetTask) -> dict[str, Samples]:
    return {"forget": task.forget_set, "retain": task.retain_set, "test": task.test_set,
            "heldout": task.heldout_set}  # fmt: skip


def _loader(s: Samples, batch_size: int = 7) -> DataLoader:
    return DataLoader(TensorDataset(s.x, s.y), batch_size=batch_size, shuffle=True)


class Noisy(Dataset):
    """A user's dataset with a random transform drawn from the global generator."""

    def __init__(self, s: Samples) -> None:
        self.s = s

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, i: int):
        return self.s.x[i] + 0.01 * torch.randn(self.s.x[i].shape), self.s.y[i]


MODELS = {"a": [linear(1), linear(2)], "b": linear(3)}
ORACLE = [linear(4), linear(5)]


def test_own_sets_in_every_form_give_the_tasks_numbers(task):
    reference = evaluate(MODELS, task, ORACLE, seed=0)
    sets = {
        "forget": _loader(task.forget_set),  # shuffling loader
        "retain": (task.retain_set.x, task.retain_set.y),  # a pair of tensors
        "test": TensorDataset(task.test_set.x, task.test_set.y),
        "heldout": task.heldout_set,
    }
    direct = evaluate(MODELS, oracle=ORACLE, forget_classes=(0,), seed=0, **sets)
    pd.testing.assert_frame_equal(direct, reference)
    own = ForgetTask.from_splits(num_classes=3, forget_classes=(0,), **sets)
    assert own.kind == "class" and own.forget_classes == (0,)
    pd.testing.assert_frame_equal(evaluate(MODELS, own, ORACLE, seed=0), reference)
    assert "test_forgotten" in set(direct.split)


def test_reading_the_sets_neither_depends_on_nor_moves_the_global_random_state(task):
    sets = {"forget": _loader(task.forget_set), "retain": _loader(task.retain_set, 32),
            "test": Noisy(task.test_set), "heldout": _loader(task.heldout_set, 5)}  # fmt: skip
    frames = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        state = torch.random.get_rng_state()
        frames.append(evaluate(MODELS, oracle=ORACLE, seed=3, **sets))
        assert torch.equal(torch.random.get_rng_state(), state)
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_nothing_is_split_unless_asked(task):
    with pytest.raises(ValueError, match=r"missing \['heldout'\].*heldout_fraction=0.5"):
        evaluate(MODELS, oracle=ORACLE, forget=task.forget_set, retain=task.retain_set,
                 test=task.test_set)  # fmt: skip
    with pytest.raises(ValueError, match="nothing is split unless you ask"):
        ForgetTask.from_splits(forget=task.forget_set, retain=task.retain_set,
                               test=task.test_set, num_classes=3)  # fmt: skip
    split = ForgetTask.from_splits(forget=task.forget_set, retain=task.retain_set,
                                   test=task.test_set, heldout_fraction=0.25, num_classes=3,
                                   seed=4)  # fmt: skip
    n = len(task.test_set)
    assert split.heldout.size == round(0.25 * n) and split.test.size + split.heldout.size == n
    assert sorted([*split.test, *split.heldout]) == list(range(n))  # a partition of the test set
    assert split.spec["heldout_fraction"] == 0.25
    assert "held-out: 0.25 of the given test set, drawn with seed 4" in split.describe()
    given = ForgetTask.from_splits(**_sets(task), num_classes=3)
    assert (given.test.size, given.heldout.size) == (len(task.test_set), len(task.heldout_set))
    assert "drawn" not in given.describe() and given.kind == "indices"
    assert torch.equal(given.heldout_set.x, task.heldout_set.x)  # used as given, in order


def test_a_forgetkit_oracle_retrained_on_ones_own_splits_is_accepted(task):
    own = ForgetTask.from_splits(**_sets(task), classes=("a", "b", "c"))
    cfg = ModelConfig("mlp", (1, 4, 4), 3, {"hidden": (8,)})
    oracle = retrain(own, cfg, TrainConfig(epochs=15, lr=0.1, batch_size=32), seeds=(0, 1),
                     cache=False)  # fmt: skip
    df = evaluate({"mine": linear(7)}, own, oracle, metrics=["accuracy", "tow"])
    assert set(df.method) == {"retrain", "mine"}
    retained = df[(df.method == "retrain") & (df.split == "retain") & (df.metric == "accuracy")]
    assert (retained.value > 0.8).all()  # the oracle learnt the retain set it was given
    other_sets = {**_sets(task), "forget": task.retain_set.subset(range(5)),
                  "retain": task.retain_set.subset(range(5, 100))}  # fmt: skip
    other = ForgetTask.from_splits(**other_sets, num_classes=3)
    with pytest.raises(ValueError, match=r"oracle\[0\] was trained on other data"):
        evaluate({"m": linear(1)}, other, oracle, metrics=["accuracy"])


WIDE = Samples(torch.zeros(4, 1, 4, 5), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda t: {"retain": t.forget_set}, ValueError, "retain contains .* also in forget"),
        (lambda t: {"heldout": t.forget_set.subset([0])}, ValueError,
         "heldout contains 1 sample.* also in the training sets"),
        (lambda t: {"heldout": t.test_set.subset(range(3))}, ValueError,
         "heldout contains 3 sample.* also in test"),
        (lambda t: {"test": WIDE}, ValueError, r"test inputs have shape \(1, 4, 5\)"),
        (lambda t: {"num_classes": 2}, ValueError, "has a label of 2 but there are 2 classes"),
        (lambda t: {"num_classes": None}, ValueError, "pass num_classes="),
        (lambda t: {"classes": ("a", "b")}, ValueError, "num_classes=3 but 2 class names"),
        (lambda t: {"forget_classes": (1,)}, ValueError, "forget holds .* outside"),
        (lambda t: {"retain": t.retain_set, "forget_classes": (0, 1)}, ValueError,
         r"retain holds .* of the forgotten classes \[0, 1\]"),
        (lambda t: {"forget_classes": (5,)}, ValueError, "forget_classes holds 5; expected"),
        (lambda t: {"kind": "mine"}, ValueError, "kind must be one of"),
        (lambda t: {"heldout_fraction": 0.5}, ValueError, "not both"),
        (lambda t: {"forget": "text"}, TypeError, "from_splits: forget: expected Samples"),
        (lambda t: {"seed": -1}, ValueError, "seed must be >= 0"),
    ],
)  # fmt: skip
def test_bad_splits_are_refused_naming_the_set(task, change, error, match):
    args = {**_sets(task), "num_classes": 3}
    args.update(change(task))
    with pytest.raises(error, match=match):
        ForgetTask.from_splits(**args)


def test_evaluate_takes_a_task_or_the_sets_not_both(task):
    with pytest.raises(ValueError, match="not both"):
        evaluate(MODELS, task, ORACLE, forget=task.forget_set)
    with pytest.raises(TypeError, match="needs the data"):
        evaluate(MODELS, oracle=ORACLE)
    with pytest.raises(TypeError, match="oracle= is required"):
        evaluate(MODELS, task)


def test_the_kinds_are_the_requests_methods_serve():
    from forgetkit.methods.base import REQUESTS

    assert set(KINDS) == set(REQUESTS)
