"""Unit tests for forgetkit.metrics on tiny synthetic models and data (no dataset files)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.data import ImageDataset, Samples
from forgetkit.methods.base import UnlearnResult
from forgetkit.metrics import (
    COLUMNS,
    DEFAULT_METRICS,
    METRIC_CARDS,
    ShadowModelAttack,
    accuracy,
    activation_distance,
    entropy,
    error,
    evaluate,
    forgetting_rate,
    gap_to_oracle,
    js_divergence,
    mia_entropy_lr,
    mia_entropy_svc,
    mia_loss_cv,
    model_js,
    per_sample_loss,
    predict,
    probabilities,
    relearn_threshold,
    relearn_time,
    summarize,
    tow,
)
from forgetkit.models import ModelConfig
from forgetkit.scenarios import forget_class, forget_random
from forgetkit.train import TrainConfig, TrainedModel

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- helpers


def lookup_model(logits: torch.Tensor) -> nn.Module:
    """A model whose output on the i-th one-hot input is ``logits[i]``: exact control."""
    n, c = logits.shape
    model = nn.Linear(n, c, bias=False)
    with torch.no_grad():
        model.weight.copy_(logits.T)
    return model


def lookup_sets(logits: torch.Tensor, labels: torch.Tensor, *sizes: int) -> list[Samples]:
    """Consecutive one-hot blocks of the lookup table, as Samples."""
    eye = torch.eye(logits.shape[0])
    out, start = [], 0
    for n in sizes:
        out.append(Samples(eye[start : start + n], labels[start : start + n]))
        start += n
    return out


def linear(seed: int, d: int = 16, c: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, c))


@pytest.fixture(scope="module")
def toy_data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 3, generator=g)
    x = torch.randn(240, 1, 4, 4, generator=g)
    xt = torch.randn(120, 1, 4, 4, generator=g)
    return ImageDataset(
        "toy", Samples(x, (x.flatten(1) @ w).argmax(1)), Samples(xt, (xt.flatten(1) @ w).argmax(1)),
        ("a", "b", "c"), (0.0,), (1.0,), True, "toy data for tests",
    )  # fmt: skip


# --------------------------------------------------------------------------- predictions


def test_predict_is_batched_on_cpu_without_grad():
    model = linear(0)
    x = torch.randn(50, 1, 4, 4)
    out = predict(model, (x, torch.zeros(50, dtype=torch.long)), batch_size=7)
    assert out.shape == (50, 3) and out.device.type == "cpu" and not out.requires_grad
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-6)


def test_predict_accepts_every_data_form():
    model = linear(0)
    x, y = torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,))
    ref = predict(model, Samples(x, y))
    ds = torch.utils.data.TensorDataset(x, y)
    for form in ((x, y), ds, torch.utils.data.DataLoader(ds, batch_size=6)):
        assert torch.equal(predict(model, form), ref)


def test_predict_restores_mixed_modes_and_uses_eval():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    model.train()
    model[1].eval()  # a submodule frozen on purpose must stay frozen
    x = (torch.randn(30, 1, 4, 4), torch.zeros(30, dtype=torch.long))
    a, b = predict(model, x), predict(model, x)
    assert torch.equal(a, b)  # dropout off: eval mode
    assert model.training and model[2].training and not model[1].training


def test_predict_rejects_non_models():
    with pytest.raises(TypeError, match="nn.Module"):
        predict("not a model", (torch.randn(3, 2), torch.zeros(3, dtype=torch.long)))


def test_known_predictions_give_known_accuracy_loss_entropy():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 2])  # right, right, wrong, tie -> class 0 -> wrong
    model = lookup_model(logits)
    (data,) = lookup_sets(logits, labels, 4)
    assert accuracy(model, data) == pytest.approx(0.5)
    assert error(model, data) == pytest.approx(0.5)
    expected = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(per_sample_loss(model, data), expected)
    probs = probabilities(model, data)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    ent = entropy(probs)
    assert ent[3] == pytest.approx(math.log(3), abs=1e-6)
    assert float(entropy(torch.tensor([[1.0, 0.0, 0.0]]))) == 0.0


def test_accuracy_checks_labels_against_outputs():
    with pytest.raises(ValueError, match="outputs"):
        accuracy(linear(0), (torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])))


# --------------------------------------------------------------------------- divergences


def test_js_known_values_and_reductions():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    rows = js_divergence(p, q, reduction="none")
    assert rows.tolist() == pytest.approx([math.log(2), 0.0])
    assert float(js_divergence(p, q)) == pytest.approx(math.log(2) / 2)
    assert float(js_divergence(p, q, reduction="sum")) == pytest.approx(math.log(2))
    assert float(js_divergence(np.array([0.2, 0.8]), np.array([0.2, 0.8]))) == 0.0  # 1-D row


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        ([[0.5, 0.5]], [[0.3, 0.3, 0.4]], "same shape"),
        ([[1.5, -0.5]], [[0.5, 0.5]], "negative"),
        ([[0.6, 0.6]], [[0.5, 0.5]], "sum to 1"),
        ([[float("nan"), 1.0]], [[0.5, 0.5]], "NaN"),
        ([[[0.5, 0.5]]], [[[0.5, 0.5]]], "matrix"),
    ],
)
def test_js_validates_inputs(p, q, match):
    with pytest.raises(ValueError, match=match):
        js_divergence(torch.tensor(p), torch.tensor(q))


def test_js_rejects_bad_reduction_and_integer_input():
    p = torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match="reduction"):
        js_divergence(p, p, reduction="max")
    with pytest.raises(TypeError, match="floating"):
        js_divergence(torch.tensor([[1, 0]]), torch.tensor([[0, 1]]))


def test_activation_distance_is_l1_of_softmax():
    g = torch.Generator().manual_seed(3)
    la, lb = torch.randn(12, 4, generator=g) * 3, torch.randn(12, 4, generator=g) * 3
    a, b = lookup_model(la), lookup_model(lb)
    (data,) = lookup_sets(la, torch.zeros(12, dtype=torch.long), 12)
    expected = (la.softmax(1) - lb.softmax(1)).abs().sum(1).mean()
    l2 = (la.softmax(1) - lb.softmax(1)).norm(dim=1).mean()
    got = activation_distance(a, b, data)
    assert got == pytest.approx(float(expected), rel=1e-6)
    assert abs(got - float(l2)) > 1e-3  # the L1 of the official code, not the L2 of others
    assert activation_distance(a, a, data) == 0.0
    assert model_js(a, a, data) == 0.0
    assert model_js(a, b, data) == pytest.approx(float(js_divergence(la.softmax(1), lb.softmax(1))))


def test_model_comparisons_need_matching_classes():
    data = (torch.randn(5, 1, 4, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="number of classes"):
        activation_distance(linear(0, c=3), linear(0, c=4), data)


# --------------------------------------------------------------------------- attacks


def _loss_table(n_f: int, n_h: int, confident_forget: bool, seed: int = 0):
    """Logits whose forget rows are confidently right (or like held-out) and labels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_f + n_h, 3, generator=g)
    labels = torch.randint(0, 3, (n_f + n_h,), generator=g)
    if confident_forget:
        logits[torch.arange(n_f), labels[:n_f]] += 8.0
    return logits, labels


def test_mia_loss_cv_separable_and_chance():
    logits, labels = _loss_table(200, 150, confident_forget=True)
    forget, heldout = lookup_sets(logits, labels, 200, 150)
    assert mia_loss_cv(lookup_model(logits), forget, heldout) > 0.9
    logits, labels = _loss_table(200, 150, confident_forget=False)
    forget, heldout = lookup_sets(logits, labels, 200, 150)
    assert abs(mia_loss_cv(lookup_model(logits), forget, heldout) - 0.5) < 0.1


def test_mia_loss_cv_is_seeded_and_needs_samples():
    logits, labels = _loss_table(60, 90, confident_forget=False)
    model = lookup_model(logits)
    forget, heldout = lookup_sets(logits, labels, 60, 90)
    first = mia_loss_cv(model, forget, heldout, seed=3)
    assert mia_loss_cv(model, forget, heldout, seed=3) == first
    tiny, rest = lookup_sets(logits, labels, 3, 147)
    with pytest.raises(ValueError, match="at least"):
        mia_loss_cv(model, tiny, rest)


def _entropy_table(sizes, confident):
    """Rows for retain/test/forget: confident rows have low entropy, others high."""
    g = torch.Generator().manual_seed(1)
    blocks = []
    for n, sharp in zip(sizes, confident, strict=True):
        block = torch.randn(n, 4, generator=g) * 0.3
        if sharp:
            block[:, 0] += 9.0
        blocks.append(block)
    logits = torch.cat(blocks)
    return logits, torch.zeros(len(logits), dtype=torch.long)


@pytest.mark.parametrize("attack", [mia_entropy_svc, mia_entropy_lr])
def test_entropy_attacks_separate_members(attack):
    logits, labels = _entropy_table((150, 150, 80), (True, False, True))
    retain, test, forget = lookup_sets(logits, labels, 150, 150, 80)
    assert attack(lookup_model(logits), retain, test, forget) > 0.95
    logits, labels = _entropy_table((150, 150, 80), (True, False, False))
    retain, test, forget = lookup_sets(logits, labels, 150, 150, 80)
    assert attack(lookup_model(logits), retain, test, forget) < 0.05


def test_entropy_svc_subsamples_to_max_samples():
    logits, labels = _entropy_table((300, 100, 50), (True, False, True))
    retain, test, forget = lookup_sets(logits, labels, 300, 100, 50)
    model = lookup_model(logits)
    assert mia_entropy_svc(model, retain, test, forget, max_samples=40) > 0.9
    with pytest.raises(ValueError, match="max_samples"):
        mia_entropy_svc(model, retain, test, forget, max_samples=2)


def _overfit_linear(members: Samples, num_classes: int, seed: int, steps: int = 150) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(members.x.shape[1], num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(members.x), members.y).backward()
        opt.step()
    return model


def _random_sets(seed: int, n: int = 60, d: int = 48, c: int = 4) -> tuple[Samples, Samples]:
    g = torch.Generator().manual_seed(seed)
    make = lambda: Samples(torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g))  # noqa: E731
    return make(), make()


@pytest.fixture(scope="module")
def shadow_setup():
    ins, outs, shadows = [], [], []
    for i in range(3):
        a, b = _random_sets(10 + i)
        ins.append(a)
        outs.append(b)
        shadows.append(_overfit_linear(a, 4, seed=i))
    target_in, target_out = _random_sets(99)
    target = _overfit_linear(target_in, 4, seed=7)
    return shadows, ins, outs, target, target_in, target_out


def test_shadow_attack_detects_memorisation(shadow_setup):
    shadows, ins, outs, target, t_in, t_out = shadow_setup
    attack = ShadowModelAttack.fit(shadows, ins, outs, seed=0)
    assert attack.k == 4 and attack.class_models == {}  # too little data for per-class models
    assert attack.train_accuracy > 0.9
    verdict = attack.predict_member(target, t_in)
    assert verdict.dtype == bool and verdict.shape == (len(t_in),)
    report = attack.score(target, t_in, t_out)
    assert report["accuracy"] > 0.85 and report["tpr"] > report["fpr"]
    assert set(report) >= {"accuracy", "tpr", "fpr", "advantage", "precision"}
    assert attack.member_rate(target, t_in) == pytest.approx(report["tpr"])


def test_shadow_attack_is_at_chance_without_memorisation():
    ins, outs, shadows = [], [], []
    for i in range(3):
        a, b = _random_sets(20 + i, n=150)
        ins.append(a)
        outs.append(b)
        torch.manual_seed(i)
        shadows.append(nn.Linear(48, 4))  # untrained: members look like everyone else
    t_in, t_out = _random_sets(5, n=200)
    torch.manual_seed(9)
    attack = ShadowModelAttack.fit(shadows, ins, outs)
    assert abs(attack.score(nn.Linear(48, 4), t_in, t_out)["accuracy"] - 0.5) < 0.1


def test_shadow_attack_per_class_models(shadow_setup):
    shadows, ins, outs, target, t_in, _ = shadow_setup
    attack = ShadowModelAttack.fit(shadows, ins, outs, min_class_samples=5)
    assert set(attack.class_models) == {0, 1, 2, 3}
    assert attack.predict_member(target, t_in).shape == (len(t_in),)
    flat = ShadowModelAttack.fit(shadows, ins, outs, min_class_samples=5, per_class=False)
    assert flat.class_models == {}


def test_shadow_attack_validates_inputs(shadow_setup):
    shadows, ins, outs, *_ = shadow_setup
    with pytest.raises(ValueError, match="one member and one non-member set"):
        ShadowModelAttack.fit(shadows, ins[:2], outs)
    with pytest.raises(ValueError, match="at least one"):
        ShadowModelAttack.fit([], [], [])
    with pytest.raises(TypeError, match="shadow model 0"):
        ShadowModelAttack.fit(["x"], ins[:1], outs[:1])
    attack = ShadowModelAttack.fit(shadows, ins, outs)
    with pytest.raises(ValueError, match="outputs"):
        attack.predict_member(nn.Linear(48, 3), Samples(torch.randn(4, 48), torch.zeros(4)))


def test_shadow_attack_train_uses_forgetkit_training():
    g = torch.Generator().manual_seed(0)
    pool = Samples(torch.randn(200, 1, 4, 4, generator=g), torch.randint(0, 3, (200,), generator=g))
    config = ModelConfig("logistic", (1, 4, 4), 3)
    attack = ShadowModelAttack.train(config, TrainConfig(epochs=2, lr=0.1), pool, n_shadows=2,
                                     cache=False, device="cpu")  # fmt: skip
    assert len(attack.shadows) == 2 and all(isinstance(t, TrainedModel) for t in attack.shadows)
    assert attack.predict_member(attack.shadows[0].model, pool).shape == (200,)
    overlapping = ShadowModelAttack.train(config, TrainConfig(epochs=1), pool, n_shadows=3,
                                          shadow_size=60, cache=False, device="cpu")  # fmt: skip
    assert len(overlapping.shadows) == 3
    with pytest.raises(ValueError, match="shadow_size"):
        ShadowModelAttack.train(config, TrainConfig(epochs=1), pool, shadow_size=150, cache=False)
    with pytest.raises(ValueError, match="n_shadows"):
        ShadowModelAttack.train(config, TrainConfig(epochs=1), pool, n_shadows=0, cache=False)


def test_forgetting_rate():
    before = np.array([True, True, False, True])
    after = np.array([False, True, False, False])
    assert forgetting_rate(before, after) == pytest.approx(2 / 3)
    assert forgetting_rate(before, before) == 0.0
    assert forgetting_rate(before, np.zeros(4, dtype=bool)) == 1.0
    assert forgetting_rate(np.array([1, 0, 1]), np.array([0, 0, 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="undefined"):
        forgetting_rate(np.zeros(3, dtype=bool), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="same shape"):
        forgetting_rate(before, after[:3])
    with pytest.raises(ValueError, match="verdicts"):
        forgetting_rate(np.array([2, 0]), np.array([0, 0]))


# --------------------------------------------------------------------------- relearn


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 3))  # fmt: skip


def test_relearn_time_returns_one_at_threshold_and_never_mutates(toy_data):
    model = _bn_model(0)
    model.train()
    before = _state(model)
    pool, forget = toy_data.train, toy_data.train.subset(range(30))
    assert relearn_time(model, forget, pool, threshold=1e9) == 1
    assert relearn_time(model, forget, pool, threshold=-1.0, max_epochs=3) == 3  # never reached
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_relearn_time_relearns_and_is_seeded(toy_data):
    pool = toy_data.train
    forget = pool.subset(range(40))
    fresh = linear(1)
    threshold = relearn_threshold(fresh, forget) - 0.3  # a loss the fresh model must learn down to
    t1 = relearn_time(fresh, forget, pool, threshold=threshold, lr=0.1, max_epochs=60)
    assert 1 < t1 < 60
    assert relearn_time(fresh, forget, pool, threshold=threshold, lr=0.1, max_epochs=60) == t1
    slow = relearn_time(fresh, forget, pool, threshold=threshold, lr=0.1, max_epochs=60,
                        weight_decay=50.0)  # fmt: skip
    assert slow >= t1


def test_relearn_threshold_is_original_loss_plus_margin(toy_data):
    model, forget = linear(2), toy_data.train.subset(range(25))
    expected = float(per_sample_loss(model, forget).mean()) + 1e-5
    assert relearn_threshold(model, forget) == pytest.approx(expected, abs=1e-9)


def test_relearn_time_validates(toy_data):
    pool = toy_data.train
    with pytest.raises(ValueError, match="threshold"):
        relearn_time(linear(0), pool, pool)
    with pytest.raises(ValueError, match="lr"):
        relearn_time(linear(0), pool, pool, threshold=1.0, lr=0.0)
    with pytest.raises(ValueError, match="shape"):
        relearn_time(linear(0), pool, (torch.randn(5, 1, 2, 2), torch.zeros(5)), threshold=1.0)


# --------------------------------------------------------------------------- ToW


def test_tow_values_and_validation():
    acc = {"forget": 0.2, "retain": 0.9, "test": 0.8}
    assert tow(acc, acc) == 1.0
    worse = {"forget": 0.4, "retain": 0.8, "test": 0.8, "extra": 7}
    assert tow(worse, acc) == pytest.approx(0.8 * 0.9 * 1.0)
    with pytest.raises(ValueError, match="lacks"):
        tow({"forget": 0.1, "retain": 0.1}, acc)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tow({"forget": 20.0, "retain": 90.0, "test": 80.0}, acc)  # percentages
    with pytest.raises(TypeError, match="mapping"):
        tow([0.1, 0.2, 0.3], acc)


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def class_task(toy_data):
    return forget_class(toy_data, 0, seed=0)


def test_evaluate_columns_oracle_rows_and_seconds(class_task):
    oracle = [TrainedModel(linear(10), [], 2.5, "k0", False), linear(11)]
    models = {
        "plain": linear(1),
        "timed": UnlearnResult(linear(2), 0.25),
        "seeds": [linear(3), TrainedModel(linear(4), [], 1.0, "k", True)],
    }
    df = evaluate(models, class_task, oracle, seed=0)
    assert tuple(df.columns) == COLUMNS
    assert list(dict.fromkeys(df["method"])) == ["retrain", "plain", "timed", "seeds"]
    assert sorted(set(df.loc[df.method == "retrain", "seed"])) == [0, 1]
    assert sorted(set(df.loc[df.method == "seeds", "seed"])) == [0, 1]
    assert set(df.metric) == set(DEFAULT_METRICS) | {"seconds"}
    acc_splits = set(df.loc[df.metric == "accuracy", "split"])
    assert acc_splits == {"forget", "retain", "test", "test_forgotten", "test_kept"}
    seconds = df[df.metric == "seconds"]
    assert set(zip(seconds.method, seconds.seed, strict=True)) == {
        ("retrain", 0), ("timed", 0), ("seeds", 1)}  # fmt: skip
    assert seconds.loc[seconds.method == "timed", "value"].item() == 0.25
    assert set(seconds.split) == {"-"}
    assert set(df.loc[df.metric.str.startswith("mia"), "split"]) == {"forget"}
    assert set(df.loc[df.metric == "js", "split"]) == {"forget", "test"}
    assert df.loc[df.metric == "accuracy", "value"].between(0, 1).all()
    assert not df.loc[df.metric != "seconds", "value"].isna().any()  # two oracle seeds: no NaN


def test_evaluate_split_accuracies_match_direct_computation(class_task):
    model = linear(5)
    df = evaluate({"m": model}, class_task, [linear(6), linear(7)], metrics=["accuracy"])
    got = df[(df.method == "m")].set_index("split")["value"]
    assert got["forget"] == pytest.approx(accuracy(model, class_task.forget_set))
    assert got["test"] == pytest.approx(accuracy(model, class_task.test_set))
    test = class_task.test_set
    forgotten = test.subset(np.flatnonzero(test.y.numpy() == 0))
    assert got["test_forgotten"] == pytest.approx(accuracy(model, forgotten))
    assert set(df.metric) == {"accuracy"}


def test_evaluate_single_oracle_gives_nan_self_reference(toy_data):
    task = forget_random(toy_data, 30, seed=1)
    oracle_model = linear(8)
    df = evaluate({"same": oracle_model, "other": linear(9)}, task, [oracle_model])
    own = df[(df.method == "retrain") & df.metric.isin(["activation_distance", "js", "tow"])]
    assert len(own) == 5 and own.value.isna().all()
    same = df[df.method == "same"].set_index(["split", "metric"])["value"]
    assert same[("forget", "activation_distance")] == 0.0 and same[("test", "js")] == 0.0
    assert same[("-", "tow")] == 1.0
    assert "test_forgotten" not in set(df.split)  # random forgetting has no forgotten class


def test_evaluate_leaves_models_untouched(class_task):
    model = _bn_model(0)
    model.train()
    before = _state(model)
    evaluate({"m": model}, class_task, [linear(1), linear(2)], metrics=["accuracy", "js"])
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"oracle": []}, ValueError, "oracle is empty"),
        ({"oracle": "linear"}, TypeError, "oracle must be a list"),
        ({"models": [("m", None)]}, TypeError, "mapping"),
        ({"models": {"m": "model.pt"}}, TypeError, r"models\['m'\]"),
        ({"models": {"m": [linear(0), {"w": 1}]}}, TypeError, r"models\['m'\]\[1\]"),
        ({"models": {"m": []}}, ValueError, "empty"),
        ({"models": {"retrain": linear(0)}}, ValueError, "reserved"),
        ({"models": {1: linear(0)}}, TypeError, "strings"),
        ({"metrics": ["accuracy", "auc"]}, ValueError, "unknown metric"),
        ({"task": "class 0"}, TypeError, "ForgetTask"),
        ({"oracle": [linear(0, c=2)]}, ValueError, "outputs"),
    ],
)
def test_evaluate_rejects_bad_inputs(class_task, kwargs, error, match):
    args = {"models": {"m": linear(0)}, "task": class_task, "oracle": [linear(1)]}
    args.update(kwargs)
    if kwargs.get("oracle") == "linear":
        args["oracle"] = linear(1)  # a bare model, not a list
    with pytest.raises(error, match=match):
        evaluate(args["models"], args["task"], args["oracle"], **{
            k: v for k, v in args.items() if k == "metrics"})  # fmt: skip


def test_summarize_and_gap_to_oracle(class_task):
    df = evaluate({"a": [linear(1), linear(2)], "b": linear(3)}, class_task,
                  [linear(4), linear(5), linear(6)], metrics=["accuracy", "tow"])  # fmt: skip
    table = summarize(df)
    assert list(table.columns) == ["retrain", "retrain_std", "a", "b"]
    assert table.index.names == ["split", "metric"]
    assert ("forget", "accuracy") in table.index and ("-", "tow") in table.index
    sel = df[(df.method == "a") & (df.split == "test") & (df.metric == "accuracy")]
    assert table.loc[("test", "accuracy"), "a"] == pytest.approx(sel.value.mean())
    oracle = df[(df.method == "retrain") & (df.split == "test") & (df.metric == "accuracy")]
    assert table.loc[("test", "accuracy"), "retrain_std"] == pytest.approx(oracle.value.std())
    gaps = gap_to_oracle(df)
    assert list(gaps.columns) == ["method", "split", "metric", "value_mean", "oracle_mean", "gap"]
    assert set(gaps.method) == {"a", "b"}
    assert np.allclose(gaps.gap, gaps.value_mean - gaps.oracle_mean)
    with pytest.raises(ValueError, match="lacks columns"):
        summarize(pd.DataFrame({"method": ["a"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        gap_to_oracle({"method": ["a"]})


def test_metric_cards_cover_every_metric():
    for name in (*DEFAULT_METRICS, "seconds", "relearn_time", "forgetting_rate", "shadow_mia"):
        card = METRIC_CARDS[name]
        assert set(card) == {"definition", "direction", "source"}
        assert all(isinstance(v, str) and len(v) > 10 for v in card.values())


def test_relearn_curve_gives_relearn_time_at_every_threshold(toy_data):
    from forgetkit.metrics import relearn_curve, relearn_time_from_curve

    pool = toy_data.train
    forget = pool.subset(range(40))
    fresh = linear(1)
    kw = {"lr": 0.1, "max_epochs": 20, "seed": 3}
    curve = relearn_curve(fresh, forget, pool, **kw)
    assert curve.shape == (20,)
    for threshold in (curve[0] + 1, float(np.median(curve)), float(curve.min()) - 1):
        expected = relearn_time(fresh, forget, pool, threshold=threshold, **kw)
        assert relearn_time_from_curve(curve, threshold) == expected
    with pytest.raises(ValueError, match="non-empty 1-D"):
        relearn_time_from_curve(np.array([]), 0.5)
