"""SCRUB (Kurmanji, Triantafillou, Hayes and Triantafillou, NeurIPS 2023).

SCRUB casts unlearning as a teacher-student game. The teacher is a frozen copy of the
original model; the student starts as the original and is trained to *disobey* the teacher
on the forget set while *obeying* it on the retain set. With the distillation distance

    d(x) = T**2 * KL( softmax(z_teacher(x) / T) || softmax(z_student(x) / T) )

(summed over classes, averaged over the batch), each epoch runs, in this order:

* for the first ``msteps`` epochs only, a *max-step* pass over the forget set: one
  optimiser step per batch on ``-d(x)`` (push the student away from the teacher);
* in every epoch, a *min-step* pass over the retain set: one step per batch on
  ``gamma * CE(z_student, y) + alpha * d(x)`` (stay close to the teacher, keep accuracy).

So the phases do not alternate by epoch: each of the first ``msteps`` epochs holds a max
pass followed by a min pass, and the later epochs hold min passes only (the notebook's
``if epoch <= args.msteps:`` before the min pass; ``small_scale_unlearning.ipynb`` at
meghdadk/SCRUB @ 98ffb11, lines 506-520 of the notebook's JSON).

This follows the official code (meghdadk/SCRUB: ``thirdparty/repdistiller/helper/loops.py``,
``train_distill``; ``distiller_zoo/KD.py``, ``DistillKL``; the "SCRUB Forgetting" cells of
``small_scale_unlearning.ipynb``): one optimiser serves both phases (Adam's moments are
shared between ascent and descent), the student is in training mode in both (batch-norm
statistics are updated on the forget set too, dropout is active), and the learning rate is
``lr * lr_decay_rate ** (number of lr_decay_epochs below the current epoch)``, epochs
counted from 1. The rewinding variant SCRUB+R (pick the epoch whose forget error matches a
validation reference) is not implemented.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgetkit.data import Samples
from forgetkit.methods.base import ForgetData, UnlearningMethod, register
from forgetkit.runtime import progress, seeded
from forgetkit.stream import Source
from forgetkit.validation import param, validate

OPTIMIZERS = ("adam", "sgd")

__all__ = ["OPTIMIZERS", "SCRUB", "SCRUBHyperparameters", "distill_kl"]


def distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T**2 * KL(teacher || student)`` at temperature ``T``, summed over classes and
    averaged over the batch (the official ``DistillKL``)."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * temperature**2


def teach(teacher: nn.Module, samples: Samples, batch_size: int) -> Tensor:
    """The frozen teacher's logits on every sample, in ``batch_size`` batches, in order."""
    with torch.no_grad():
        return torch.cat([teacher(x) for x, _ in samples.batches(batch_size)])


@dataclass(frozen=True)
class SCRUBHyperparameters:
    """SCRUB's knobs; defaults from the official ``small_scale_unlearning.ipynb`` (the
    "SCRUB Forgetting" cell, and the cell setting the loaders' batch sizes).

    Attributes:
        optimizer: ``"adam"`` (the notebook's ``args.optim``) or ``"sgd"`` (with
            ``momentum``; ``large_scale_unlearning.ipynb`` and ``MIA_experiments.ipynb``).
        lr: ``args.sgda_learning_rate = 0.0005``.
        weight_decay: ``args.sgda_weight_decay = 0.1`` (the notebook's comment keeps 5e-4,
            the large-scale value; with Adam it is an L2 term added to the gradient).
        momentum: ``args.sgda_momentum = 0.9``, used by SGD only.
        epochs: ``args.sgda_epochs = 10``; a min-step pass over the retain set each epoch.
        msteps: ``args.msteps = 3``: epochs 1..msteps start with a max-step pass.
        kd_T: ``args.kd_T = 2``, the distillation temperature.
        alpha: ``args.alpha = 0.5``, weight of the KL term in the min-steps.
        gamma: ``args.gamma = 1``, weight of the cross-entropy in the min-steps.
        lr_decay_epochs: ``args.lr_decay_epochs = [5, 8, 9]``.
        lr_decay_rate: ``args.lr_decay_rate = 0.1``.
        retain_batch_size: ``args.retain_bs = 32``.
        forget_batch_size: ``args.forget_bs = 64``.
        shuffle: draw each pass's batch order from the seed (the notebook's loaders
            shuffle); ``False`` keeps the given order.

    The large-scale notebook (CIFAR-10) uses SGD, lr 5e-4, weight decay 5e-4, 3 epochs,
    msteps 2, ``kd_T`` 4, alpha 0.001, gamma 0.99, decay at [3, 5, 9], batch sizes 256/512.
    """

    optimizer: str = param("adam", str, choices=OPTIMIZERS)
    lr: float = param(5e-4, float, gt=0)
    weight_decay: float = param(0.1, float, ge=0)
    momentum: float = param(0.9, float, ge=0, lt=1)
    epochs: int = param(10, int, ge=1)
    msteps: int = param(3, int, ge=0)
    kd_T: float = param(2.0, float, gt=0)
    alpha: float = param(0.5, float, ge=0)
    gamma: float = param(1.0, float, ge=0)
    lr_decay_epochs: tuple[int, ...] = param((5, 8, 9), (tuple, list))
    lr_decay_rate: float = param(0.1, float, gt=0)
    retain_batch_size: int = param(32, int, ge=1)
    forget_batch_size: int = param(64, int, ge=1)
    shuffle: bool = param(True, bool)

    def __post_init__(self) -> None:
        validate(self, "scrub")
        epochs = self.lr_decay_epochs
        if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epochs):
            raise ValueError(f"scrub: lr_decay_epochs must be a sequence of integers >= 0, "
                             f"got {epochs!r}")  # fmt: skip
        object.__setattr__(self, "lr_decay_epochs", tuple(epochs))  # a TOML list, frozen

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 1), as the official
        ``adjust_learning_rate``."""
        steps = sum(epoch > e for e in self.lr_decay_epochs)
        return self.lr * self.lr_decay_rate**steps


@register
class SCRUB(UnlearningMethod):
    """SCRUB: teacher-student unlearning; each of the first ``msteps`` epochs runs a
    max-step pass on the forget set, then a min-step pass on the retain set, and the later
    epochs run min-step passes only (module docstring).

    Needs the forget and the retain set. Seeded: batch orders come from a CPU generator
    seeded by ``seed`` and dropout from the seeded global state, so the same seed gives the
    same weights. The teacher being frozen and in eval mode, its logits on an in-memory set
    are computed once, not at every pass (equal to per-batch ones up to float rounding of
    the different batching); a streamed set's batches meet the teacher as they are read.
    Details returned: ``history`` (per epoch: the learning rate, the mean
    forget-set distance of the max-steps, if any, and the mean min-step loss), ``forget_kl``
    (the forget set's distance to the teacher after unlearning; before, it is 0 by
    construction, the student being a copy of the teacher, so no pass computes it) and
    ``steps``.
    """

    name = "scrub"
    needs = frozenset({"forget", "retain"})
    paper = "kurmanji2023unbounded"
    Hyperparameters = SCRUBHyperparameters

    def _unlearn(
        self, model: nn.Module, data: ForgetData, device: torch.device, gen: torch.Generator
    ) -> dict[str, Any]:
        hp: SCRUBHyperparameters = self.hparams
        assert data.retain is not None
        forget, retain = data.forget, data.retain
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student = model
        params = [p for p in student.parameters() if p.requires_grad]
        # foreach: one call per operation over all tensors instead of one per tensor (the
        # CPU default); the same arithmetic, element by element, as the per-tensor loop.
        if hp.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=hp.lr, foreach=True,
                                                          weight_decay=hp.weight_decay)  # fmt: skip
        else:
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, foreach=True,
                                  weight_decay=hp.weight_decay)  # fmt: skip

        order = torch.Generator().manual_seed(data.seed)  # CPU: the same order on any device
        # The teacher is frozen and in eval mode, so its logits are a fixed function of the
        # input: an in-memory set's are computed once, not again at every pass (one teacher
        # forward pass per step saved). Batched differently, they differ from per-batch
        # ones by float rounding only. A streamed set may draw random transforms per read,
        # so its batches meet the teacher as they come.
        known = {name: teach(teacher, s, size) for name, s, size in
                 (("forget", forget, hp.forget_batch_size),
                  ("retain", retain, hp.retain_batch_size)) if isinstance(s, Samples)}  # fmt: skip

        def taught(name: str, source: Source, batch_size: int, shuffle: bool
                   ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:  # fmt: skip
            """A pass's batches with the teacher's logits, in the order ``batches`` draws."""
            logits = known.get(name)
            if logits is None or not isinstance(source, Samples):
                for x, y in source.batches(batch_size, shuffle=shuffle, generator=order):
                    with torch.no_grad():  # not around the yield: the caller needs gradients
                        z_t = teacher(x)
                    yield x, y, z_t
                return
            for idx in source.batch_indices(batch_size, shuffle=shuffle, generator=order):
                yield source.x[idx], source.y[idx], logits[idx]

        def forget_kl() -> float:
            was = student.training
            student.eval()
            total = 0.0
            with torch.no_grad():
                for x, _, z_t in taught("forget", forget, 1024, False):
                    total += float(distill_kl(student(x), z_t, hp.kd_T)) * len(x)
            student.train(was)
            return total / len(forget)

        history: list[dict[str, float]] = []
        steps = 0
        with seeded(data.seed, device):
            for epoch in progress(range(1, hp.epochs + 1), desc="scrub epochs"):
                lr = hp.lr_at(epoch)
                for group in opt.param_groups:
                    group["lr"] = lr
                row: dict[str, float] = {"epoch": epoch, "lr": lr}
                student.train()
                if epoch <= hp.msteps:
                    total = 0.0
                    for x, _, z_t in taught("forget", forget, hp.forget_batch_size, hp.shuffle):
                        d = distill_kl(student(x), z_t, hp.kd_T)
                        opt.zero_grad(set_to_none=True)
                        (-d).backward()
                        opt.step()
                        total += float(d.detach()) * len(x)
                        steps += 1
                    row["max_kl"] = total / len(forget)
                total = 0.0
                for x, y, z_t in taught("retain", retain, hp.retain_batch_size, hp.shuffle):
                    z_s = student(x)
                    loss = hp.gamma * F.cross_entropy(z_s, y) + hp.alpha * distill_kl(
                        z_s, z_t, hp.kd_T
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(x)
                    steps += 1
                row["min_loss"] = total / len(retain)
                history.append(row)
        return {"history": history, "forget_kl": {"after": forget_kl()},
                "steps": steps}  # fmt: skip
