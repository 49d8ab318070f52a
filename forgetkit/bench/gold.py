"""The gold-standard cells of the benchmark: many models per method, scored per example.

For a scenario and a method, with N = ``gold.n_models``:

* **forget quality** (the NeurIPS 2023 challenge): N unlearning runs of the method from
  *one* original (seed 0; only the method's randomness varies) against N models retrained
  on the retain set, scored by :func:`forgetkit.metrics.forget_quality`, with its retain
  and test accuracy ratios;
* **KLOM** (Georgiev et al.): N originals of different seeds, each unlearned once, against
  the same N retrained models, scored per example on the forget, retain and test sets.

Every model trains through the checkpoint cache, so a second method scored against the same
retrained models retrains nothing. The ``gold-floor`` cell scores retraining against itself
(one half of the retrained models against the other), the floor a perfect method reaches
with this many models; it is reported next to every method. With N = 16 to 64 these scores
separate a method that leaves a trace from one that does not, but not a good method from a
mediocre one: compare with the floor, and read the per-example spread, not only the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgetkit.bench.engine import (
    method_instance,
    oracle_models,
    original_model,
    unlearn_inputs,
)
from forgetkit.metrics import accuracy, distribution_summary, forget_quality, klom, margins
from forgetkit.metrics.gold import retrain_baseline

SPLITS = ("forget", "retain", "test")
RETAIN_SAMPLE = 500  # KLOM on a fixed sample of the retain set, to bound its cost


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


def gold_cell(config, cell, task, device) -> list[dict[str, Any]]:
    n = config.gold["n_models"]
    scores = config.gold["scores"]
    method = method_instance(config, cell.method, cell.scenario)
    retrained = oracle_models(config, task, device, seeds=range(n))
    sets = _sets(task)
    extra = unlearn_inputs(task, method)
    rows: list[dict[str, Any]] = []
    if "forget_quality" in scores:
        original = original_model(config, task, method, 0, device)
        runs = [method.unlearn(original, task.forget_set, task.retain_set, device=device,
                               seed=i, **extra).model for i in range(n)]  # fmt: skip
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
        rows += _summary_rows(cell, "forget", "epsilon", fq.epsilons)
    if "klom" in scores:
        unlearned = []
        for i in range(n):
            original = original_model(config, task, method, i, device)
            unlearned.append(method.unlearn(original, task.forget_set, task.retain_set,
                                            device=device, seed=i, **extra).model)  # fmt: skip
        for split, data in sets.items():
            values = klom(margins(unlearned, data), margins(retrained, data))
            rows += _summary_rows(cell, split, "klom", values)
    return rows


def floor_cell(config, cell, task, device) -> list[dict[str, Any]]:
    n = config.gold["n_models"]
    retrained = oracle_models(config, task, device, seeds=range(n))
    rows: list[dict[str, Any]] = []
    if "forget_quality" in config.gold["scores"]:
        eps = retrain_baseline(margins(retrained, task.forget_set), "epsilon")
        from forgetkit.metrics.gold import bucket_points

        rows.append(_row(cell, "forget", "forget_quality", bucket_points(eps, n // 2).mean()))
        rows += _summary_rows(cell, "forget", "epsilon", eps)
    if "klom" in config.gold["scores"]:
        for split, data in _sets(task).items():
            rows += _summary_rows(cell, split, "klom",
                                  retrain_baseline(margins(retrained, data), "klom"))  # fmt: skip
    return rows
