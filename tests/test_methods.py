"""The unlearning interface: registry, validation, never touching the caller's model, timing."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from forgetkit.methods import (
    SCRUB,
    JiT,
    UnlearningMethod,
    as_neurips_unlearning,
    available_methods,
    get_method,
)
from forgetkit.methods.base import register
from forgetkit.models import ModelConfig
from forgetkit.scenarios import forget_class
from forgetkit.train import TrainConfig, train_original

CFG = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 64})
BASELINES = {"retrain": {"train_config": TrainConfig(epochs=2, lr=0.05, batch_size=64)},
             "finetune": {"epochs": 1}, "neggrad": {"epochs": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def setting(mnist_small):
    task = forget_class(mnist_small, 3)
    original = train_original(task, CFG, TrainConfig(epochs=3, lr=0.05, batch_size=64),
                              device="cpu", cache=False)  # fmt: skip
    return task, original.model


def _acc(model, samples):
    with torch.no_grad():
        return float((model(samples.x).argmax(1) == samples.y).float().mean())


def test_registry_lists_the_baselines():
    assert {"retrain", "finetune", "neggrad"} <= set(available_methods())
    with pytest.raises(ValueError, match="unknown method 'oblivion'"):
        get_method("oblivion")
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        get_method("finetune", learning_rate=0.1)
    with pytest.raises(TypeError, match="finetune: epochs must be an int >= 0, got 1.5"):
        get_method("finetune", epochs=1.5)
    card = get_method("finetune").describe()
    assert card["needs"] == ["forget", "retain"] and card["hyperparameters"]["lr"] == 0.01


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_caller_model_is_untouched_and_seconds_are_reported(setting, name):
    task, model = setting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = get_method(name, **BASELINES[name]).unlearn(model, task.forget_set, task.retain_set,
                                                         device="cpu")  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.model is not model and result.seconds > 0
    assert not all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_inplace_modifies_the_given_model(setting):
    task, model = setting
    import copy

    mine = copy.deepcopy(model)
    result = get_method("neggrad", epochs=1).unlearn(mine, task.forget_set, inplace=True)
    assert result.model is mine


def test_baselines_do_what_they_claim(setting):
    task, model = setting
    assert _acc(model, task.forget_set) > 0.8
    ascent = get_method("neggrad", epochs=30, lr=0.01, stop_accuracy=0.3).unlearn(
        model, task.forget_set
    )
    assert _acc(ascent.model, task.forget_set) <= 0.3  # it stops once forget accuracy is low
    assert ascent.details["epochs_run"] < 30
    tuned = get_method("finetune", epochs=1).unlearn(model, task.forget_set, task.retain_set).model
    assert _acc(tuned, task.retain_set) > 0.8
    recipe = TrainConfig(epochs=2, lr=0.05, batch_size=64)
    scratch = (
        get_method("retrain", train_config=recipe)
        .unlearn(model, task.forget_set, task.retain_set)
        .model
    )
    assert _acc(scratch, task.forget_set) == 0.0 and _acc(scratch, task.test_set) > 0.6


def test_same_seed_same_result(setting):
    task, model = setting
    a = get_method("finetune", epochs=1).unlearn(model, task.forget_set, task.retain_set, seed=1)
    b = get_method("finetune", epochs=1).unlearn(model, task.forget_set, task.retain_set, seed=1)
    assert all(
        torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )


def test_bad_inputs_get_errors_that_name_the_problem(setting):
    task, model = setting
    forget, retain = task.forget_set, task.retain_set
    finetune = get_method("finetune")
    with pytest.raises(ValueError, match="finetune needs retain"):
        finetune.unlearn(model, forget)
    with pytest.raises(ValueError, match="forget set is empty"):
        finetune.unlearn(model, (forget.x[:0], forget.y[:0]), retain)
    with pytest.raises(ValueError, match="forget set: inputs contain NaN"):
        finetune.unlearn(model, (forget.x * float("nan"), forget.y), retain)
    with pytest.raises(ValueError, match="labels span 0..12 but the model has 10 outputs"):
        finetune.unlearn(model, (forget.x[:2], torch.tensor([0, 12])), retain)
    with pytest.raises(
        ValueError, match=r"retain set inputs have shape \(1, 20, 28\), which the model does not"
    ):
        finetune.unlearn(model, forget, (retain.x[:, :, :20], retain.y))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        finetune.unlearn("model", forget, retain)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            finetune.unlearn(model, forget, retain, device="cuda")


def test_neurips_adapter_speaks_dataloaders(setting):
    task, model = setting

    def loader(s):
        return DataLoader(TensorDataset(s.x, s.y), batch_size=256)

    unlearning = as_neurips_unlearning(get_method("finetune", epochs=1))
    net = unlearning(model, loader(task.retain_set), loader(task.forget_set), loader(task.test_set))
    assert net is not model and isinstance(net, torch.nn.Module)


def test_a_new_method_plugs_in_by_subclassing():
    @register
    class Shrink(UnlearningMethod):
        """Scales every weight: a toy, to show the contract."""

        name = "test-shrink"

        @dataclass(frozen=True)
        class Hyperparameters:
            factor: float = 0.5

        def _unlearn(self, model, data, device, gen):
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(self.hparams.factor)
            return {"factor": self.hparams.factor}

    model = torch.nn.Linear(4, 3)
    result = get_method("test-shrink", factor=0.0).unlearn(
        model, (torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    )
    assert result.details["factor"] == 0.0 and float(result.model.weight.detach().abs().sum()) == 0
    assert float(model.weight.detach().abs().sum()) > 0


def test_neggrad_can_stop_within_an_epoch(setting):
    task, model = setting
    per_epoch = get_method("neggrad", epochs=1, lr=0.5, stop_accuracy=0.5).unlearn(
        model, task.forget_set
    )
    per_step = get_method("neggrad", epochs=1, lr=0.5, stop_accuracy=0.5, check_every=1).unlearn(
        model, task.forget_set
    )
    full_epoch = -(-len(task.forget_set) // 64)
    assert per_epoch.details["steps"] == full_epoch
    assert per_step.details["steps"] < full_epoch
    assert per_step.details["history"][-1]["forget_accuracy"] <= 0.5
    with pytest.raises(ValueError, match="check_every"):
        get_method("neggrad", check_every=-1)


def test_finetune_can_follow_golatkar_recipe():
    config = get_method("finetune", l2_to_init=True, bn_eval=True).hparams.train_config()
    assert config.l2_to_init and config.bn_eval


def test_describe_reports_the_instances_values_and_the_class_its_defaults():
    assert get_method("scrub", lr=1e-3).describe()["hyperparameters"]["lr"] == 1e-3
    default = SCRUB.Hyperparameters().lr
    assert SCRUB.describe()["hyperparameters"]["lr"] == default != 1e-3


@pytest.mark.parametrize("name", available_methods())
def test_hyperparameters_are_typed_keyword_arguments_of_the_class(name):
    cls = type(get_method(name))
    params = inspect.signature(cls).parameters
    fields = dataclasses.fields(cls.Hyperparameters)
    assert list(params) == [f.name for f in fields]
    for f in fields:
        p = params[f.name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.annotation is not inspect.Parameter.empty
        assert p.default == getattr(cls.Hyperparameters(), f.name)


def test_the_signature_names_the_types_and_calls_still_take_keywords():
    params = inspect.signature(JiT).parameters
    assert params["sigma"].annotation is float and params["n_samples"].annotation is int
    assert JiT(sigma=0.02).hparams.sigma == 0.02 == JiT(**{"sigma": 0.02}).hparams.sigma
    with pytest.raises(TypeError, match="jit: unknown hyperparameter"):
        JiT(sigmaa=0.02)
