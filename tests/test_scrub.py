"""SCRUB: the distillation distance by hand, the max-steps push the forget set away from the
teacher while the retain accuracy holds, the official schedule, seeds, refused inputs."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import forgetkit as fk
from forgetkit.methods.scrub import distill_kl
from forgetkit.validation import accuracy

MLP = fk.ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 32})


@pytest.fixture(scope="module")
def setting(mnist):
    task = fk.forget_random(mnist.subsample(600, 100, seed=0), 30, seed=0)
    original = fk.train_original(task, MLP, fk.TrainConfig(epochs=4, lr=0.05), cache=False)
    return task, original


def test_distill_kl_by_hand():
    zs = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]], dtype=torch.float64)
    zt = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    t = 2.0
    want = 0.0
    for s_row, t_row in zip(zs.tolist(), zt.tolist(), strict=True):
        ps = [math.exp(v / t) for v in s_row]
        pt = [math.exp(v / t) for v in t_row]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        want += sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt, strict=True))
    want = want / 2 * t**2  # averaged over the 2 rows, times T**2
    assert float(distill_kl(zs, zt, t)) == pytest.approx(want, rel=1e-12)
    assert float(distill_kl(zt, zt, t)) == pytest.approx(0.0, abs=1e-12)


def test_defaults_run_keep_retain_accuracy_and_follow_the_official_schedule(setting):
    task, original = setting
    before = copy.deepcopy(original.model.state_dict())
    result = fk.get_method("scrub").unlearn(original, task.forget_set, task.retain_set)
    assert all(torch.equal(p, before[n]) for n, p in original.model.state_dict().items())
    retain = task.retain_set
    acc0 = accuracy(original.model, retain.x, retain.y)
    acc1 = accuracy(result.model, retain.x, retain.y)
    assert acc1 >= acc0 - 0.03, (acc0, acc1)
    history = result.details["history"]
    lrs = [row["lr"] for row in history]  # decay after epochs 5, 8 and 9, by 0.1 each
    want = [5e-4] * 5 + [5e-5] * 3 + [5e-6, 5e-7]
    assert lrs == pytest.approx(want, rel=1e-12)
    assert [("max_kl" in row) for row in history] == [True] * 3 + [False] * 7
    batches = math.ceil(len(task.forget_set) / 64) * 3 + math.ceil(len(retain) / 32) * 10
    assert result.details["steps"] == batches


def test_max_steps_push_the_forget_set_away_from_the_teacher(setting):
    task, original = setting
    forget, retain = task.forget_set, task.retain_set
    runs = {m: fk.get_method("scrub", epochs=3, msteps=m).unlearn(original, forget, retain)
            for m in (0, 3)}  # fmt: skip
    scrub = runs[3].details
    assert set(scrub["forget_kl"]) == {"after"}  # before, 0 by construction: not computed
    rising = [row["max_kl"] for row in scrub["history"]]
    assert rising[0] < rising[1] < rising[2], rising
    # the same min-steps without the max-steps leave the forget set closer to the teacher
    assert scrub["forget_kl"]["after"] > 1.2 * runs[0].details["forget_kl"]["after"]


def test_same_seed_same_weights_other_seed_other_weights(setting):
    task, original = setting
    method = fk.get_method("scrub", epochs=2, msteps=1)

    def run(seed: int) -> list[torch.Tensor]:
        model = method.unlearn(original, task.forget_set, task.retain_set, seed=seed).model
        return list(model.parameters())

    a, b, c = run(4), run(4), run(5)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_cached_teacher_logits_give_the_weights_of_per_batch_teacher_passes(setting):
    """An in-memory retain set's teacher logits are computed once; a streamed one (a
    map-style dataset) meets the teacher batch by batch. Same seed, same batches: the same
    weights up to float64 rounding (a misaligned cache would move them far apart)."""
    task, original = setting
    model = copy.deepcopy(original.model).double()
    retain = task.retain_set

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(retain)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return retain.x[i], retain.y[i]

    method = fk.get_method("scrub", epochs=2, msteps=1)
    cached = method.unlearn(model, task.forget_set, retain, seed=3).model
    streamed = method.unlearn(model, task.forget_set, Rows(), seed=3).model
    moved = False
    for (name, a), b in zip(cached.state_dict().items(), streamed.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=name)
        moved |= not torch.equal(a, model.state_dict()[name])
    assert moved


def test_sgd_variant_runs_and_needs_the_retain_set(setting):
    task, original = setting
    result = fk.get_method("scrub", optimizer="sgd", epochs=1, msteps=1, weight_decay=5e-4)
    out = result.unlearn(original, task.forget_set, task.retain_set)
    assert out.details["steps"] > 0
    with pytest.raises(ValueError, match="scrub needs retain"):
        fk.get_method("scrub").unlearn(original, task.forget_set)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"kd_T": -1.0}, ValueError, "kd_T"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"msteps": -1}, ValueError, "msteps"),
        ({"msteps": 1.5}, TypeError, "msteps"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"gamma": float("inf")}, ValueError, "gamma"),
        ({"lr_decay_epochs": 5}, TypeError, "lr_decay_epochs"),
        ({"lr_decay_epochs": [5, "8"]}, ValueError, "lr_decay_epochs"),
        ({"retain_batch_size": 0}, ValueError, "retain_batch_size"),
        ({"forget_batch_size": True}, TypeError, "forget_batch_size"),
        ({"sgda_epochs": 3}, TypeError, "sgda_epochs"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=f"scrub: .*{argument}"):
        fk.get_method("scrub", **kwargs)
