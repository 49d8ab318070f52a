"""The gold-standard cells of the benchmark: many models per method, scored per example.

For a scenario and a method, with N = ``gold.n_models``:

* **forget quality** (the NeurIPS 2023 challenge): N unlearning runs of the method from
  *one* original (seed 0; only the method's randomness varies) against N models retrained
  on the retain set (seeds 0 to N - 1), scored by :func:`forgetkit.metrics.forget_quality`,
  with its retain and test accuracy ratios and, per example, the rule that capped its
  epsilon (``epsilon_cap_rule``: 0 below the cap, i + 1 for ``CAP_RULES[i]``); beside it,
  what a cheap loss attack sees of the first of those runs (each forgotten example's loss,
  the median test loss);
* **KLOM** (Georgiev et al.): N originals of different seeds, each unlearned once, against
  the same N retrained models, scored per example on the forget, retain and test sets;
* **U-LiRA** (Hayes et al.; asked for with ``scores = [..., "ulira"]``, on random-forgetting
  scenarios only): ``gold.n_shadows`` (default N) shadow runs and a target run on random
  halves, see :func:`ulira_evaluation`; its floor is retraining run through the same
  protocol.

Each score is a cell of its own (``Cell.score``), so that a long run stopped midway loses at
most one score of one method.

Every model trains through the checkpoint cache, so a second method scored against the same
retrained models retrains nothing. The ``gold-floor`` cell scores retraining against itself
at the methods' N: N more models retrained with other seeds (N to 2N - 1) against the very
N retrained models (seeds 0 to N - 1) every method is scored against, so the floor costs N
extra retrainings. It is the floor a perfect method reaches with this many models (the
estimators' small-sample bias), reported next to every method. With N = 8 to 64 these
scores separate a method that leaves a trace from one that does not, but not a good method
from a mediocre one: compare with the floor, and read the per-example spread, not only the
mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgetkit.bench.engine import (
    _recipe,
    applicable,
    method_instance,
    not_applicable_rows,
    oracle_models,
    original_model,
    unlearn_inputs,
)
from forgetkit.metrics import (
    accuracy,
    distribution_summary,
    forget_quality,
    klom,
    margins,
    per_sample_loss,
)
from forgetkit.metrics.gold import ULiRAResult, ulira

SPLITS = ("forget", "retain", "test")
RETAIN_SAMPLE = 500  # KLOM on a fixed sample of the retain set, to bound its cost
# U-LiRA's shadow runs forget half of their training half, so that with N = 16 to 64 shadows
# every example has several IN and OUT values (at the papers' small fractions it would need
# hundreds of shadows); the per-example test stays the same.
ULIRA_FORGET_FRACTION = 0.5


def _retain_sample(task: Any):
    n = len(task.retain_set)
    idx = np.random.default_rng(0).choice(n, size=min(n, RETAIN_SAMPLE), replace=False)
    return task.retain_set.subset(np.sort(idx))


def _sets(task: Any) -> dict[str, Any]:
    return {"forget": task.forget_set, "retain": _retain_sample(task), "test": task.test_set}


def _row(cell, split: str, metric: str, value: float, seed: int = 0) -> dict[str, Any]:
    return {"scenario": cell.scenario, "method": cell.method, "seed": seed, "split": split,
            "metric": metric, "value": float(value)}  # fmt: skip


def _summary_rows(cell, split: str, name: str, values: np.ndarray) -> list[dict[str, Any]]:
    rows = [_row(cell, split, f"{name}_{k}", v) for k, v in distribution_summary(values).items()]
    # The per-example values themselves, one row each (seed = the example's position).
    rows += [_row(cell, split, name, v, seed=i) for i, v in enumerate(values)]
    return rows


def _cheap_readout_rows(cell, result: Any, task: Any, device: Any) -> list[dict[str, Any]]:
    """What a cheap attack sees of one unlearned model (the first, seed 0), stored beside
    the gold standard so a report can say which examples the cheap test misses: each
    forgotten example's loss (``loss``, seed = its position), the median test loss (the
    threshold of a loss attack) and whether the model's utility collapsed."""
    forget = per_sample_loss(result.model, task.forget_set, device=device).numpy()
    test = per_sample_loss(result.model, task.test_set, device=device).numpy()
    rows = [_row(cell, "forget", "loss", v, seed=i) for i, v in enumerate(forget)]
    rows.append(_row(cell, "test", "loss_median", float(np.median(test))))
    collapsed = bool(result.details.get("utility", {}).get("collapsed", False))
    rows.append(_row(cell, "-", "utility_collapsed", float(collapsed)))
    return rows


def gold_cell(config, cell, task, device) -> list[dict[str, Any]]:
    """The rows of one per-example score (``cell.score``) of one method."""
    if not cell.score or not applicable(config, cell.method, cell.scenario):
        return not_applicable_rows(cell)
    n = config.gold["n_models"]
    method = method_instance(config, cell.method, cell.scenario)
    extra = unlearn_inputs(task, method)
    if cell.score == "ulira":
        model_cfg, train_cfg = _recipe(config, task)
        return _ulira_rows(cell, ulira_evaluation(
            method, task.data, model_cfg, train_cfg, n_shadows=n_shadows(config),
            forget_fraction=ULIRA_FORGET_FRACTION, device=device))  # fmt: skip
    retrained = oracle_models(config, task, device, seeds=range(n))
    rows: list[dict[str, Any]] = []
    if cell.score == "forget_quality":
        original = original_model(config, task, method, 0, device)
        results = [method.unlearn(original, task.forget_set, task.retain_set, device=device,
                                  seed=i, **extra) for i in range(n)]  # fmt: skip
        runs = [r.model for r in results]
        rows += _cheap_readout_rows(cell, results[0], task, device)
        fq = forget_quality(
            margins(runs, task.forget_set),
            margins(retrained, task.forget_set),
            retain_accuracy=([accuracy(m, task.retain_set) for m in runs],
                             [accuracy(m.model, task.retain_set) for m in retrained]),
            test_accuracy=([accuracy(m, task.test_set) for m in runs],
                           [accuracy(m.model, task.test_set) for m in retrained]),
        )  # fmt: skip
        rows += [_row(cell, "forget", "forget_quality", fq.quality),
                 _row(cell, "forget", "forget_score", fq.score)]  # fmt: skip
        rows += _epsilon_rows(cell, fq)
    elif cell.score == "klom":
        unlearned = []
        for i in range(n):
            original = original_model(config, task, method, i, device)
            unlearned.append(method.unlearn(original, task.forget_set, task.retain_set,
                                            device=device, seed=i, **extra).model)  # fmt: skip
        for split, data in _sets(task).items():
            rows += _summary_rows(cell, split, "klom", klom(margins(unlearned, data),
                                                            margins(retrained, data)))  # fmt: skip
    return rows


def n_shadows(config) -> int:
    """U-LiRA's shadow runs: ``gold.n_shadows``, else ``gold.n_models``."""
    return int(config.gold.get("n_shadows") or config.gold["n_models"])


def _ulira_rows(cell, res: ULiRAResult) -> list[dict[str, Any]]:
    return [_row(cell, "forget", "ulira_accuracy", res.accuracy),
            _row(cell, "forget", "ulira_auc", res.auc),
            _row(cell, "forget", "ulira_tpr_at_0.1pct_fpr", res.tpr_at_low_fpr)]  # fmt: skip


def _epsilon_rows(cell, fq: Any) -> list[dict[str, Any]]:
    """The epsilon's summary and per-example rows, and each example's cap rule."""
    rows = _summary_rows(cell, "forget", "epsilon", fq.epsilons)
    rows += [_row(cell, "forget", "epsilon_cap_rule", code, seed=i)
             for i, code in enumerate(fq.cap_rule)]  # fmt: skip
    return rows


def floor_cell(config, cell, task, device) -> list[dict[str, Any]]:
    """Retraining against itself at the methods' N, for one score: seeds N..2N-1 against
    seeds 0..N-1 (forget quality, KLOM); for U-LiRA, retraining as the method, with as many
    shadow runs as the methods get."""
    if cell.score == "ulira":
        from forgetkit.methods import get_method

        model_cfg, train_cfg = _recipe(config, task)
        return _ulira_rows(cell, ulira_evaluation(
            get_method("retrain"), task.data, model_cfg, train_cfg, n_shadows=n_shadows(config),
            forget_fraction=ULIRA_FORGET_FRACTION, device=device))  # fmt: skip
    n = config.gold["n_models"]
    reference = oracle_models(config, task, device, seeds=range(n))  # what methods face
    fresh = oracle_models(config, task, device, seeds=range(n, 2 * n))
    rows: list[dict[str, Any]] = []
    if cell.score == "forget_quality":
        fq = forget_quality(margins(fresh, task.forget_set), margins(reference, task.forget_set))
        rows.append(_row(cell, "forget", "forget_quality", fq.quality))
        rows += _epsilon_rows(cell, fq)
    elif cell.score == "klom":
        for split, data in _sets(task).items():
            rows += _summary_rows(cell, split, "klom",
                                  klom(margins(fresh, data), margins(reference, data)))  # fmt: skip
    return rows


def ulira_evaluation(
    method: Any,
    data: Any,
    model_config: Any,
    train_config: Any,
    *,
    n_shadows: int = 16,
    forget_fraction: float = 0.1,
    seed: int = 0,
    device: Any = None,
) -> ULiRAResult:
    """U-LiRA for one method, from scratch: ``n_shadows`` shadow runs and one target run.

    Run k trains an original on a random half of ``data.train`` (seeded by ``seed + k``),
    forgets a random ``forget_fraction`` of that half with ``method`` and keeps the unlearned
    model's :func:`~forgetkit.metrics.logit_margin` on every pool example; the last run is
    the target, the others the shadows of :func:`~forgetkit.metrics.ulira`. Every original
    trains through the checkpoint cache. An accuracy near 0.5 means the method's forgotten
    examples cannot be told from never-seen ones with this many shadows.
    """
    from dataclasses import replace

    from forgetkit.scenarios import forget_indices
    from forgetkit.train import train_original

    if n_shadows < 4:
        raise ValueError(f"n_shadows must be at least 4, got {n_shadows}")
    if not 0 < forget_fraction < 1:
        raise ValueError(f"forget_fraction must lie in (0, 1), got {forget_fraction}")
    pool = len(data.train)
    values, forgotten, out = [], [], []
    for k in range(n_shadows + 1):
        rng = np.random.default_rng([seed, k])
        half = np.sort(rng.choice(pool, size=pool // 2, replace=False))
        chosen = rng.choice(half.size, size=max(1, int(forget_fraction * half.size)),
                            replace=False)  # fmt: skip
        sub = replace(data, train=data.train.subset(half))
        task = forget_indices(sub, chosen, seed=seed)
        original = train_original(task, model_config, train_config, seed=seed + k,
                                  device=device, hooks=method.training_hooks())  # fmt: skip
        extra = unlearn_inputs(task, method)
        model = method.unlearn(original, task.forget_set, task.retain_set, device=device,
                               seed=k, **extra).model  # fmt: skip
        values.append(margins([model], data.train)[0])
        f = np.zeros(pool, dtype=bool)
        f[half[chosen]] = True
        o = np.ones(pool, dtype=bool)
        o[half] = False
        forgotten.append(f)
        out.append(o)
    v, fin, fout = np.stack(values), np.stack(forgotten), np.stack(out)
    return ulira(v[:-1], fin[:-1], fout[:-1], v[-1], fin[-1], fout[-1],
                 fix_variance=n_shadows < 64)  # fmt: skip
