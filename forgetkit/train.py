"""Seeded SGD training, the checkpoint cache around it, and the retrain-from-scratch oracle.

Two calls with the same model config, data, hyperparameters and seed give bit-identical
weights on the same machine and thread count. Training hooks let a method ask for what it
needs from training time (saved gradients for L-CODEC, mnemonic codes mixed into batches
for the mnemonic-code method) without a training loop of its own; to train in a loop of
one's own instead, :class:`TrainingRecorder` runs the same hooks there and returns the
record the method needs::

    rec = TrainingRecorder(method, epochs=3)
    for epoch in rec:                      # rec.before_epoch(epoch) for you
        for x, y in loader:
            x, y = rec.transform(x, y)     # the mnemonic codes enter here
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            rec.after_backward(model)      # L-CODEC's gradients are saved here
            opt.step()
    result = method.unlearn(model, forget, retain, record=rec.record())
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgetkit.cache import CheckpointCache, hash_payload, hash_tensors, state_mismatch
from forgetkit.data import Samples
from forgetkit.models import ModelConfig, build_model
from forgetkit.runtime import DeviceLike, Stopwatch, generator, resolve_device, seeded
from forgetkit.runtime import progress as progress_bar
from forgetkit.stream import as_source
from forgetkit.validation import check_labels, model_dtype, num_outputs, param, validate

TRAIN_CODE_VERSION = 1  # bump when a change to this module changes trained weights


@dataclass(frozen=True)
class TrainConfig:
    """SGD hyperparameters. ``l2_to_init`` makes weight decay pull toward the initial weights
    rather than zero, as Golatkar et al.'s training code does; ``bn_eval`` keeps batch-norm
    statistics frozen (their ``--disable-bn``).

    Parameters
    ----------
    epochs
        Passes over the training data.
    lr
        Learning rate (the peak rate for the cosine and one-cycle schedules).
    momentum
        SGD momentum.
    weight_decay
        L2 penalty coefficient.
    batch_size
        Samples per step.
    schedule
        Learning-rate schedule over the epochs.
    l2_to_init
        Decay toward the initial weights instead of toward zero.
    bn_eval
        Keep batch-norm layers in eval mode (statistics frozen) while training.
    """

    epochs: int = param(10, int, ge=0)
    lr: float = param(0.05, float, gt=0)
    momentum: float = param(0.9, float, ge=0, lt=1)
    weight_decay: float = param(5e-4, float, ge=0)
    batch_size: int = param(128, int, ge=1)
    schedule: Literal["constant", "cosine", "onecycle"] = param(
        "constant", str, choices=("constant", "cosine", "onecycle")
    )
    l2_to_init: bool = param(False, bool)
    bn_eval: bool = param(False, bool)

    def __post_init__(self) -> None:
        validate(self, "TrainConfig")


class TrainHook:
    """Extension point into the training loop; the default does nothing.

    ``fingerprint`` enters the cache key, ``transform`` may rewrite each batch,
    ``after_backward`` sees the model with its gradients before each update, and
    ``artifacts`` are stored with the checkpoint (and handed back by ``restore`` on a hit).
    A method that needs training-time artifacts returns its hooks from
    :meth:`~forgetkit.methods.UnlearningMethod.training_hooks`.
    """

    name = "hook"
    min_epochs = 1  # epochs a training run needs for the hook's artifacts to exist

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name}

    def transform(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return x, y

    def after_backward(self, model: nn.Module, epoch: int, n_epochs: int) -> None:
        """Called with gradients populated, before the optimiser step."""

    def artifacts(self) -> dict[str, Tensor]:
        return {}

    def restore(self, artifacts: dict[str, Tensor]) -> None:
        """Receive this hook's artifacts back from a cached checkpoint."""


class TrainingRecorder:
    """A method's training hooks, run inside a training loop of one's own.

    :func:`train_original` runs the hooks of ``method.training_hooks()`` in forgetkit's own
    loop; a model trained by one's own code gets the same record from this object, called
    at the same three points of each step (see the module docstring for the whole loop):

    * ``before_epoch()`` at the start of every epoch (iterating ``for epoch in rec``
      does it, with a progress bar),
    * ``x, y = rec.transform(x, y)`` on every batch before the forward pass (the
      mnemonic-code hook replaces inputs by its class codes here; every hook counts
      samples here),
    * ``rec.after_backward(model)`` after ``loss.backward()`` and before the optimiser
      step (L-CODEC's hook saves the gradients of the last two epochs here),

    then ``method.unlearn(model, ..., record=rec.record())``. The hooks' random draws come
    from one generator seeded with ``seed`` for the whole training, never from the global
    random state. Every epoch declared in ``epochs`` must run: L-CODEC's hook records the
    last two.

    Parameters
    ----------
    hooks
        An unlearning method (its ``training_hooks()`` are used) or a sequence of
        :class:`TrainHook` s.
    epochs
        How many epochs the loop runs (hooks that record the last epochs need it up front).
    seed
        Seed of the generator the hooks draw from (e.g. which inputs get a mnemonic code).
    train_size
        Number of training samples, for the record; default: the samples passed through
        :meth:`transform` in one epoch.
    """

    def __init__(
        self, hooks: Any, *, epochs: int, seed: int = 0, train_size: int | None = None
    ) -> None:
        if callable(getattr(hooks, "training_hooks", None)):
            hooks = hooks.training_hooks()
        if isinstance(hooks, TrainHook):
            hooks = (hooks,)
        if isinstance(hooks, str | bytes) or not isinstance(hooks, Sequence):
            raise TypeError(f"TrainingRecorder: hooks must be an unlearning method or a "
                            f"sequence of TrainHooks, got {type(hooks).__name__}")  # fmt: skip
        bad = [type(h).__name__ for h in hooks if not isinstance(h, TrainHook)]
        if bad:
            raise TypeError(f"TrainingRecorder: hooks must be TrainHooks, got {bad}")
        for value, name, low in ((epochs, "epochs", 1), (seed, "seed", 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"TrainingRecorder: {name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"TrainingRecorder: {name} must be >= {low}, got {value}")
        if train_size is not None and (
            isinstance(train_size, bool) or not isinstance(train_size, numbers.Integral)
            or train_size < 1
        ):  # fmt: skip
            raise ValueError(f"TrainingRecorder: train_size must be an int >= 1 or None, got "
                             f"{train_size!r}")  # fmt: skip
        short = [(h.name, h.min_epochs) for h in hooks if epochs < h.min_epochs]
        if short:
            raise ValueError(f"TrainingRecorder: the hook(s) {short} (name, epochs needed) record "
                             f"from more epochs than the {epochs} declared; train for at least "
                             f"{max(n for _, n in short)} epochs")  # fmt: skip
        self.hooks: tuple[TrainHook, ...] = tuple(hooks)
        self.epochs, self.seed, self.train_size = int(epochs), int(seed), train_size
        self.generator = generator(self.seed)
        self.epoch: int | None = None  # the epoch under way (0-based)
        self._samples = [0] * self.epochs  # passed through transform, per epoch
        self._batches = 0
        self._backwards = 0

    def __iter__(self) -> Iterator[int]:
        """The epochs ``0 .. epochs - 1``, each begun with :meth:`before_epoch`."""
        for epoch in progress_bar(range(self.epochs), desc="train (own loop)"):
            self.before_epoch(epoch)
            yield epoch

    def before_epoch(self, epoch: int | None = None) -> None:
        """Begin an epoch: the next one (``None``) or ``epoch``, counted from 0 and in order.

        Parameters
        ----------
        epoch
            The epoch beginning (0-based); None for the one after the last.
        """
        expected = 0 if self.epoch is None else self.epoch + 1
        if epoch is None:
            epoch = expected
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"TrainingRecorder.before_epoch: epoch must be an int, got {epoch!r}")
        if epoch != expected or epoch >= self.epochs:
            raise ValueError(
                f"TrainingRecorder.before_epoch: got epoch {epoch}, expected {expected} of "
                f"0..{self.epochs - 1} (epochs count from 0, one call per epoch, in order; "
                f"epochs={self.epochs} was declared)"
            )
        self.epoch = int(epoch)

    def _running(self, call: str) -> int:
        if self.epoch is None:
            raise RuntimeError(f"TrainingRecorder.{call}: call before_epoch() at the start of "
                               "each epoch first (or iterate: for epoch in recorder)")  # fmt: skip
        return self.epoch

    def transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Pass a training batch through every hook; train on what comes back.

        Parameters
        ----------
        x
            The batch's inputs, as the model takes them.
        y
            The batch's labels.
        """
        epoch = self._running("transform")
        for hook in self.hooks:
            x, y = hook.transform(x, y, self.generator)
        self._samples[epoch] += len(y)
        self._batches += 1
        return x, y

    def after_backward(self, model: nn.Module) -> None:
        """Show every hook the model with its gradients, before the optimiser step.

        Parameters
        ----------
        model
            The model being trained, right after ``loss.backward()``.
        """
        epoch = self._running("after_backward")
        for hook in self.hooks:
            hook.after_backward(model, epoch, self.epochs)
        self._backwards += 1

    def record(self) -> dict[str, Any]:
        """What the hooks recorded, by name, with ``train_size``: pass it to ``unlearn`` as
        ``record=``. Refused before the declared epochs have all run, or when
        :meth:`transform` and :meth:`after_backward` were not called once per step."""
        ran = 0 if self.epoch is None else self.epoch + 1
        if ran < self.epochs:
            raise RuntimeError(f"TrainingRecorder.record: {ran} of the {self.epochs} declared "
                               "epochs ran; the hooks record the last ones")  # fmt: skip
        if self._batches == 0 or self._batches != self._backwards:
            raise RuntimeError(
                f"TrainingRecorder.record: transform was called on {self._batches} batches "
                f"and after_backward after {self._backwards} backward passes; call both once "
                "per training step"
            )
        size = self.train_size if self.train_size is not None else self._samples[-1]
        if size == 0:
            raise RuntimeError("TrainingRecorder.record: no sample passed through transform in "
                               "the last epoch; call x, y = rec.transform(x, y) on every batch "
                               "of every epoch")  # fmt: skip
        return {**{k: v for h in self.hooks for k, v in h.artifacts().items()},
                "train_size": int(size)}  # fmt: skip


@dataclass
class TrainedModel:
    """A trained network with its per-epoch history and provenance.

    Parameters
    ----------
    model
        The trained network.
    history
        Per-epoch records: epoch, mean training loss, training accuracy.
    seconds
        Time the training took (for a cached model, the original training's time).
    key
        The checkpoint's content-addressed cache key.
    cached
        Whether it was loaded from the cache rather than trained now.
    artifacts
        What the training hooks recorded, by name (stored with the checkpoint).
    meta
        What the cache stores beside the weights: history, seconds, the cache key's
        payload, the torch version.
    model_config
        How the network was built.
    train_config
        How it was trained.
    train_size
        Number of training samples.
    seed
        The training seed.
    """

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    key: str
    cached: bool
    artifacts: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    model_config: ModelConfig | None = None
    train_config: TrainConfig | None = None
    train_size: int | None = None
    seed: int | None = None


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the duration of a block (restored afterwards)."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def l2_to_anchor(model: nn.Module, anchor: Sequence[Tensor], weight_decay: float) -> Tensor:
    """``weight_decay / 2 * ||w - anchor||^2``: Golatkar et al.'s weight decay toward the
    starting weights (used in training and in the relearn-time readout)."""
    pairs = zip(model.parameters(), anchor, strict=True)
    return 0.5 * weight_decay * sum((p - a).pow(2).sum() for p, a in pairs)


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig, steps: int):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(steps, 1))
    return None


def fit(
    model: nn.Module,
    data: Samples,
    config: TrainConfig,
    *,
    seed: int = 0,
    device: DeviceLike = None,
    hooks: Sequence[TrainHook] = (),
    progress: bool | None = None,
    desc: str = "train",
    loss_sign: float = 1.0,
) -> list[dict[str, float]]:
    """Train ``model`` in place with seeded mini-batch SGD; return per-epoch history.

    ``data`` is anything :meth:`~forgetkit.data.Samples.coerce` accepts (read with
    ``seed``, not the global random state); a map-style dataset or a loader over one is
    streamed batch by batch, never held whole (:func:`forgetkit.stream.as_source`).
    ``loss_sign=-1`` ascends the loss instead (gradient ascent, for the NegGrad baseline).
    ``progress`` shows a bar over the epochs (None: as
    :func:`forgetkit.runtime.progress_enabled` decides).
    """
    dev = resolve_device(device)
    model.to(dev)
    # A dataset or loader is streamed batch by batch (forgetkit.stream), in memory otherwise;
    # inputs are computed in the model's dtype.
    data = as_source(data, "training data", seed=seed).to(dev).cast(model_dtype(model))
    outputs = num_outputs(model, data.head(2).x, desc, "training")
    if isinstance(data, Samples):
        check_labels(data.y, outputs, desc, "training")
    else:  # checked as each batch is read
        data = data.expect_classes(outputs, desc)
    steps_per_epoch = -(-len(data) // config.batch_size)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=0.0 if config.l2_to_init else config.weight_decay,
    )  # fmt: skip
    sched = _scheduler(opt, config, config.epochs * steps_per_epoch)
    anchor = [p.detach().clone() for p in model.parameters()] if config.l2_to_init else None
    shuffle_gen = generator(seed + 7919)  # a stream of its own, independent of the init seed
    # The hooks draw from a stream of their own too (seed + 104729), as a user's loop does
    # through the same TrainingRecorder.
    recorder = TrainingRecorder(hooks, epochs=max(config.epochs, 1), seed=seed + 104729)
    history: list[dict[str, float]] = []
    epochs = progress_bar(range(config.epochs), desc=desc, show=progress)
    with seeded(seed, dev), deterministic():
        for epoch in epochs:
            recorder.before_epoch(epoch)
            model.train()
            if config.bn_eval:
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
            total, correct, loss_sum = 0, 0, 0.0
            for x, y in data.batches(config.batch_size, shuffle=True, generator=shuffle_gen):
                x, y = recorder.transform(x, y)
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = F.cross_entropy(out, y)
                objective = loss_sign * loss
                if anchor is not None:
                    objective = objective + l2_to_anchor(model, anchor, config.weight_decay)
                objective.backward()
                recorder.after_backward(model)
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((out.argmax(1) == y).sum())
                total += len(y)
            if not torch.isfinite(torch.tensor(loss_sum)):
                raise FloatingPointError(
                    f"{desc}: the loss became NaN or infinite in epoch {epoch + 1}; "
                    f"lower the learning rate (lr={config.lr})"
                )
            record = {"epoch": epoch + 1, "loss": loss_sum / total, "accuracy": correct / total}
            history.append(record)
            epochs.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
    model.eval()
    return history


def train_model(
    model_config: ModelConfig,
    data: Samples,
    config: TrainConfig,
    *,
    seed: int = 0,
    device: DeviceLike = None,
    cache: CheckpointCache | bool = True,
    hooks: Sequence[TrainHook] = (),
    init_from: nn.Module | None = None,
    progress: bool | None = None,
    desc: str = "train",
    stream: str = "train",
) -> TrainedModel:
    """Build a model from ``model_config`` (seeded) and train it on ``data``, through the cache.

    ``init_from`` starts from another model's weights instead (fine-tuning a pretrained net);
    its weights enter the cache key. ``stream`` names an independent family of seeds:
    the original model and the oracle use different streams, so that oracle seed 0 does not
    share its initial weights (and batch order) with an original trained at seed 0.

    Parameters
    ----------
    model_config
        The network to build.
    data
        Training samples.
    config
        SGD recipe.
    seed
        Seed of the initial weights and the batch order (within ``stream``).
    device
        Where to train (None or ``"auto"``: CUDA when present).
    cache
        A cache to read and write, True for the default one, False for none.
    hooks
        Training hooks whose artifacts are recorded with the model.
    init_from
        A network whose weights to start from instead of a fresh initialisation.
    progress
        Show a progress bar over the epochs (None: as
        :func:`forgetkit.runtime.progress_enabled` decides; ``set_progress(False)`` or
        ``FORGETKIT_PROGRESS=0`` silences it whatever is passed here).
    desc
        The progress bar's label.
    stream
        Name of the seed family (original and oracle differ).
    """
    dev = resolve_device(device)
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"{desc}: model_config must be a ModelConfig, got {model_config!r}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"{desc}: config must be a TrainConfig, got {config!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{desc}: seed must be an int, got {seed!r} ({type(seed).__name__})")
    run_seed = derive_seed(seed, stream)
    data = Samples.coerce(data, "training data")
    if tuple(data.x.shape[1:]) != model_config.in_shape:
        raise ValueError(f"{desc}: training inputs have shape {tuple(data.x.shape[1:])} but "
                         f"the model config takes {model_config.in_shape}")  # fmt: skip
    check_labels(data.y, model_config.num_classes, desc, "training")
    store = CheckpointCache() if cache is True else (cache or None)
    payload = {
        "model": model_config.as_dict(),
        "data": hash_tensors(data.x, data.y),
        "train": asdict(config),
        "seed": seed,
        "stream": stream,
        "device": dev.type,
        "hooks": [h.fingerprint() for h in hooks],
        "init": None if init_from is None else hash_tensors(*init_from.state_dict().values()),
        "version": TRAIN_CODE_VERSION,
    }
    key = hash_payload(payload)
    model = build_model(model_config, seed=run_seed)
    if init_from is not None:
        model.load_state_dict(init_from.state_dict())
    hit = store.load(key) if store is not None else None
    if hit is not None:
        tensors, meta = hit
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        if (problem := state_mismatch(model, state)) is not None:
            store.discard(key, problem)  # a verified entry that does not fit: a miss
            hit = None
    if hit is not None:
        model.load_state_dict(state)
        artifacts = {k[9:]: v for k, v in tensors.items() if k.startswith("artifact.")}
        for hook in hooks:
            hook.restore(artifacts)
        model.to(dev).eval()
        return TrainedModel(model, meta.get("history", []), meta.get("seconds", 0.0), key, True,
                            artifacts, meta, model_config, config, len(data), seed)  # fmt: skip
    with Stopwatch(dev) as watch:
        history = fit(model, data, config, seed=run_seed, device=dev, hooks=hooks,
                      progress=progress, desc=desc)  # fmt: skip
    artifacts = {k: v for h in hooks for k, v in h.artifacts().items()}
    meta = {"history": history, "seconds": watch.seconds, "payload": payload,
            "torch": torch.__version__}  # fmt: skip
    if store is not None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"artifact.{k}": v for k, v in artifacts.items()})
        store.save(key, tensors, meta)
    return TrainedModel(model, history, watch.seconds, key, False, artifacts, meta,
                        model_config, config, len(data), seed)  # fmt: skip


def train_original(task: Any, model_config: ModelConfig, config: TrainConfig, **kwargs: Any):
    """The model to unlearn from: trained on forget and retain sets together.

    Parameters
    ----------
    task
        The forgetting task; trains on its forget and retain sets.
    model_config
        The network to build.
    config
        SGD recipe.
    **kwargs
        Passed to :func:`train_model` (``seed``, ``device``, ``hooks``, ...).
    """
    kwargs.setdefault("desc", "original")
    kwargs.setdefault("stream", "original")
    return train_model(model_config, task.train_set, config, **kwargs)


def retrain(
    task: Any,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    **kwargs: Any,
) -> list[TrainedModel]:
    """The oracle: fresh models trained on the retain set only, one per seed.

    Each is built anew from ``model_config`` (every submodule freshly initialised), so no
    trained weight survives; the spread over seeds is the yardstick for every metric.

    Parameters
    ----------
    task
        The forgetting task; trains on its retain set.
    model_config
        The network to build.
    config
        SGD recipe (the original's, for a fair yardstick).
    seeds
        One oracle model per seed.
    **kwargs
        Passed to :func:`train_model` (``device``, ``cache``, ...).
    """
    seeds = tuple(seeds)
    if len(seeds) == 0:
        raise ValueError("retrain needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"retrain: seeds must be distinct, got {seeds}: a repeated seed gives "
                         f"an identical oracle and a spread of zero")  # fmt: skip
    kwargs.setdefault("desc", "retrain")
    kwargs.setdefault("stream", "retrain")
    retain = task.retain_set
    bar = progress_bar(seeds, desc=f"{kwargs['desc']} ({len(seeds)} seeds)",
                       show=kwargs.get("progress"))  # fmt: skip
    return [train_model(model_config, retain, config, seed=s, **kwargs) for s in bar]


def derive_seed(seed: int, stream: str) -> int:
    """A seed for ``stream`` that is independent of other streams' seeds of the same number."""
    if stream == "train":
        return int(seed)
    return int(hash_payload({"seed": int(seed), "stream": stream})[:8], 16)
