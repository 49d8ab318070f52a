"""One table for every comparison: each method beside the retrained oracle, metric by metric.

:func:`evaluate` returns a long ("tidy") DataFrame with the columns ``method, seed, split,
metric, value``: one row per number, so chapters can filter, group and plot it directly.
The oracle (models retrained without the forget set) is always in it as method
``"retrain"``: no number in forgetting is meaningful without the oracle's value beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from forgetkit.cache import hash_tensors
from forgetkit.data import Samples
from forgetkit.methods.base import UnlearnResult
from forgetkit.metrics.attacks import (
    mia_entropy_lr_from_entropy,
    mia_entropy_svc_from_entropy,
    mia_loss_cv_from_losses,
)
from forgetkit.metrics.divergence import js_divergence, l1_distance
from forgetkit.metrics.predictions import accuracy_from_logits, entropy, evaluating, predict
from forgetkit.metrics.tug_of_war import tow as tow_score
from forgetkit.runtime import DeviceLike, progress
from forgetkit.scenarios import ForgetTask
from forgetkit.stream import as_source
from forgetkit.train import TrainedModel

COLUMNS = ("method", "seed", "split", "metric", "value")
ORACLE = "retrain"
DEFAULT_METRICS = ("accuracy", "mia_loss_cv", "mia_entropy_svc", "mia_entropy_lr",
                   "activation_distance", "js", "tow")  # fmt: skip
SVC_MAX_SAMPLES = 2000  # per class, for the O(n^2) SVM attack
VERSUS_ORACLE_SPLITS = ("forget", "test")

METRIC_CARDS: dict[str, dict[str, str]] = {
    "accuracy": {
        "definition": "Fraction of samples whose arg-max prediction is the label, on the "
        "forget, retain and test sets (and, for class or identity forgetting, on the test "
        "samples of the forgotten classes, 'test_forgotten', and of the others, 'test_kept').",
        "direction": "Closer to the oracle is better on every split: forget accuracy should "
        "fall to the oracle's (not to 0: the oracle generalises to unseen samples of kept "
        "classes); retain and test accuracy should stay at the oracle's.",
        "source": "Standard; reported as error by Golatkar et al. (CVPR 2020, ECCV 2020).",
    },
    "mia_loss_cv": {
        "definition": "Cross-validated accuracy of a logistic regression on per-sample loss, "
        "telling the forget set (members) from held-out samples (non-members), classes "
        "balanced; 10 stratified shuffle splits.",
        "direction": "Closer to the oracle is better; 0.5 = indistinguishable, and a higher "
        "score means distinguishable in either direction. In random forgetting the oracle "
        "is near 0.5 and a higher score means the forget set still looks trained on; in "
        "class or identity forgetting the oracle is near 1.0 (never-seen classes have high "
        "loss) and the original near 0.5, so there a score near 0.5 means not forgotten.",
        "source": "NeurIPS 2023 Machine Unlearning Challenge starting kit (Triantafillou et "
        "al.), simple_mia.",
    },
    "mia_entropy_svc": {
        "definition": "Fraction of the forget set an RBF SVM (C=3, gamma='auto') on "
        "prediction entropy, trained on retain (member) vs held-out (non-member) samples, "
        "judges member; at most 2000 of each, balanced.",
        "direction": "Closer to the oracle is better; the original model scores high, and "
        "far below the oracle is suspicious too (the forget set stands out as unseen).",
        "source": "Golatkar et al., Forgetting outside the box (ECCV 2020), official code.",
    },
    "mia_entropy_lr": {
        "definition": "As mia_entropy_svc, with a class-balanced logistic regression on "
        "prediction entropy, trained on all retain vs held-out samples.",
        "direction": "Closer to the oracle is better; the original model scores high.",
        "source": "Chundawat et al. (Bad Teacher, AAAI 2023) code, reused by Foster et al. "
        "(SSD, AAAI 2024; JiT).",
    },
    "shadow_mia": {
        "definition": "Fraction of the forget set that a shadow-model attack (per-class "
        "gradient-boosted classifiers on sorted softmax vectors) judges member.",
        "direction": "Closer to the oracle is better; report the attack's own balanced "
        "accuracy on known members and non-members beside it.",
        "source": "Shokri et al., Membership inference attacks against ML models (S&P 2017).",
    },
    "forgetting_rate": {
        "definition": "Among forget samples a membership oracle judged members before "
        "unlearning, the fraction it judges non-members after.",
        "direction": "Higher means more forget samples stopped looking like members; the "
        "retrained oracle's rate is the reference, and the number is only as good as the "
        "membership oracle's accuracy.",
        "source": "Liu, Ma et al., Learn to forget: machine unlearning via neuron masking "
        "(Forsaken), arXiv 2003.10933.",
    },
    "activation_distance": {
        "definition": "Mean over samples of the L1 distance between the softmax outputs of "
        "the model and each retrained oracle, averaged over oracle seeds; for the oracle "
        "itself, against the other oracle seeds (its seed-to-seed spread).",
        "direction": "Lower is better; the oracle's seed-to-seed value is the floor worth "
        "aiming for.",
        "source": "Golatkar et al., Forgetting outside the box (ECCV 2020), official code.",
    },
    "js": {
        "definition": "Mean Jensen-Shannon divergence (natural log, in [0, ln 2]) between "
        "the softmax outputs of the model and each retrained oracle, averaged over oracle "
        "seeds; for the oracle itself, against the other oracle seeds.",
        "direction": "Lower is better; the oracle's seed-to-seed value is the floor.",
        "source": "Textbook Jensen-Shannon divergence (Lin 1991); the Bad-Teacher ZRF score "
        "uses a variant against a random teacher instead of the oracle.",
    },
    "relearn_time": {
        "definition": "Fine-tuning epochs (500 samples each, SGD lr 0.01, batch 128) until "
        "the forget-set loss falls to the original model's; capped at max_epochs (100 by "
        "default), so a capped value means 'at least this long'.",
        "direction": "Closer to the oracle is better; a low value means the forget set is "
        "still latent in the weights.",
        "source": "Golatkar et al., Eternal Sunshine (CVPR 2020) and Forgetting outside the "
        "box (ECCV 2020), official code.",
    },
    "tow": {
        "definition": "(1-|ΔFA|)(1-|ΔRA|)(1-|ΔTA|): the product of one minus the absolute "
        "accuracy gap to the mean oracle on forget, retain and test; for the oracle itself, "
        "against the mean of the other oracle seeds.",
        "direction": "Higher is better, 1 = the oracle's accuracies exactly.",
        "source": "Zhao et al., What makes unlearning hard and what to do about it (NeurIPS "
        "2024, RUM).",
    },
    "seconds": {
        "definition": "Wall-clock seconds of the unlearning alone (for the oracle, of "
        "retraining), as recorded by forgetkit.",
        "direction": "Lower is better; compare with the oracle's retraining time.",
        "source": "forgetkit (Stopwatch, CUDA synchronised at both ends).",
    },
    "peak_mib": {
        "definition": "Peak memory of the unlearning call, in MiB above its level when the "
        "call began: CUDA's allocator peak on a GPU; on a CPU the process's resident memory "
        "sampled every 5 ms (a shorter spike can be missed).",
        "direction": "Lower is better; compare methods measured on the same device only.",
        "source": "forgetkit (forgetkit.bench.engine.peak_memory).",
    },
    "not_applicable": {
        "definition": "A marker, value 1: the method was not run on this request because it "
        "is not designed for that kind of request (its 'serves').",
        "direction": "Not a score: tables print n/a.",
        "source": "forgetkit (forgetkit.bench.engine).",
    },
    "forget_quality": {
        "definition": "Forget quality F: the mean over forget examples of the points of "
        "each example's epsilon bucket (see epsilon), from N unlearned runs of one original "
        "against N models retrained without the forget set.",
        "direction": "Higher is better, at most 1; the gold-floor row (retraining against "
        "itself at the same N) is the best reachable with N models.",
        "source": "NeurIPS 2023 Machine Unlearning Challenge (Triantafillou et al., arXiv "
        "2406.09073), google-deepmind/unlearning_evaluation metric.py.",
    },
    "forget_score": {
        "definition": "forget_quality times the ratios of mean retain accuracy and of mean "
        "test accuracy (unlearned over retrained): the challenge's final score.",
        "direction": "Higher is better.",
        "source": "NeurIPS 2023 Machine Unlearning Challenge (Triantafillou et al., arXiv "
        "2406.09073).",
    },
    "epsilon": {
        "definition": "Per forget example (seed = its position): the (epsilon, delta=1e-5) "
        "bound of the best threshold or window test on the logit margin separating "
        "unlearned from retrained models, capped at 50.",
        "direction": "Lower is better; 0 = the two populations cannot be told apart.",
        "source": "NeurIPS 2023 Machine Unlearning Challenge scorer "
        "(google-deepmind/unlearning_evaluation metric.py).",
    },
    "epsilon_cap_rule": {
        "definition": "Per forget example: which rule put its epsilon at the cap (1 spread, "
        "2 separated, 3 window; 0 below the cap), as forgetkit.metrics.CAP_RULES.",
        "direction": "Not a score: explains the capped epsilons.",
        "source": "forgetkit, following the challenge scorer's order of tests.",
    },
    "klom": {
        "definition": "Per example (seed = its position): KL divergence from the binned "
        "logit-margin distribution of N unlearned models (N originals) to that of N "
        "retrained ones, 20 bins (KLOM).",
        "direction": "Lower is better; the gold-floor row (retraining against itself) is the "
        "floor at this N; disjoint populations saturate near ln(1e5) = 11.5.",
        "source": "Georgiev et al. (arXiv 2410.23232), binned as EasyDUB's easydub/eval.py.",
    },
    "ulira_accuracy": {
        "definition": "Balanced accuracy of U-LiRA, a per-example likelihood-ratio test "
        "fitted on shadow runs, telling a target run's forgotten examples from never-seen "
        "ones (random forgetting only).",
        "direction": "Closer to 0.5 is better; 0.5 means not detected with these shadows.",
        "source": "Hayes et al. (arXiv 2403.01218); LiRA fit from tensorflow/privacy mi_lira_2021.",
    },
    "ulira_auc": {
        "definition": "Area under the ROC curve of the same U-LiRA test.",
        "direction": "Closer to 0.5 is better.",
        "source": "Hayes et al. (arXiv 2403.01218).",
    },
    "ulira_tpr_at_0.1pct_fpr": {
        "definition": "True-positive rate of the same U-LiRA test at a false-positive rate "
        "below 0.1%.",
        "direction": "Lower is better; near 0.001 means no better than chance there.",
        "source": "Hayes et al. (arXiv 2403.01218); low-FPR reporting as in LiRA (Carlini "
        "et al., S&P 2022).",
    },
    "loss": {
        "definition": "Per forget example (seed = its position): its cross-entropy loss under "
        "the first unlearned model of a gold cell, what a cheap loss attack reads.",
        "direction": "Not a score alone: compare with loss_median.",
        "source": "forgetkit (forgetkit.bench.gold).",
    },
    "loss_median": {
        "definition": "Median cross-entropy loss of that model on the test set: the threshold "
        "of a simple loss attack.",
        "direction": "Not a score alone: forget losses below it look like members.",
        "source": "forgetkit (forgetkit.bench.gold).",
    },
    "utility_collapsed": {
        "definition": "1 when the method's own utility check reported a collapse "
        "(details['utility']['collapsed']) for that model, else 0.",
        "direction": "0 is better.",
        "source": "forgetkit (UnlearnResult.details).",
    },
}
# The per-example scores' summaries over examples (forgetkit.metrics.distribution_summary).
_SUMMARIES = {
    "mean": "the mean",
    "median": "the median",
    "p95": "the 95th percentile (KLOM's headline)",
    "worst_decile": "the mean of the worst tenth",
}
for _base in ("epsilon", "klom"):
    for _key, _what in _SUMMARIES.items():
        METRIC_CARDS[f"{_base}_{_key}"] = {
            "definition": f"Over the examples of the split, {_what} of {_base} (see its card).",
            "direction": METRIC_CARDS[_base]["direction"],
            "source": METRIC_CARDS[_base]["source"],
        }


# --------------------------------------------------------------------------- inputs


_MODEL_TYPES = (nn.Module, UnlearnResult, TrainedModel)


def _unwrap(item: Any, where: str) -> tuple[nn.Module, float | None, Any]:
    if isinstance(item, nn.Module):
        return item, None, item
    if isinstance(item, UnlearnResult | TrainedModel):
        if not isinstance(item.model, nn.Module):
            raise TypeError(f"{where}: .model is {type(item.model).__name__}, not a Module")
        return item.model, float(item.seconds), item
    raise TypeError(f"{where}: expected an nn.Module, UnlearnResult or TrainedModel, got "
                    f"{type(item).__name__}")  # fmt: skip


def _as_list(value: Any, where: str) -> list[tuple[nn.Module, float | None, Any]]:
    if isinstance(value, _MODEL_TYPES):
        items = [value]
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = list(value)
        if not items:
            raise ValueError(f"{where}: the list of models is empty")
    else:
        raise TypeError(f"{where}: expected a model (nn.Module, UnlearnResult or TrainedModel) "
                        f"or a list of them, got {type(value).__name__}")  # fmt: skip
    return [_unwrap(m, f"{where}[{i}]") for i, m in enumerate(items)]


def _training_data_hash(item: Any) -> str | None:
    """The hash of the data a ``TrainedModel`` was trained on (``None`` if unknown)."""
    meta = item.meta if isinstance(item, TrainedModel) else None
    payload = meta.get("payload") if isinstance(meta, Mapping) else None
    data = payload.get("data") if isinstance(payload, Mapping) else None
    return data if isinstance(data, str) else None


def _check_against_task(entries: Sequence[tuple[str, int, nn.Module, float | None, Any]],
                        task: ForgetTask | StreamedSets, device: DeviceLike) -> None:  # fmt: skip
    """Refuse, before any metric is computed, models that do not belong to ``task``: trained
    on other data (a ``TrainedModel`` records its training data's hash), built for other
    inputs, weights of another dtype, or another number of classes."""
    hashes: dict[str, str] = {}
    streamed = isinstance(task, StreamedSets)  # not read whole: no training-data hash

    def task_hash(part: str) -> str:
        if part not in hashes:
            data = getattr(task, f"{part}_set")
            hashes[part] = hash_tensors(data.x, data.y)
        return hashes[part]

    probe = task.forget_set.subset([0])
    for method, idx, model, _, item in entries:
        where = f"oracle[{idx}]" if method == ORACLE else f"models[{method!r}][{idx}]"
        trained_on = None if streamed else _training_data_hash(item)
        if trained_on is not None:
            parts = ("retain",) if method == ORACLE else ("train", "retain")
            if trained_on not in {task_hash(p) for p in parts}:
                sets = " or ".join(f"task.{p}_set" for p in parts)
                raise ValueError(
                    f"{where} was trained on other data than this task's {sets} (training "
                    f"data hash {trained_on}, the task's {', '.join(task_hash(p) for p in parts)}"
                    f"): evaluate models on the task ({task.describe()}) they were trained for"
                )
        logits = predict(model, probe, device=device, what=f"{where} on the task's inputs")
        if logits.shape[1] != task.num_classes:
            raise ValueError(f"{where} has {logits.shape[1]} outputs but the task has "
                             f"{task.num_classes} classes")  # fmt: skip


@dataclass
class _Outputs:
    """One model's softmax outputs and derived per-sample numbers on every split."""

    probs: dict[str, Tensor]
    losses: dict[str, Tensor]
    accuracy: dict[str, float]
    seconds: float | None


def _outputs(model: nn.Module, sets: Mapping[str, Samples], extra: Mapping[str, Tensor],
             seconds: float | None, device: DeviceLike) -> _Outputs:  # fmt: skip
    probs, losses, acc = {}, {}, {}
    with evaluating(model, device):  # move the model once, not once per split
        logits_by_set = {name: predict(model, data) for name, data in sets.items()}
    for name, data in sets.items():
        logits = logits_by_set[name]
        if int(data.y.max()) >= logits.shape[1]:
            raise ValueError(f"{name} labels reach {int(data.y.max())} but the model has "
                             f"{logits.shape[1]} outputs")  # fmt: skip
        probs[name] = torch.softmax(logits, 1)
        losses[name] = torch.nn.functional.cross_entropy(logits, data.y.cpu(), reduction="none")
        acc[name] = accuracy_from_logits(logits, data.y)
        if name == "test":
            for sub, mask in extra.items():
                acc[sub] = accuracy_from_logits(logits[mask], data.y.cpu()[mask])
    return _Outputs(probs, losses, acc, seconds)


@dataclass(frozen=True)
class StreamedSets:
    """One's own four sets when some are streamed (a dataset or loader that is not in
    memory): what :func:`evaluate` reads of a task, without reading any set whole.

    :meth:`ForgetTask.from_splits <forgetkit.scenarios.ForgetTask.from_splits>` checks
    in-memory sets for overlaps, shapes and labels; streamed sets are read only batch by
    batch, for predictions, so those checks and the training-data check of a
    ``TrainedModel`` are skipped (a label outside the model's outputs is still refused).
    """

    sources: Mapping[str, Any]
    num_classes: int
    forget_classes: tuple[int, ...] = ()

    @property
    def forget_set(self) -> Any:
        return self.sources["forget"]

    @property
    def retain_set(self) -> Any:
        return self.sources["retain"]

    @property
    def test_set(self) -> Any:
        return self.sources["test"]

    @property
    def heldout_set(self) -> Any:
        return self.sources["heldout"]

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.sources.items())
        return f"one's own sets, streamed where given as datasets or loaders ({sizes})"


def _task_of_sets(sets: Mapping[str, Any], forget_classes: Sequence[int], oracle: nn.Module,
                  device: DeviceLike, seed: int) -> ForgetTask | StreamedSets:  # fmt: skip
    """The task of one's own four sets, with as many classes as the oracle has outputs:
    in memory when all four are, else streamed (:class:`StreamedSets`)."""
    missing = [k for k in ("forget", "retain", "test", "heldout") if k not in sets]
    if len(missing) == 4:
        raise TypeError("evaluate needs the data: a task (a ForgetTask, e.g. from "
                        "ForgetTask.from_splits) or forget=, retain=, test= and "
                        "heldout=")  # fmt: skip
    if missing:
        raise ValueError(
            f"evaluate: with the sets instead of a task, pass all four (forget, retain, test, "
            f"heldout); missing {missing}. heldout= are samples no model trained on (the "
            "membership attacks' non-members); to set aside part of a test set, build the "
            "task with ForgetTask.from_splits(..., heldout_fraction=0.5)"
        )
    sources = {k: as_source(v, f"evaluate: {k}", seed=seed) for k, v in sets.items()}
    first = sources["forget"]
    logits = predict(oracle, first.subset([0]), device=device, what="oracle[0] on forget")
    if not all(isinstance(v, Samples) for v in sources.values()):
        return StreamedSets(sources, int(logits.shape[1]), tuple(int(c) for c in forget_classes))
    return ForgetTask.from_splits(
        forget=first, retain=sets["retain"], test=sets["test"], heldout=sets["heldout"],
        num_classes=int(logits.shape[1]), forget_classes=forget_classes, seed=seed,
    )  # fmt: skip


# --------------------------------------------------------------------------- evaluate


def evaluate(
    models: Mapping[str, Any],
    task: ForgetTask | None = None,
    oracle: Sequence[Any] | None = None,
    *,
    forget: Any = None,
    retain: Any = None,
    test: Any = None,
    heldout: Any = None,
    forget_classes: Sequence[int] = (),
    metrics: Sequence[str] = DEFAULT_METRICS,
    device: DeviceLike = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Every requested metric for every model and for the retrained oracle, in one table.

    ``models`` maps a method name to a model or a list of models (one per seed); a model is
    an ``nn.Module``, an :class:`~forgetkit.methods.UnlearnResult` or a
    :class:`~forgetkit.train.TrainedModel`. ``oracle`` is a non-empty list of models
    retrained on the retain set (modules or ``TrainedModel`` s, e.g. from
    :func:`forgetkit.train.retrain`, or one's own); it appears in the output as method
    ``"retrain"``.

    The data come either as a ``task`` (from a scenario such as
    :func:`~forgetkit.scenarios.forget_class`, or one's own splits through
    :meth:`ForgetTask.from_splits <forgetkit.scenarios.ForgetTask.from_splits>`), or as
    the four sets themselves: ``forget``, ``retain``, ``test`` and ``heldout``, each
    anything :meth:`~forgetkit.data.Samples.coerce` accepts (tensors, datasets, loaders,
    read independently of the global random state), with ``forget_classes`` for class
    forgetting; the number of classes is then the oracle's number of outputs. A set given
    as a dataset or a loader over one is streamed, batch by batch, never read whole
    (``StreamedSets``; the in-memory checks of ``from_splits`` then do not run). Nothing
    is split: the held-out set is the one given (``from_splits(..., heldout_fraction=...)``
    sets part of a test set aside, and says so).

    Returns a DataFrame with exactly the columns ``method, seed, split, metric, value``,
    where ``seed`` is the model's position in its list (0, 1, ...), oracle rows first:

    * ``accuracy`` on splits ``forget``, ``retain``, ``test``; for class or identity tasks
      also ``test_forgotten`` (test samples of the forgotten classes) and ``test_kept``.
    * ``mia_loss_cv``, ``mia_entropy_svc``, ``mia_entropy_lr`` on split ``forget``. The
      non-members are the task's held-out set (``task.heldout_set``), which no model trained
      on and no other metric uses; the entropy attacks train on retain vs held-out. The SVM
      attack subsamples each side to at most 2000 (seeded by ``seed``, the same samples for
      every model); the others use all samples.
    * ``activation_distance`` and ``js`` on splits ``forget`` and ``test``: distance to each
      oracle model, averaged over the oracle seeds. The oracle's own rows compare each seed
      with the *other* oracle seeds (leave-one-out), which is the seed-to-seed spread every
      method should be judged against; with a single oracle model they are NaN.
    * ``tow`` (split ``"-"``): each model's forget/retain/test accuracies against the mean
      oracle accuracies; the oracle's own rows use the mean of the other oracle seeds
      (NaN with a single oracle model).
    * ``seconds`` (split ``"-"``) whenever a model carries its timing (``UnlearnResult``,
      ``TrainedModel``; a cached ``TrainedModel`` reports the time of its original training).

    ``device`` runs every model there (default: wherever each model is); models are left in
    the mode and on the device they came in.

    Before any metric is computed, every model is checked against ``task``: a
    ``TrainedModel`` records the hash of its training data, which must be the task's
    training set or retain set (for the oracle: its retain set); and every model must take
    the task's inputs (their shape and float32 dtype) and have one output per class. A
    model that fails is refused with ``ValueError`` or ``TypeError`` naming it.

    A progress bar follows the models (see :func:`forgetkit.runtime.set_progress`).

    Parameters
    ----------
    models
        Method name to a model or a list of models (one per seed).
    task
        The forgetting task the models were unlearned on (or pass the four sets instead).
    oracle
        Models retrained on the retain set (the yardstick).
    forget
        Instead of ``task``: the samples that were forgotten.
    retain
        Instead of ``task``: the training samples kept (the oracle's training set).
    test
        Instead of ``task``: unseen samples, for utility.
    heldout
        Instead of ``task``: more unseen samples, the membership attacks' non-members.
    forget_classes
        With the four sets: the classes forgotten entirely, if any (adds ``test_forgotten``
        and ``test_kept`` accuracies).
    metrics
        Which metrics to compute.
    device
        Where to run every model (default: where each already is).
    seed
        Seed of the attacks' subsampling and splits (and of reading loaders given as sets).
    """
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a mapping of method name -> model(s), got "
                        f"{type(models).__name__}")  # fmt: skip
    sets_given = {k: v for k, v in (("forget", forget), ("retain", retain), ("test", test),
                                    ("heldout", heldout)) if v is not None}  # fmt: skip
    if task is not None and (sets_given or forget_classes):
        raise ValueError(f"evaluate: pass a task or the sets {sorted(sets_given)}, not both")
    if task is not None and not isinstance(task, ForgetTask):
        raise TypeError(f"task must be a forgetkit ForgetTask, got {type(task).__name__}")
    if oracle is None:
        raise TypeError("evaluate: oracle= is required: a list of models retrained on the "
                        "retain set (e.g. forgetkit.retrain(task, ...), or your own)")  # fmt: skip
    if (
        isinstance(oracle, _MODEL_TYPES)
        or not isinstance(oracle, Sequence)
        or isinstance(oracle, str | bytes)
    ):
        raise TypeError(f"oracle must be a list of retrained models (wrap a single model in a "
                        f"list), got {type(oracle).__name__}")  # fmt: skip
    if len(oracle) == 0:
        raise ValueError(
            "oracle is empty: pass at least one retrained model (e.g. from "
            "forgetkit.retrain(task, ...)); every metric is read against it"
        )
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = sorted(set(metrics) - set(DEFAULT_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(DEFAULT_METRICS)}")
    for name in models:
        if not isinstance(name, str):
            raise TypeError(f"method names must be strings, got {name!r}")
        if name == ORACLE:
            raise ValueError(f"{ORACLE!r} is reserved for the oracle; pass those models as "
                             "oracle=...")  # fmt: skip
    entries: list[tuple[str, int, nn.Module, float | None, Any]] = [
        (ORACLE, i, m, s, item) for i, (m, s, item) in enumerate(_as_list(list(oracle), "oracle"))
    ]
    for name, value in models.items():
        listed = _as_list(value, f"models[{name!r}]")
        entries += [(name, i, m, s, item) for i, (m, s, item) in enumerate(listed)]
    if task is None:
        task = _task_of_sets(sets_given, forget_classes, entries[0][2], device, seed)
    _check_against_task(entries, task, device)

    sets = {"forget": task.forget_set, "retain": task.retain_set, "test": task.test_set,
            "heldout": task.heldout_set}  # fmt: skip
    if len(sets["test"]) == 0 or len(sets["heldout"]) == 0:
        raise ValueError("the task's test and held-out sets must both be non-empty")
    extra: dict[str, Tensor] = {}
    if task.forget_classes:
        ty = sets["test"].y.cpu()
        forgotten = torch.isin(ty, torch.as_tensor(task.forget_classes))
        for sub, mask in (("test_forgotten", forgotten), ("test_kept", ~forgotten)):
            if bool(mask.any()):
                extra[sub] = mask
    bar = progress(desc="evaluate", total=2 * len(entries))
    outs = []
    for _, _, model, secs, _ in entries:
        outs.append(_outputs(model, sets, extra, secs, device))
        bar.update()
    n_oracle = len(oracle)
    oracle_outs = outs[:n_oracle]
    want = set(metrics)
    rows: list[tuple[str, int, str, str, float]] = []
    acc_splits = ("forget", "retain", "test", *extra)
    for k, ((method, idx, _, seconds, _), out) in enumerate(zip(entries, outs, strict=True)):
        is_oracle = k < n_oracle
        refs = [o for j, o in enumerate(oracle_outs) if not (is_oracle and j == k)]

        def add(split: str, metric: str, value: float, method=method, idx=idx) -> None:
            rows.append((method, idx, split, metric, float(value)))

        if "accuracy" in want:
            for split in acc_splits:
                add(split, "accuracy", out.accuracy[split])
        if "mia_loss_cv" in want:
            add("forget", "mia_loss_cv", mia_loss_cv_from_losses(
                out.losses["forget"], out.losses["heldout"], seed=seed))  # fmt: skip
        ent = {s: entropy(out.probs[s]) for s in ("retain", "heldout", "forget")}
        if "mia_entropy_svc" in want:
            add("forget", "mia_entropy_svc", mia_entropy_svc_from_entropy(
                ent["retain"], ent["heldout"], ent["forget"], max_samples=SVC_MAX_SAMPLES,
                seed=seed))  # fmt: skip
        if "mia_entropy_lr" in want:
            add("forget", "mia_entropy_lr", mia_entropy_lr_from_entropy(
                ent["retain"], ent["heldout"], ent["forget"], seed=seed))  # fmt: skip
        for metric, fn in (("activation_distance", l1_distance),
                           ("js", lambda p, q: float(js_divergence(p, q)))):  # fmt: skip
            if metric in want:
                for split in VERSUS_ORACLE_SPLITS:
                    vals = [fn(out.probs[split], r.probs[split]) for r in refs]
                    add(split, metric, float(np.mean(vals)) if vals else math.nan)
        if "tow" in want:
            if refs:
                mean_acc = {s: float(np.mean([r.accuracy[s] for r in refs]))
                            for s in ("forget", "retain", "test")}  # fmt: skip
                add("-", "tow", tow_score(out.accuracy, mean_acc))
            else:
                add("-", "tow", math.nan)
        if seconds is not None:
            add("-", "seconds", seconds)
        bar.update()
    bar.close()
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"method": str, "seed": int, "split": str, "metric": str, "value": float})


# --------------------------------------------------------------------------- summaries


def _check_frame(df: Any) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected the DataFrame from evaluate(), got {type(df).__name__}")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame lacks columns {missing}; expected {list(COLUMNS)}")
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds: one row per ``(split, metric)``, one column per method.

    Columns: ``retrain`` (the oracle's mean) and ``retrain_std`` (its standard deviation over
    seeds, NaN with one seed), then every other method's mean, in order of appearance. Rows
    keep the order in which ``evaluate`` produced them. Numbers only: format when printing.

    Parameters
    ----------
    df
        The long table from :func:`evaluate`.
    """
    df = _check_frame(df)
    order = list(dict.fromkeys(zip(df["split"], df["metric"], strict=True)))
    methods = list(dict.fromkeys(df["method"]))
    grouped = df.groupby(["split", "metric", "method"], sort=False)["value"]
    table = grouped.mean().unstack("method")
    index = pd.MultiIndex.from_tuples(order, names=["split", "metric"])
    table = table.reindex(index=index)
    cols: dict[str, Any] = {}
    if ORACLE in methods:
        cols[ORACLE] = table[ORACLE]
        std = df[df["method"] == ORACLE].groupby(["split", "metric"], sort=False)["value"].std()
        cols[f"{ORACLE}_std"] = std.reindex(index)
    for m in methods:
        if m != ORACLE:
            cols[m] = table[m]
    out = pd.DataFrame(cols, index=index)
    out.columns.name = None
    return out


def gap_to_oracle(df: pd.DataFrame) -> pd.DataFrame:
    """Each method's mean beside the oracle's, per ``(split, metric)``.

    Columns ``method, split, metric, value_mean, oracle_mean, gap`` with ``gap = value_mean
    - oracle_mean`` (signed; NaN where the oracle has no value, e.g. with one oracle seed for
    the oracle-relative metrics, whose oracle value is then undefined).

    Parameters
    ----------
    df
        The long table from :func:`evaluate`.
    """
    df = _check_frame(df)
    means = (df.groupby(["method", "split", "metric"], sort=False)["value"].mean()
             .rename("value_mean").reset_index())  # fmt: skip
    oracle = (means[means["method"] == ORACLE].drop(columns="method")
              .rename(columns={"value_mean": "oracle_mean"}))  # fmt: skip
    out = means[means["method"] != ORACLE].merge(oracle, on=["split", "metric"], how="left")
    out["gap"] = out["value_mean"] - out["oracle_mean"]
    return out[["method", "split", "metric", "value_mean", "oracle_mean", "gap"]].reset_index(
        drop=True
    )
