"""The three baselines every method is compared with: retrain, fine-tune and gradient ascent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.models import reinitialize
from forgetkit.train import TrainConfig, fit


@dataclass(frozen=True)
class SGDHyperparameters:
    """Plain SGD settings shared by the baselines."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 128

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                           weight_decay=self.weight_decay, batch_size=self.batch_size)  # fmt: skip


def _seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))


@register
class Retrain(UnlearningMethod):
    """Retrain from scratch on the retain set: exact unlearning, and the yardstick.

    Every submodule of the caller's architecture is re-initialised
    (:func:`forgetkit.models.reinitialize`), then trained with the given SGD settings, which
    should match the original model's training for a fair oracle.
    """

    name = "retrain"
    needs = frozenset({"forget", "retain"})

    @dataclass(frozen=True)
    class Hyperparameters(SGDHyperparameters):
        lr: float = 0.05
        momentum: float = 0.9
        weight_decay: float = 5e-4

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        seed = _seed(gen)
        reinitialize(model, seed=seed)
        history = fit(model, data.retain, self.hparams.train_config(), seed=seed, device=device,
                      desc="retrain")  # fmt: skip
        return {"history": history}


@register
class Finetune(UnlearningMethod):
    """Keep training on the retain set only, hoping the forget set fades (catastrophic
    forgetting). Defaults: Golatkar et al.'s baseline, 10 epochs of SGD at lr 0.01."""

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
    forget-set accuracy falls to ``stop_accuracy``. The defaults are ours, chosen to be
    gentle; the chapters tune them per experiment.
    """

    name = "neggrad"
    needs = frozenset({"forget"})

    @dataclass(frozen=True)
    class Hyperparameters(SGDHyperparameters):
        epochs: int = 5
        lr: float = 1e-3
        batch_size: int = 64
        stop_accuracy: float = 0.0

    def _unlearn(self, model: nn.Module, data: ForgetData, device, gen) -> dict[str, Any]:
        one_epoch = TrainConfig(**{**self.hparams.train_config().__dict__, "epochs": 1})
        history: list[dict[str, float]] = []
        for epoch in range(self.hparams.epochs):
            record = fit(model, data.forget, one_epoch, seed=_seed(gen), device=device,
                         loss_sign=-1.0, desc="neggrad")[0]  # fmt: skip
            history.append({**record, "epoch": epoch + 1})
            with torch.no_grad():
                acc = float((model(data.forget.x).argmax(1) == data.forget.y).float().mean())
            if acc <= self.hparams.stop_accuracy:
                break
        return {"history": history, "epochs_run": len(history)}
