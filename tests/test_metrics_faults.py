"""Metrics refuse what they cannot measure: models from another task, weights of another
dtype, inputs of another shape; and the loss attack's documented reading holds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.data import ImageDataset, Samples
from forgetkit.metrics import (
    METRIC_CARDS,
    activation_distance,
    evaluate,
    mia_loss_cv,
    predict,
    relearn_time,
)
from forgetkit.models import ModelConfig
from forgetkit.scenarios import forget_class, forget_random
from forgetkit.train import TrainConfig, retrain, train_original

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = ModelConfig("mlp", (1, 4, 4), 6, {"hidden": 32})
TRAIN = TrainConfig(epochs=4, lr=0.1, batch_size=32)


@pytest.fixture(scope="module")
def toy() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 6, generator=g)
    x, xt = torch.randn(300, 1, 4, 4, generator=g), torch.randn(150, 1, 4, 4, generator=g)
    return ImageDataset(
        "toy", Samples(x, (x.flatten(1) @ w).argmax(1)), Samples(xt, (xt.flatten(1) @ w).argmax(1)),
        tuple("abcdef"), (0.0,), (1.0,), True, "toy data",
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(toy):
    task = forget_class(toy, 0, seed=0)
    original = train_original(task, CFG, TRAIN, cache=False)
    oracle = retrain(task, CFG, TRAIN, seeds=(0, 1), cache=False)
    return task, original, oracle


def test_models_of_the_task_are_accepted(trained):
    task, original, oracle = trained
    df = evaluate({"original": original}, task, oracle, metrics=["accuracy"])
    assert set(df.method) == {"retrain", "original"}


def test_an_original_from_another_dataset_is_refused(trained, toy):
    task, _, oracle = trained
    other = forget_class(toy.subsample(240, 150, seed=1), 0, seed=0)
    stranger = train_original(other, CFG, TRAIN, cache=False)
    with pytest.raises(ValueError, match=r"models\['original'\]\[0\] was trained on other data "
                       r"than this task's task.train_set or task.retain_set"):  # fmt: skip
        evaluate({"original": stranger}, task, oracle, metrics=["accuracy"])


def test_an_oracle_of_another_task_is_refused(trained, toy):
    task, original, oracle = trained
    other = forget_random(toy, 30, seed=0)  # same dataset, another retain set
    with pytest.raises(ValueError, match=r"oracle\[0\] was trained on other data than this "
                       r"task's task.retain_set.*forget 30"):  # fmt: skip
        evaluate({"original": original}, other, oracle, metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"oracle\[0\] was trained on other data"):
        evaluate({}, task, [original], metrics=["accuracy"])  # the original is no oracle


def test_float64_models_are_evaluated_in_their_own_dtype(trained):
    task, original, oracle = trained
    wide = copy.deepcopy(original.model).double()
    narrow = evaluate({"m": original.model}, task, oracle, metrics=["accuracy"])
    both = evaluate({"m": wide}, task, oracle, metrics=["accuracy"])
    np.testing.assert_allclose(both["value"], narrow["value"], atol=1e-3)
    assert mia_loss_cv(wide, task.forget_set, task.heldout_set) == pytest.approx(
        mia_loss_cv(original.model, task.forget_set, task.heldout_set), abs=0.05)  # fmt: skip
    assert next(original.model.parameters()).dtype == torch.float32  # the caller's model


def test_half_and_mixed_precision_models_are_refused_up_front(trained):
    task, original, oracle = trained
    half = copy.deepcopy(original.model).half()
    message = r"models\['m'\]\[0\] on the task's inputs: the model's weights are torch.float16"
    with pytest.raises(TypeError, match=message + ".*model.float()"):
        evaluate({"m": half}, task, oracle)
    with pytest.raises(TypeError, match="forget set: the model's weights are torch.float16"):
        mia_loss_cv(half, task.forget_set, task.heldout_set)
    with pytest.raises(TypeError, match="forget set: the model's weights are torch.float16"):
        relearn_time(half, task.forget_set, task.train_set, threshold=0.1, max_epochs=2)
    mixed = copy.deepcopy(original.model)
    next(mixed.parameters()).data = next(mixed.parameters()).data.double()
    with pytest.raises(TypeError, match="samples: the model's weights are torch.float32, "
                       "torch.float64"):  # fmt: skip
        activation_distance(mixed, original.model, task.test_set)


def test_models_built_for_other_inputs_are_refused_up_front(trained):
    task, original, oracle = trained
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))
    with pytest.raises(ValueError, match=r"oracle\[0\] on the task's inputs: the model failed on "
                       r"inputs of shape \(1, 4, 4\)"):  # fmt: skip
        evaluate({"original": original}, task, [wrong])
    with pytest.raises(ValueError, match=r"held-out set: the model failed on inputs of shape"):
        mia_loss_cv(original.model, task.forget_set, (torch.randn(9, 1, 8, 8), torch.zeros(9)))
    with pytest.raises(ValueError, match=r"models\['m'\]\[0\] has 5 outputs but the task has 6"):
        evaluate({"m": nn.Sequential(nn.Flatten(), nn.Linear(16, 5))}, task, oracle)


@pytest.mark.parametrize("batch_size", [0, 2.5, True, "8"])
def test_predict_batch_size_is_checked(trained, batch_size):
    task, original, _ = trained
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        predict(original.model, task.forget_set, batch_size=batch_size)


def test_loss_attack_reads_as_documented_in_class_forgetting(trained):
    """The retrain oracle, which never saw the class, scores far above the original."""
    task, original, oracle = trained
    oracle_score = mia_loss_cv(oracle[0].model, task.forget_set, task.heldout_set)
    original_score = mia_loss_cv(original.model, task.forget_set, task.heldout_set)
    assert oracle_score > 0.75 and oracle_score > original_score + 0.2
    for text in (mia_loss_cv.__doc__, METRIC_CARDS["mia_loss_cv"]["direction"]):
        assert "class" in text and "1.0" in text and "0.5" in text


@pytest.mark.parametrize("kwargs", [{"max_epochs": 2.5}, {"batch_size": True},
                                    {"samples_per_epoch": "500"}])  # fmt: skip
def test_relearn_counts_must_be_ints(trained, kwargs):
    task, original, _ = trained
    with pytest.raises(
        TypeError, match="max_epochs, samples_per_epoch and batch_size must be ints"
    ):
        relearn_time(original.model, task.forget_set, task.train_set, threshold=0.1, **kwargs)
