"""One validation layer: every class of bad config, hyperparameter, model or data set raises at
the call that received it, naming the argument, the value and what was expected."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import forgetkit as fk
from forgetkit.data import ImageDataset, Samples
from forgetkit.methods import available_methods, get_method
from forgetkit.methods.base import UtilityWarning
from forgetkit.scenarios import forget_class
from forgetkit.validation import overlapping_rows, spec_of

MODEL = fk.ModelConfig("mlp", (1, 6, 6), 3, {"hidden": 16})
RECIPE = fk.TrainConfig(epochs=3, lr=0.1, batch_size=16)


def _tiny(seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(99))

    def part(n: int) -> Samples:
        y = torch.arange(n) % 3
        return Samples(centres[y] + 0.5 * torch.randn(n, 1, 6, 6, generator=g), y)

    return ImageDataset("tiny", part(90), part(60), ("a", "b", "c"), (0.0,), (1.0,), True, "toy")


@pytest.fixture(scope="module")
def setting(one_thread):
    task = forget_class(_tiny(), 0, seed=0)
    return task, fk.train_original(task, MODEL, RECIPE, cache=False)


# --------------------------------------------------------------------------- configs

BAD_TRAIN = [
    ({"epochs": 2.5}, TypeError, r"TrainConfig: epochs must be an int >= 0, got 2.5 \(float\)"),
    ({"epochs": -1}, ValueError, r"TrainConfig: epochs must be an int >= 0, got -1"),
    ({"epochs": True}, TypeError, r"TrainConfig: epochs must be an int >= 0, got True \(bool\)"),
    ({"lr": "0.1"}, TypeError, r"TrainConfig: lr must be a float > 0, got '0.1' \(str\)"),
    ({"lr": 0}, ValueError, r"TrainConfig: lr must be a float > 0, got 0"),
    ({"lr": float("inf")}, ValueError, r"TrainConfig: lr must be finite"),
    ({"weight_decay": -1}, ValueError, r"TrainConfig: weight_decay must be a float >= 0, got -1"),
    ({"momentum": 1.0}, ValueError, r"TrainConfig: momentum must be a float in \[0, 1\), got 1.0"),
    ({"batch_size": 0}, ValueError, r"TrainConfig: batch_size must be an int >= 1, got 0"),
    ({"schedule": "step"}, ValueError, r"TrainConfig: schedule must be one of .*got 'step'"),
    ({"l2_to_init": 1}, TypeError, r"TrainConfig: l2_to_init must be a bool, got 1 \(int\)"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_TRAIN)
def test_train_config_names_the_argument_value_and_expectation(kwargs, error, match):
    with pytest.raises(error, match=match):
        fk.TrainConfig(**kwargs)


def test_numbers_are_stored_in_their_declared_type():
    config = fk.TrainConfig(lr=1, epochs=torch.tensor(3).numpy()[()])
    assert type(config.lr) is float and type(config.epochs) is int
    assert fk.TrainConfig(lr=1) == fk.TrainConfig(lr=1.0)


BAD_METHOD = [
    ("neggrad", {"lr": 0}, ValueError, r"neggrad: lr must be a float > 0, got 0"),
    ("neggrad", {"epochs": -1}, ValueError, r"neggrad: epochs must be an int >= 0, got -1"),
    ("neggrad", {"batch_size": 0}, ValueError, r"neggrad: batch_size must be an int >= 1"),
    ("neggrad", {"stop_accuracy": 2.0}, ValueError,
     r"neggrad: stop_accuracy must be a float in \[0, 1\], got 2.0"),
    ("neggrad", {"check_every": -1}, ValueError, r"neggrad: check_every must be an int >= 0"),
    ("finetune", {"weight_decay": -1.0}, ValueError, r"finetune: weight_decay must be a float"),
    ("finetune", {"momentum": -0.1}, ValueError, r"finetune: momentum must be a float in \[0, 1\)"),
    ("finetune", {"lr": "fast"}, TypeError, r"finetune: lr must be a float > 0, got 'fast'"),
    ("fisher", {"alpha": -1.0}, ValueError, r"fisher: alpha must be a float >= 0, got -1.0"),
    ("fisher", {"eps": 0.0}, ValueError, r"fisher: eps must be a float > 0, got 0.0"),
    ("fisher", {"fisher_batch_size": 0}, ValueError, r"fisher: fisher_batch_size must be an int"),
    ("fisher", {"fisher_kind": "diag"}, ValueError, r"fisher: fisher_kind must be one of"),
    ("retrain", {"train_config": 3}, TypeError, r"retrain: train_config must be a TrainConfig"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), BAD_METHOD)
def test_method_hyperparameters_are_range_checked(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        get_method(name, **kwargs)


@pytest.mark.parametrize("name", available_methods())
def test_every_declared_field_of_every_method_refuses_a_wrong_type(name):
    """A string where a number or flag belongs (and a number for a string) is refused with a
    message naming the method and the argument; a method registered later is covered too."""
    cls = type(get_method(name))
    for f in dataclasses.fields(cls.Hyperparameters):
        spec = spec_of(cls.Hyperparameters, f.name)
        if spec is None:
            continue
        wrong = 7 if spec.kind is str else "x"
        with pytest.raises((TypeError, ValueError), match=rf"{name}: {f.name} must be"):
            get_method(name, **{f.name: wrong})


VALUES = st.one_of(
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.sampled_from(["constant", "cosine", "onecycle"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(fk.TrainConfig)]),
                       VALUES, max_size=4))  # fmt: skip
def test_any_train_config_builds_valid_or_names_the_argument(kwargs):
    try:
        config = fk.TrainConfig(**kwargs)
    except (TypeError, ValueError) as err:
        assert any(f"TrainConfig: {k} must be" in str(err) for k in kwargs), err
        return
    assert config.epochs >= 0 and config.batch_size >= 1 and config.lr > 0
    assert 0 <= config.momentum < 1 and config.weight_decay >= 0
    assert math.isfinite(config.lr) and math.isfinite(config.weight_decay)
    assert config.schedule in ("constant", "cosine", "onecycle")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(available_methods()), st.data())
def test_any_hyperparameter_combination_builds_or_names_the_argument(name, data):
    names = [f.name for f in dataclasses.fields(type(get_method(name)).Hyperparameters)]
    if not names:
        return
    kwargs = data.draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=3))
    try:
        method = get_method(name, **kwargs)
    except (TypeError, ValueError) as err:
        assert any(f"{name}: {k}" in str(err) for k in kwargs), err
        return
    for key in kwargs:  # what was accepted is what its declaration allows
        spec = spec_of(type(method).Hyperparameters, key)
        if spec is not None:
            assert spec.check(name, key, getattr(method.hparams, key)) == getattr(
                method.hparams, key
            )


# --------------------------------------------------------------------------- training


def test_training_checks_labels_shapes_and_seeds(setting):
    task, _ = setting
    data = task.train_set
    bad = Samples(data.x, data.y.clone().index_fill_(0, torch.tensor([0]), 5))
    with pytest.raises(
        ValueError,
        match=r"training labels span 0..5 but the model has 3 outputs "
        r"\(labels must lie in 0..2\)",
    ):
        fk.train_model(MODEL, bad, RECIPE, cache=False)  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"training inputs have shape \(1, 5, 6\) but the model "
        r"config takes \(1, 6, 6\)",
    ):
        fk.train_model(MODEL, (data.x[:, :, :5], data.y), RECIPE, cache=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"retrain: seeds must be distinct, got \(0, 0\)"):
        fk.retrain(task, MODEL, RECIPE, seeds=(0, 0), cache=False)
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        fk.train_model(MODEL, data, RECIPE, seed="1", cache=False)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fk.train_model(MODEL, data, {"epochs": 1}, cache=False)
    # fit on a bare model checks its labels against the model's outputs too
    with pytest.raises(ValueError, match="training labels span 0..5 but the model has 3 outputs"):
        fk.train.fit(fk.build_model(MODEL, seed=0), bad, RECIPE)


# --------------------------------------------------------------------------- unlearning


def test_unlearn_checks_its_seed(setting):
    task, original = setting
    with pytest.raises(TypeError, match=r"neggrad: seed must be an int, got '1' \(str\)"):
        get_method("neggrad").unlearn(original, task.forget_set, seed="1")


def test_a_broken_input_model_is_blamed_on_the_input(setting):
    task, _ = setting
    broken = fk.build_model(MODEL, seed=0)
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"finetune: the input model is already broken: NaN or "
        r"infinite values in \['1.weight'\] before unlearning",
    ):
        get_method("finetune").unlearn(broken, task.forget_set, task.retain_set)  # fmt: skip


def test_dtypes_half_is_refused_float64_works_end_to_end(setting):
    task, original = setting
    with pytest.raises(
        TypeError,
        match=r"neggrad: the input model has torch.float16 weights; "
        r"forgetkit computes in one dtype",
    ):
        get_method("neggrad").unlearn(copy.deepcopy(original.model).half(), task.forget_set)
    mixed = fk.build_model(MODEL, seed=0)
    mixed[1].double()
    with pytest.raises(TypeError, match="torch.float32, torch.float64 weights"):
        get_method("neggrad").unlearn(mixed, task.forget_set)
    double = fk.build_model(MODEL, seed=0).double()
    result = get_method("finetune", epochs=1).unlearn(double, task.forget_set, task.retain_set)
    assert next(result.model.parameters()).dtype == torch.float64
    forget64 = Samples(task.forget_set.x.double(), task.forget_set.y)
    single = get_method("neggrad", epochs=1).unlearn(original, forget64)  # cast to float32
    assert next(single.model.parameters()).dtype == torch.float32


def test_data_that_does_not_fit_the_model_names_the_set_and_both_shapes(setting):
    task, original = setting
    forget, retain = task.forget_set, task.retain_set
    small = (retain.x[:, :, :5], retain.y)
    with pytest.raises(
        ValueError,
        match=r"finetune: retain set inputs have shape \(1, 5, 6\) but "
        r"the model takes \(1, 6, 6\)",
    ):
        get_method("finetune").unlearn(original, forget, small)  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"finetune: retain set inputs have shape \(1, 5, 6\), "
        r"which the model does not take \(it expects 36 input",
    ):
        get_method("finetune").unlearn(original.model, forget, small)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"forget set labels span 7..7 but the model has 3 outputs"
    ):
        get_method("neggrad").unlearn(original, (forget.x, forget.y + 7))


def test_a_retain_set_holding_forget_samples_is_refused(setting):
    task, original = setting
    forget, retain = task.forget_set, task.retain_set
    leaky = Samples.concat([retain, forget.subset([1, 4, 7])])
    with pytest.raises(
        ValueError,
        match=r"retrain: the retain set contains 3 sample\(s\) of the "
        r"forget set",
    ):
        get_method("retrain").unlearn(original, forget, leaky)  # fmt: skip
    rows = overlapping_rows(forget, leaky)
    assert sorted(rows.tolist()) == [len(retain), len(retain) + 1, len(retain) + 2]
    # the same image under another label is another sample; a near-copy is no copy
    relabelled = Samples(forget.x[:3], (forget.y[:3] + 1) % 3)
    nudged = Samples(forget.x[:3] + 1e-6, forget.y[:3])
    assert len(overlapping_rows(forget, relabelled)) == 0
    assert len(overlapping_rows(forget, nudged)) == 0


def test_a_collapsed_model_is_flagged_with_a_warning(setting):
    task, original = setting
    with pytest.warns(UtilityWarning, match=r"neggrad: the unlearned model's utility collapsed"):
        blown = get_method("neggrad", epochs=20, lr=50.0, batch_size=8).unlearn(
            original, task.forget_set, task.retain_set
        )
    report = blown.details["utility"]
    # NegGrad declares no retain input, yet a probe of it is checked, beside the weight norm.
    assert report["collapsed"] and report["weight_norm_ratio"] > 1e3
    assert any("weight norm" in r for r in report["reasons"])
    assert report["probe"] == "retain set"
    # weight decay moves the weights: this toy's loss is so small (about 1e-8) that plain
    # SGD steps do not change a single float32 weight, which would rightly warn "unchanged"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UtilityWarning)
        fine = get_method("finetune", epochs=1, weight_decay=5e-4).unlearn(
            original, task.forget_set, task.retain_set
        )
    assert not fine.details["utility"]["collapsed"] and not fine.details["unchanged"]
    assert fine.details["utility"]["accuracy_before"] > 0.9
    with pytest.warns(UtilityWarning, match="finetune changed nothing"):
        still = get_method("finetune", epochs=1).unlearn(original, task.forget_set, task.retain_set)
    assert still.details["unchanged"] and still.details["history"]


def test_unlearning_never_mutates_the_callers_model_even_when_it_refuses(setting):
    task, original = setting
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    with pytest.raises(ValueError):
        get_method("retrain").unlearn(original, task.forget_set, task.train_set)
    assert all(torch.equal(before[k], v) for k, v in original.model.state_dict().items())
    assert isinstance(original.model, nn.Module) and not original.model.training
