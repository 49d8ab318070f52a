"""The three baselines every method is compared with: retrain, fine-tune and gradient ascent."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.models import ModelConfig, build_model, reinitialize
from forgetkit.runtime import generator, progress, seeded
from forgetkit.train import TrainConfig, derive_seed, fit
from forgetkit.validation import param, spec, validate


@dataclass(frozen=True)
class SGDHyperparameters:
    """Plain SGD settings shared by the baselines. ``l2_to_init`` and ``bn_eval`` reproduce
    Golatkar et al.'s fine-tuning (weight decay toward the starting weights, batch-norm
    statistics frozen); see :class:`~forgetkit.train.TrainConfig`.

    Parameters
    ----------
    epochs
        Passes over the data.
    lr
        Learning rate.
    momentum
        SGD momentum.
    weight_decay
        L2 penalty coefficient.
    batch_size
        Samples per step.
    l2_to_init
        Decay toward the starting (original) weights instead of toward zero.
    bn_eval
        Keep batch-norm statistics frozen while training.
    """

    epochs: int = param(10, int, ge=0)
    lr: float = param(0.01, float, gt=0)
    momentum: float = param(0.0, float, ge=0, lt=1)
    weight_decay: float = param(0.0, float, ge=0)
    batch_size: int = param(128, int, ge=1)
    l2_to_init: bool = param(False, bool)
    bn_eval: bool = param(False, bool)

    def __post_init__(self) -> None:
        validate(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                           weight_decay=self.weight_decay, batch_size=self.batch_size,
                           l2_to_init=self.l2_to_init, bn_eval=self.bn_eval)  # fmt: skip


def _seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))


@dataclass(frozen=True)
class RecipeHyperparameters:
    """Retrain's only knobs: the recipe to retrain with, when the record does not carry it
    (both are filled from the original's :class:`~forgetkit.train.TrainedModel`).

    Parameters
    ----------
    train_config
        The TrainConfig to retrain with (None: the record's).
    model_config
        The ModelConfig to build the network from (None: the record's, else a reset copy of the
        model).
    """

    train_config: TrainConfig | None = field(
        default=None, metadata=spec(TrainConfig, optional=True)
    )
    model_config: ModelConfig | None = field(
        default=None, metadata=spec(ModelConfig, optional=True)
    )

    def __post_init__(self) -> None:
        validate(self)


@register
class Retrain(UnlearningMethod):
    """Retrain from scratch on the retain set: exact unlearning, and the yardstick.

    It retrains with the original's recipe and never guesses one: the ``TrainConfig``
    (and the ``ModelConfig``) come from the ``train_config`` / ``model_config``
    hyperparameters when given, else from the record, which passing the original's
    :class:`~forgetkit.train.TrainedModel` to ``unlearn`` fills. Without a ``TrainConfig``
    it refuses to run. With a ``ModelConfig`` the network is built exactly as
    :func:`~forgetkit.train.retrain` builds its oracle (same derived seed of the ``"retrain"``
    stream), so ``unlearn(original, forget, retain, seed=s)`` equals
    ``fk.retrain(task, model_config, train_config, seeds=(s,))[0]`` bit for bit (on the same
    device and thread count). Without one (a bare network and only a ``train_config``) every
    submodule of the caller's network is re-initialised in place
    (:func:`forgetkit.models.reinitialize`), which gives a fresh model of the same
    architecture but not the oracle's exact initial weights.
    """

    name = "retrain"
    needs = frozenset({"forget", "retain"})
    uses = frozenset({"record"})
    Hyperparameters = RecipeHyperparameters

    def recipe(self, record: Mapping[str, Any] | None) -> tuple[TrainConfig | None, Any]:
        """The ``(TrainConfig, ModelConfig)`` to retrain with: hyperparameters first, then
        the record."""
        record = record or {}
        train = self.hparams.train_config or record.get("train_config")
        model = self.hparams.model_config or record.get("model_config")
        return train, model

    def check_inputs(self, given: Collection[str], record: Mapping[str, Any] | None) -> None:
        super().check_inputs(given, record)
        train, model = self.recipe(record)
        if train is not None and not isinstance(train, TrainConfig):
            raise TypeError(f"retrain: record['train_config'] must be a TrainConfig, got "
                            f"{type(train).__name__}")  # fmt: skip
        if train is None:
            raise ValueError(
                "retrain: no training recipe (TrainConfig) to retrain with, and it will not "
                "guess one: pass the original's TrainedModel as the model (its train_config is "
                "used), or record={'train_config': TrainConfig(...)}, or "
                "get_method('retrain', train_config=TrainConfig(...))"
            )
        if model is not None and not isinstance(model, ModelConfig):
            raise TypeError(f"retrain: record['model_config'] must be a ModelConfig, got "
                            f"{type(model).__name__}")  # fmt: skip

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        train, arch = self.recipe(data.record)
        assert train is not None  # check_inputs refused otherwise
        seed = derive_seed(data.seed, "retrain")  # the oracle's stream, as fk.retrain
        if arch is not None:
            fresh = build_model(arch, seed=seed)
            try:
                model.load_state_dict(fresh.state_dict())
            except RuntimeError as err:
                first = str(err).splitlines()[0]
                raise ValueError(f"retrain: the model_config {arch} does not describe the "
                                 f"model to unlearn: {first}") from None  # fmt: skip
        else:
            reinitialize(model, seed=seed)
        history = fit(model, data.retain, train, seed=seed, device=device, desc="retrain")
        return {"history": history, "train_config": train, "model_config": arch,
                "initialised": "build_model" if arch is not None else "reinitialize"}  # fmt: skip


@register
class Finetune(UnlearningMethod):
    """Keep training on the retain set only, hoping the forget set fades (catastrophic
    forgetting). Defaults: Golatkar et al.'s baseline, 10 epochs of SGD at lr 0.01.

    Its budget is deliberately *not* tied to the original's recipe: the paper's baseline is
    a fixed, cheap amount of extra training (a fraction of a retrain), and tying the epochs
    to the original's would turn it into a retrain that merely starts from trained weights.
    Pass ``epochs`` (and ``lr`` ...) explicitly to match an experiment's own budget.
    """

    name = "finetune"
    needs = frozenset({"forget", "retain"})
    paper = "golatkar2020eternal"
    Hyperparameters = SGDHyperparameters

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        history = fit(model, data.retain, self.hparams.train_config(), seed=_seed(gen),
                      device=device, desc="finetune")  # fmt: skip
        return {"history": history}


@register
class NegGrad(UnlearningMethod):
    """Gradient ascent on the forget set ("NegGrad"): push its loss up directly.

    Unbounded by design, so it is stopped early: after ``epochs`` passes, or as soon as the
    forget-set accuracy falls to ``stop_accuracy``, checked at the end of every epoch and,
    with ``check_every > 0``, also every ``check_every`` steps (ascent on a whole class can
    collapse a model within one epoch). The defaults are ours, chosen to be gentle; the
    chapters tune them per experiment.
    """

    name = "neggrad"
    needs = frozenset({"forget"})

    @dataclass(frozen=True)
    class Hyperparameters(SGDHyperparameters):
        """NegGrad's knobs: gentler SGD defaults than fine-tuning, and the early stop.

        Parameters
        ----------
        epochs
            Most passes of gradient ascent over the forget set.
        lr
            Learning rate.
        momentum
            SGD momentum.
        weight_decay
            L2 penalty coefficient.
        batch_size
            Forget samples per step.
        l2_to_init
            Decay toward the original weights instead of toward zero.
        bn_eval
            Keep batch-norm statistics frozen.
        stop_accuracy
            Stop once the forget-set accuracy is at or below this.
        check_every
            Also check that accuracy every this many steps (0: at epoch ends only).
        """

        epochs: int = 5
        lr: float = 1e-3
        batch_size: int = 64
        stop_accuracy: float = param(0.0, float, ge=0, le=1)
        check_every: int = param(0, int, ge=0)

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        hp = self.hparams
        forget = data.forget

        def forget_accuracy() -> float:
            model.eval()
            with torch.no_grad():
                acc = float((model(forget.x).argmax(1) == forget.y).float().mean())
            model.train()
            return acc

        seed = _seed(gen)
        opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                              weight_decay=hp.weight_decay)  # fmt: skip
        shuffle = generator(seed)
        history: list[dict[str, float]] = []
        steps, stopped = 0, False
        model.train()
        with seeded(seed, device):
            for epoch in progress(range(hp.epochs), desc="neggrad"):
                loss_sum = 0.0
                for x, y in forget.batches(hp.batch_size, shuffle=True, generator=shuffle):
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(x), y)
                    (-loss).backward()
                    opt.step()
                    steps += 1
                    loss_sum += float(loss.detach()) * len(y)
                    if hp.check_every and steps % hp.check_every == 0:
                        stopped = forget_accuracy() <= hp.stop_accuracy
                        if stopped:
                            break
                accuracy = forget_accuracy()
                history.append({"epoch": epoch + 1, "loss": loss_sum / len(forget),
                                "forget_accuracy": accuracy})  # fmt: skip
                if stopped or accuracy <= hp.stop_accuracy:
                    break
        return {"history": history, "epochs_run": len(history), "steps": steps}
