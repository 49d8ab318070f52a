"""Mnemonic-code unlearning: the training hook, the one-shot scrub, its caps and its errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.fisher import fisher_diagonal
from forgetkit.methods import MnemonicCodes, MnemonicUnlearning, get_method
from forgetkit.methods.mnemonic import (
    draw_code,
    paper_metrics,
    perturbation,
    sensitivity_ratio,
)
from forgetkit.models import ModelConfig, build_model
from forgetkit.scenarios import forget_class
from forgetkit.train import TrainConfig, train_model, train_original

CFG = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 100, "activation": "sigmoid"})
QUICK = TrainConfig(epochs=3, lr=0.01, batch_size=64)  # the official lr


class Untouchable(torch.Tensor):
    """A tensor whose values may not be read: anything but its shape, dtype or device raises."""

    METADATA = (torch.Tensor.shape, torch.Tensor.ndim, torch.Tensor.dtype, torch.Tensor.device)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if any(getattr(func, "__self__", None) is d for d in cls.METADATA) or func in (
            torch.Tensor.size,
            torch.Tensor.dim,
            torch.Tensor.__len__,
        ):
            return super().__torch_function__(func, types, args, kwargs or {})
        raise AssertionError(f"a forget-time input was read: {getattr(func, '__name__', func)}")


@pytest.fixture(scope="module")
def setting(mnist_small, one_thread):
    task = forget_class(mnist_small, 3)
    method = MnemonicUnlearning()
    original = train_original(task, CFG, QUICK, hooks=method.training_hooks(), device="cpu")
    return task, method, original


def test_codes_are_seeded_per_class_and_replace_inputs_at_t_mix():
    a, b = draw_code(4, (1, 5, 5), seed=0), draw_code(4, (1, 5, 5), seed=0)
    assert torch.equal(a, b) and not torch.equal(a, draw_code(5, (1, 5, 5), seed=0))
    assert not torch.equal(a, draw_code(4, (1, 5, 5), seed=1))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    norm = draw_code(4, (1, 5, 5), seed=0, normalization=((0.5,), (0.25,)))
    assert torch.allclose(norm, (a - 0.5) / 0.25)
    hook = MnemonicCodes(t_mix=0.3, seed=0)
    x, y = torch.full((4000, 1, 5, 5), -7.0), torch.arange(4000) % 4
    gen = torch.Generator().manual_seed(0)
    out, out_y = hook.transform(x, y, gen)
    replaced = (out != -7.0).all(dim=(1, 2, 3))
    assert torch.equal(out_y, y) and 0.27 < float(replaced.float().mean()) < 0.33
    codes = hook.artifacts()["mnemonic_codes"]
    assert torch.equal(out[replaced], codes[y[replaced]])
    assert torch.equal(hook.artifacts()["mnemonic_counts"], torch.bincount(y[replaced]))
    again, _ = MnemonicCodes(t_mix=0.3, seed=0).transform(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # the replacement draw is seeded by the loop's generator
    hook.transform(x, y, torch.Generator().manual_seed(1))  # a new training starts afresh
    assert int(hook.artifacts()["mnemonic_counts"].sum()) < 4000 * 0.33
    with pytest.raises(ValueError, match="t_mix must (lie in|be a float in)"):
        MnemonicCodes(t_mix=1.5)


def test_codes_are_stored_with_the_checkpoint_and_enter_the_key(mnist_small, one_thread):
    data = mnist_small.train
    first = train_model(CFG, data, TrainConfig(epochs=1), hooks=[MnemonicCodes(0.1, 0)])
    hit = train_model(CFG, data, TrainConfig(epochs=1), hooks=[MnemonicCodes(0.1, 0)])
    other = MnemonicCodes(0.1, seed=1)
    assert hit.cached and hit.key == first.key
    assert torch.equal(hit.artifacts["mnemonic_codes"], first.artifacts["mnemonic_codes"])
    assert train_model(CFG, data, TrainConfig(epochs=0), hooks=[other]).key != first.key
    plain = train_model(CFG, data, TrainConfig(epochs=0))
    assert plain.key != train_model(CFG, data, TrainConfig(epochs=0), hooks=[MnemonicCodes()]).key


def test_one_shot_reads_no_retain_or_forget_sample(setting):
    task, method, original = setting
    forget = task.forget_set
    untouchable = Samples(forget.x.as_subclass(Untouchable), forget.y)
    with pytest.raises(AssertionError, match="was read"):
        torch.isfinite(untouchable.x).all()  # the guard does fire on a read
    result = method.unlearn(original, untouchable)
    assert result.details["forgotten_classes"] == [3]
    # A retain set given anyway is not handed to the scrub: only unlearn's utility check
    # (up to 256 samples, for every method) may read it.
    seen = {}

    def record_data(model, data, device, gen):
        seen["data"] = data
        return {}

    spy = copy.copy(method)
    spy._unlearn = record_data
    with pytest.warns(UserWarning, match="changed nothing"):  # the spy takes no step
        spy.unlearn(original, forget.y, task.retain_set)
    assert seen["data"].retain is None and seen["data"].forget.x.numel() == 0
    labels_only = method.unlearn(original, forget.y)  # the request can be the labels alone
    for p, q in zip(result.model.parameters(), labels_only.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert method.describe()["needs"] == ["forget", "record"]


def test_it_forgets_the_class_and_keeps_the_rest(setting):
    task, method, original = setting
    before = paper_metrics(original.model, task.test_set, [3])
    after = paper_metrics(method.unlearn(original, task.forget_set).model, task.test_set, [3])
    assert before["EF"] < 40 and before["AR"] > 75
    assert after["EF"] > 95 and after["AR"] > before["AR"] - 10


def test_only_the_intended_tensors_move_by_the_capped_step(setting):
    task, _, original = setting
    model = copy.deepcopy(original.model)
    model[1].weight.requires_grad_(False)  # a frozen tensor must not move
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    method = MnemonicUnlearning(lambda1=1e-3, lambda2=0.05)
    result = method.unlearn(model, task.forget_set, record=original.artifacts)
    assert all(torch.equal(before[k], v) for k, v in original.model.state_dict().items())
    after = dict(result.model.named_parameters())
    assert torch.equal(after["1.weight"], original.model[1].weight)
    codes, counts = original.artifacts["mnemonic_codes"], original.artifacts["mnemonic_counts"]
    labels = torch.arange(len(counts))
    forget = labels == 3
    fishers = [fisher_diagonal(model, (codes[m], labels[m]), kind="empirical")
               for m in (forget, ~forget)]  # fmt: skip
    sign = 1.0 if result.details["sign"] == "plus" else -1.0
    for name, p in original.model.named_parameters():
        if name == "1.weight":
            continue
        log_r = sensitivity_ratio(fishers[0][name] + 1e-16, fishers[1][name] + 1e-16 / 9)
        step, log_s = perturbation(log_r, 1e-3, 0.05)
        moved = after[name].detach() - p.detach()
        assert torch.allclose(moved, sign * step, rtol=1e-4, atol=1e-7), name
        assert float(moved.abs().max()) <= 0.05 * (1 + 1e-5)  # lambda2 caps the largest move
        assert float(step.max()) == pytest.approx(min(1e-3 * float(log_r.exp().max()), 0.05),
                                                  rel=1e-4)  # fmt: skip
        assert log_s <= torch.log(torch.tensor(1e-3)) + 1e-6  # lambda1 caps the scale


def test_guards_of_the_ratio():
    f_f = torch.tensor([1.0, 0.0, 0.0, 2.0])
    f_r = torch.tensor([1.0, 0.0, 1.0, 0.0])
    log_r = sensitivity_ratio(f_f, f_r)  # 0, nan, -inf, +inf
    assert torch.isfinite(log_r).all() and log_r[1] == 0 and log_r[2] == log_r[3] == 0
    step, _ = perturbation(torch.tensor([0.0, 200.0]), 1e-3, 10.0)  # exp(200) overflows float32
    assert torch.isfinite(step).all() and float(step[1]) == pytest.approx(10.0)


def test_zero_gradient_everywhere_gives_the_count_ratio_as_the_official_code():
    """With the 1e-16 / n epsilon no guard fires: a dead weight gets n_r / n_f, not 1."""
    zero = torch.zeros(3)
    for n_f, n_r in ((1, 9), (2, 8)):
        ratio = sensitivity_ratio(zero + 1e-16 / n_f, zero + 1e-16 / n_r).exp()
        assert torch.allclose(ratio, torch.full((3,), n_r / n_f), rtol=1e-5)


def test_a_training_loop_of_ones_own_makes_the_record(setting):
    """The recipe the missing-record error gives: transform every batch, pass the artifacts."""
    task, method, _ = setting
    model = build_model(CFG, seed=0)
    hook, gen = method.training_hooks()[0], torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_all, y_all = task.train_set.x, task.train_set.y
    for start in range(0, len(y_all), 64):
        x, y = hook.transform(x_all[start : start + 64], y_all[start : start + 64], gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    result = method.unlearn(model, task.forget_set.y, record=hook.artifacts())
    assert result.details["forgotten_classes"] == [3]
    assert len(result.details["remaining_classes"]) == 9


def test_several_classes_at_once_and_the_sign_options(setting):
    task, _, original = setting
    forget = Samples(task.forget_set.x[:2], torch.tensor([3, 5]))
    both = MnemonicUnlearning().unlearn(original, forget)
    assert both.details["forgotten_classes"] == [3, 5]
    assert paper_metrics(both.model, task.test_set, [3, 5])["EF"] > 90
    plus = MnemonicUnlearning(sign="plus").unlearn(original, task.forget_set)
    minus = MnemonicUnlearning(sign="minus").unlearn(original, task.forget_set)
    assert plus.details["sign"] == "plus" and minus.details["sign"] == "minus"
    for p, q, o in zip(plus.model.parameters(), minus.model.parameters(),
                       original.model.parameters(), strict=True):  # fmt: skip
        assert torch.allclose(p - o, o - q, atol=1e-6)
    noisy = [MnemonicUnlearning(perturbation="gaussian").unlearn(original, task.forget_set, seed=s)
             for s in (0, 0, 1)]  # fmt: skip
    w = [dict(r.model.named_parameters())["3.weight"] for r in noisy]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    with pytest.raises(ValueError, match="sign must be one of"):
        MnemonicUnlearning(sign="both")


def test_clear_errors(setting, mnist_small):
    task, method, original = setting
    plain = train_original(task, CFG, TrainConfig(epochs=1), device="cpu")
    lacks = r"record lacks \['mnemonic_codes', 'mnemonic_counts'\]"
    with pytest.raises(ValueError, match=lacks) as plain_error:
        method.unlearn(plain, task.forget_set)
    with pytest.raises(ValueError, match=lacks) as bare_error:
        method.unlearn(original.model, task.forget_set)
    for err in (plain_error, bare_error):  # says how to make the record in one's own loop
        text = str(err.value)
        assert "method.training_hooks()" in text and "TrainingRecorder(method" in text
        assert "x, y = rec.transform(x, y)" in text and "record=rec.record()" in text
    wrong = Samples(torch.zeros(len(task.forget_set), 3, 28, 28), task.forget_set.y)
    with pytest.raises(ValueError, match=r"mnemonic: forget has inputs of shape \(3, 28, 28\)"):
        method.unlearn(original, wrong)
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\); expected"):
        method.unlearn(original.model, (wrong.x, wrong.y), record=original.artifacts)
    with pytest.raises(ValueError, match="mnemonic: code_seed must be .*>= 0.*got -1"):
        MnemonicUnlearning(code_seed=-1)
    with pytest.raises(ValueError, match="mnemonic_codes: seed must be an int >= 0, got -1"):
        MnemonicCodes(seed=-1)
    counts = original.artifacts["mnemonic_counts"].clone()
    counts[7] = 0
    record = {**original.artifacts, "mnemonic_counts": counts}
    with pytest.raises(ValueError, match=r"forget class\(es\) \[7\] have no mnemonic code"):
        method.unlearn(original.model, torch.tensor([7]), record=record)
    with pytest.raises(ValueError, match="no class with a code to keep"):
        method.unlearn(original, torch.arange(10))
    wide = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    with pytest.raises(ValueError, match="the model has 5 outputs"):
        method.unlearn(wide, torch.tensor([3]), record=original.artifacts)
    with pytest.raises(ValueError, match="expected a non-empty 1-D integer tensor"):
        method.unlearn(original, torch.tensor([], dtype=torch.long))
    with pytest.raises(TypeError, match="lambda1 must be (a )?float"):
        get_method("mnemonic", lambda1="big")
