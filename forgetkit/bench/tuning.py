"""Fair tuning: every method gets the same trial budget, on a split of its own, through Optuna.

For each scenario and method with a search space in ``[tune.space.LABEL]``, a study of
``tune.trials`` trials (Optuna's TPE sampler, seeded) minimises the distance to the retrain
oracle on a *validation* task: the same scenario built from another subsample of the data
(``data.seed + tune.split_offset``), with its own original (seed ``tune.seed``) and its own
two oracle models, so that nothing the grid later reports was seen while tuning. The
objective (documented in :func:`oracle_distance`) is the sum of absolute gaps to the
oracle's mean on forget, retain and test accuracy and on the loss-attack score.

Studies live in Optuna's own storage (``tuning.db``, SQLite, in the results folder), so
tuning resumes where it stopped and several processes may add trials to one study at once.
The best hyperparameters are written to ``tuned.json`` beside the results; ``bench.run``
applies them to the grid's cells (and they enter the cells' keys).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from forgetkit.bench.config import BenchConfig, ConfigError
from forgetkit.bench.engine import _write_json_atomic
from forgetkit.runtime import progress as progress_bar

TUNED_FILE = "tuned.json"


def oracle_distance(method_rows: Any, oracle_rows: Any) -> float:
    """``sum |method - mean oracle|`` over forget, retain and test accuracy and the loss-attack
    score (split forget): lower is closer to retraining from scratch; 0 is the oracle."""
    total = 0.0
    for split, metric in (("forget", "accuracy"), ("retain", "accuracy"), ("test", "accuracy"),
                          ("forget", "mia_loss_cv")):  # fmt: skip
        m = method_rows[(method_rows["split"] == split) & (method_rows["metric"] == metric)]
        o = oracle_rows[(oracle_rows["split"] == split) & (oracle_rows["metric"] == metric)]
        total += abs(float(m["value"].mean()) - float(o["value"].mean()))
    return total


def _suggest(trial: Any, name: str, spec: list[Any]) -> Any:
    low, high, *rest = spec
    log = "log" in rest
    if isinstance(low, int) and isinstance(high, int) and not log:
        return trial.suggest_int(name, low, high)
    return trial.suggest_float(name, float(low), float(high), log=log)


def validation_config(config: BenchConfig) -> BenchConfig:
    """The config of the tuning split: another subsample, another original."""
    tune = config.tune
    data = {**config.data, "seed": config.data.get("seed", 0) + tune["split_offset"]}
    return replace(config, data=data, oracle_seeds=tuple(config.oracle_seeds[:2]), tuned={})


def tune(
    config: BenchConfig, out_dir: str | Path, *, progress: bool | None = None
) -> dict[str, Any]:
    """Run (or resume) every study of ``config``; write and return the best hyperparameters,
    ``{scenario: {method label: {name: value}}}``."""
    import optuna

    from forgetkit.bench.engine import (
        applicable,
        method_instance,
        oracle_models,
        original_model,
        task_for,
        unlearn_inputs,
    )
    from forgetkit.methods import get_method
    from forgetkit.metrics import evaluate
    from forgetkit.runtime import resolve_device

    spaces = config.tune.get("space", {})
    if not spaces:
        raise ConfigError("no [tune.space.LABEL] given: nothing to tune")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'tuning.db').resolve()}"
    val = validation_config(config)
    device = resolve_device(config.device)
    best: dict[str, Any] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for scenario in config.scenarios:
        task = task_for(val, scenario.name)
        oracle = oracle_models(val, task, device)
        oracle_rows = evaluate({}, task, oracle, metrics=("accuracy", "mia_loss_cv"))
        for spec in config.methods:
            if spec.label not in spaces or not applicable(val, spec.label, scenario.name):
                continue
            base = method_instance(val, spec.label, scenario.name)
            original = original_model(val, task, base, config.tune["seed"], device)

            def objective(trial, spec=spec, task=task, original=original, oracle=oracle,
                          oracle_rows=oracle_rows) -> float:  # fmt: skip
                space = spaces[spec.label]
                hp = {
                    **spec.hyperparameters,
                    **{k: _suggest(trial, k, v) for k, v in space.items()},
                }
                method = get_method(spec.method, **hp)
                try:
                    result = method.unlearn(original, task.forget_set, task.retain_set,
                                            device=device, seed=trial.number,
                                            **unlearn_inputs(task, method))  # fmt: skip
                except FloatingPointError:
                    return math.inf  # a diverging setting is the worst, not a crash
                rows = evaluate({"m": result}, task, oracle, metrics=("accuracy", "mia_loss_cv"))
                return oracle_distance(rows[rows["method"] == "m"], oracle_rows)

            study = optuna.create_study(
                study_name=f"{config.name}:{scenario.name}:{spec.label}", storage=storage,
                load_if_exists=True, direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=config.tune["seed"]),
            )  # fmt: skip
            done = sum(t.state.is_finished() for t in study.trials)
            remaining = config.tune["trials"] - done
            if remaining > 0:
                with progress_bar(desc=f"tune {scenario.name} {spec.label}", total=remaining,
                                  show=progress) as bar:  # fmt: skip
                    study.optimize(objective, n_trials=remaining,
                                   callbacks=[lambda _study, _trial: bar.update(1)])  # fmt: skip
            finite = [t for t in study.trials if t.value is not None and np.isfinite(t.value)]
            if finite:
                winner = min(finite, key=lambda t: (t.value, t.number))
                best.setdefault(scenario.name, {})[spec.label] = dict(winner.params)
    _write_json_atomic(out / TUNED_FILE, {"budget": config.tune["trials"], "best": best})
    return best


def load_tuned(out_dir: str | Path) -> dict[str, Any]:
    """The best hyperparameters stored by :func:`tune` in ``out_dir`` (empty when none)."""
    path = Path(out_dir) / TUNED_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())["best"]
