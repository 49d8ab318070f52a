"""The training-time contract: every method is trained for and unlearned with the same three
calls, discovered from the class alone; Retrain reuses the original's recipe; the NeurIPS
adapter refuses, at wrap time, a method it cannot feed."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import pytest
import torch
from conftest import tiny_dataset
from torch import nn

import forgetkit as fk
from forgetkit.cache import CheckpointCache
from forgetkit.data import Samples
from forgetkit.methods import UnlearningMethod, as_neurips_unlearning, available_methods
from forgetkit.methods.base import register
from forgetkit.scenarios import forget_class
from forgetkit.train import TrainHook

MODEL = fk.ModelConfig("mlp", (1, 6, 6), 3, {"hidden": 16})
RECIPE = fk.TrainConfig(epochs=3, lr=0.1, batch_size=16)


@pytest.fixture(scope="module")
def task(one_thread):
    return forget_class(tiny_dataset(), 0, seed=0)


def _inputs(method: UnlearningMethod, task) -> dict:
    """Each forget-time input the method declares, taken from the task (the record comes
    from the TrainedModel passed as the model)."""
    source = {"retain": task.retain_set, "validation": task.test_set,
              "nonmember": task.heldout_set}  # fmt: skip
    return {k: v for k, v in source.items() if k in method.needs | method.uses}


def _same(a: nn.Module | dict, b: nn.Module | dict) -> bool:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- a hooked toy


class GradientSum(TrainHook):
    """Sums the gradients of the last training epoch (an L-CODEC-like training-time need)."""

    name = "gradient-sum"

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def after_backward(self, model: nn.Module, epoch: int, n_epochs: int) -> None:
        if epoch == n_epochs - 1:
            for n, p in model.named_parameters():
                self.sums[n] = self.sums.get(n, 0) + p.grad.detach().clone()

    def artifacts(self) -> dict[str, torch.Tensor]:
        return {f"gradsum.{n}": v for n, v in self.sums.items()}

    def restore(self, artifacts: dict[str, torch.Tensor]) -> None:
        self.sums = {k[8:]: v for k, v in artifacts.items() if k.startswith("gradsum.")}


@register
class UndoLastEpoch(UnlearningMethod):
    """Steps back along the saved last-epoch gradients: a toy that needs its training hook."""

    name = "test-undo-last-epoch"
    record_keys = frozenset({"gradients"})

    @dataclass(frozen=True)
    class Hyperparameters:
        step: float = 0.01

    def training_hooks(self) -> tuple[TrainHook, ...]:
        return (GradientSum(),)

    def record_from(self, trained: fk.TrainedModel) -> dict:
        record = super().record_from(trained)
        record["gradients"] = {k[8:]: v for k, v in trained.artifacts.items()
                               if k.startswith("gradsum.")} or None  # fmt: skip
        return record

    def _unlearn(self, model, data, device, gen):
        grads = data.record["gradients"]
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.add_(grads[n].to(device), alpha=self.hparams.step)
        return {"parameters_moved": len(grads), "train_size": data.record["train_size"]}


@register
class NeedsNonmember(UnlearningMethod):
    """Moves nothing; needs data known not to be in training (like Forsaken)."""

    name = "test-needs-nonmember"
    needs = frozenset({"forget", "nonmember"})

    def _unlearn(self, model, data, device, gen):
        return {"nonmember": len(data.nonmember)}


def test_a_method_that_needs_a_training_hook_runs_through_the_contract(task, tmp_path):
    method = fk.get_method("test-undo-last-epoch")
    card = method.describe()
    assert card["training_hooks"] == ["gradient-sum"] and card["record_keys"] == ["gradients"]
    cache = CheckpointCache(tmp_path)
    original = fk.train_original(task, MODEL, RECIPE, hooks=method.training_hooks(), cache=cache)
    result = method.unlearn(original, task.forget_set, task.retain_set)
    assert result.details["parameters_moved"] == len(list(original.model.parameters()))
    assert result.details["train_size"] == len(task.train_set)
    assert not _same(result.model, original.model)
    # the artifacts come back from the cache, and the unlearned model with them
    again = fk.train_original(task, MODEL, RECIPE, hooks=method.training_hooks(), cache=cache)
    assert again.cached and again.artifacts.keys() == original.artifacts.keys()
    assert _same(method.unlearn(again, task.forget_set).model, result.model)
    # a bare network has no record: the refusal says how to get one
    with pytest.raises(
        ValueError,
        match=r"record lacks \['gradients'\]; train the original "
        r"with hooks=method.training_hooks\(\) \(\['gradient-sum",
    ):
        method.unlearn(original.model, task.forget_set)  # fmt: skip
    # trained without the hook: the record is there but lacks the artifact
    plain = fk.train_original(task, MODEL, RECIPE, cache=False)
    with pytest.raises(ValueError, match="record lacks"):
        method.unlearn(plain, task.forget_set)


@pytest.mark.parametrize("name", available_methods())
def test_every_registered_method_runs_through_the_three_calls(task, name):
    """Discovered from the class alone: hooks, inputs and record. A method registered later
    is covered the day it registers (the list is read when this module is collected)."""
    method = fk.get_method(name)
    original = fk.train_original(task, MODEL, RECIPE, hooks=method.training_hooks(), cache=False)
    before = copy.deepcopy(original.model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fk.methods.base.UtilityWarning)  # toy defaults may
        result = method.unlearn(original, task.forget_set, **_inputs(method, task), seed=1)
    assert _same(original.model, before) and result.model is not original.model
    assert result.seconds >= 0 and "utility" in result.details
    with torch.no_grad():
        out = result.model(task.test_set.x)
    assert out.shape == (len(task.test_set), MODEL.num_classes) and bool(torch.isfinite(out).all())


# --------------------------------------------------------------------------- retrain


@pytest.mark.parametrize("seed", [0, 3])
def test_retrain_through_the_method_equals_the_oracle_bit_for_bit(task, seed):
    original = fk.train_original(task, MODEL, RECIPE, cache=False)
    oracle = fk.retrain(task, MODEL, RECIPE, seeds=(seed,), cache=False)[0]
    method = fk.get_method("retrain")
    from_record = method.unlearn(original, task.forget_set, task.retain_set, seed=seed)
    assert _same(from_record.model, oracle.model)
    assert from_record.details["train_config"] == RECIPE
    assert from_record.details["initialised"] == "build_model"
    explicit = fk.get_method("retrain", train_config=RECIPE, model_config=MODEL)
    bare = explicit.unlearn(original.model, task.forget_set, task.retain_set, seed=seed)
    assert _same(bare.model, oracle.model)


def test_retrain_refuses_to_guess_a_recipe(task):
    original = fk.train_original(task, MODEL, RECIPE, cache=False)
    with pytest.raises(
        ValueError,
        match=r"retrain: no training recipe .*pass the original's "
        r"TrainedModel.*train_config=TrainConfig",
    ):
        fk.get_method("retrain").unlearn(original.model, task.forget_set, task.retain_set)
    # a TrainConfig but no ModelConfig: the caller's network is re-initialised (documented)
    result = fk.get_method("retrain", train_config=RECIPE).unlearn(
        original.model, task.forget_set, task.retain_set
    )
    assert result.details["initialised"] == "reinitialize"
    assert float((result.model(task.forget_set.x).argmax(1) == 0).float().mean()) == 0.0
    with pytest.raises(TypeError, match=r"retrain: record\['train_config'\] must be a TrainConfig"):
        fk.get_method("retrain").unlearn(
            original.model, task.forget_set, task.retain_set, record={"train_config": {}}
        )
    with pytest.raises(TypeError, match="retrain: train_config must be a TrainConfig"):
        fk.get_method("retrain", train_config={"epochs": 3})
    wrong = fk.ModelConfig("mlp", (1, 6, 6), 3, {"hidden": 8})
    with pytest.raises(ValueError, match="does not describe the model to unlearn"):
        fk.get_method("retrain", model_config=wrong).unlearn(
            original, task.forget_set, task.retain_set
        )


# --------------------------------------------------------------------------- the adapter


def _loader(s: Samples):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(s.x, s.y), batch_size=32)


def test_the_adapter_refuses_at_wrap_time_and_names_the_input(task):
    with pytest.raises(
        ValueError, match="cannot feed test-needs-nonmember: test-needs-nonmember needs nonmember"
    ):
        as_neurips_unlearning(NeedsNonmember())  # fmt: skip
    with pytest.raises(
        ValueError, match=r"cannot feed test-undo-last-epoch: .*lacks \['gradients'"
    ):
        as_neurips_unlearning("test-undo-last-epoch")
    with pytest.raises(ValueError, match="cannot feed retrain: retrain: no training recipe"):
        as_neurips_unlearning("retrain")
    with pytest.raises(TypeError, match=r"pass an instance, e.g. Finetune\(\), or a registered"):
        as_neurips_unlearning(fk.methods.Finetune)
    with pytest.raises(ValueError, match="unknown method 'fisherr'"):
        as_neurips_unlearning("fisherr")
    with pytest.raises(TypeError, match="must be an UnlearningMethod or a registered name"):
        as_neurips_unlearning(42)


def test_the_adapter_feeds_extra_inputs_given_as_keywords(task):
    original = fk.train_original(task, MODEL, RECIPE, cache=False)
    loaders = [_loader(s) for s in (task.retain_set, task.forget_set, task.test_set)]
    unlearning = as_neurips_unlearning(NeedsNonmember(), nonmember=task.heldout_set)
    assert isinstance(unlearning(original.model, *loaders), nn.Module)
    scratch = as_neurips_unlearning("retrain", trained=original, seed=2)(original.model, *loaders)
    oracle = fk.retrain(task, MODEL, RECIPE, seeds=(2,), cache=False)[0]
    assert _same(scratch, oracle.model)
