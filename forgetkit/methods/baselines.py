"""The three baselines every method is compared with: retrain, fine-tune and gradient ascent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.models import reinitialize
from forgetkit.runtime import generator, seeded
from forgetkit.train import TrainConfig, fit


@dataclass(frozen=True)
class SGDHyperparameters:
    """Plain SGD settings shared by the baselines. ``l2_to_init`` and ``bn_eval`` reproduce
    Golatkar et al.'s fine-tuning (weight decay toward the starting weights, batch-norm
    statistics frozen); see :class:`~forgetkit.train.TrainConfig`."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 128
    l2_to_init: bool = False
    bn_eval: bool = False

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                           weight_decay=self.weight_decay, batch_size=self.batch_size,
                           l2_to_init=self.l2_to_init, bn_eval=self.bn_eval)  # fmt: skip


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
    forget-set accuracy falls to ``stop_accuracy``, checked at the end of every epoch and,
    with ``check_every > 0``, also every ``check_every`` steps (ascent on a whole class can
    collapse a model within one epoch). The defaults are ours, chosen to be gentle; the
    chapters tune them per experiment.
    """

    name = "neggrad"
    needs = frozenset({"forget"})

    @dataclass(frozen=True)
    class Hyperparameters(SGDHyperparameters):
        epochs: int = 5
        lr: float = 1e-3
        batch_size: int = 64
        stop_accuracy: float = 0.0
        check_every: int = 0

        def __post_init__(self) -> None:
            if self.check_every < 0:
                raise ValueError(f"neggrad: check_every must be >= 0, got {self.check_every}")

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
            for epoch in range(hp.epochs):
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
