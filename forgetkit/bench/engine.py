"""The benchmark grid: cells keyed by content, stored atomically, resumed, run anywhere.

A run is a list of *cells*, each a pure function of the config and its own coordinates:

* ``oracle``: one per scenario, the models retrained without the forget set (the
  yardstick every other cell is scored against) and their own metric rows;
* ``original``: one per scenario and seed: the original model (trained with that seed,
  without any method's training hooks), evaluated like the methods as method
  ``"original"``, so every table shows where the methods started;
* ``method``: one per scenario, method and seed: the original trained with that seed
  (through the checkpoint cache, with the method's training hooks), unlearned with that
  seed, scored against the oracle; its time (the unlearning alone, preprocessing such as a
  Fisher pass included) and peak memory;
* ``gold``: one per scenario, method and per-example score when ``gold.n_models > 0``:
  the scores of :mod:`forgetkit.metrics.gold` over N unlearned and N retrained models, and
  ``gold-floor``, one per score, the same scores of N more retrained models (other seeds)
  against those N: retraining against itself at the same N. One cell per score keeps each
  cell short, so a stopped run loses little (the models every cell trains are cached).

A method whose ``serves`` does not include a scenario's kind of request (the mnemonic code,
made for whole classes, on random samples) is not run there: its cells hold one
``not_applicable`` row, so tables show it as such instead of silently dropping it.

Each cell's rows are written to ``cells/<key>.json`` (temporary file, then rename) when it
finishes, so a run killed at any moment loses at most the cells in flight, and a rerun skips
every stored cell. The engine only describes cells; executors run them: in this process,
in a local process pool, or as Ray tasks. Each cell sets its own thread count, so the table
does not depend on which executor ran it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgetkit.bench.config import BenchConfig, is_reference, own_fingerprint
from forgetkit.cache import hash_payload
from forgetkit.runtime import progress as progress_bar

BENCH_VERSION = 3  # bump when a change here changes what a cell computes
# Bump when a change changes what the gold and gold-floor cells compute (their scores live in
# forgetkit.metrics.gold): only their keys change, so the other cells stay stored.
# 2: KLOM binned as published, epsilon windows never inverted, cap rules stored, the floor
# at the methods' N.
GOLD_VERSION = 2
COLUMNS = ("scenario", "method", "seed", "split", "metric", "value")
ORIGINAL = "original"  # the method label of the model before unlearning
EXECUTORS = ("inline", "process", "ray")


@dataclass(frozen=True)
class Cell:
    kind: str  # "oracle", "original", "method", "gold" or "gold-floor"
    scenario: str
    method: str = "retrain"  # a method label of the config
    seed: int = 0
    score: str = ""  # a gold cell's per-example score (GOLD_SCORES); "" for the others

    def describe(self) -> str:
        tail = f":{self.score}" if self.score else ""
        return f"{self.kind}:{self.scenario}:{self.method}:{self.seed}{tail}"


def plan(config: BenchConfig) -> list[Cell]:
    """Every cell of a run, oracles first (method cells reuse their cached models)."""
    cells = [Cell("oracle", s.name) for s in config.scenarios]
    cells += [Cell("original", s.name, ORIGINAL, seed) for s in config.scenarios
              for seed in config.seeds]  # fmt: skip
    cells += [Cell("method", s.name, m.label, seed) for s in config.scenarios
              for m in config.methods for seed in config.seeds]  # fmt: skip
    if config.gold.get("n_models", 0):
        chosen = config.gold.get("scenarios") or [s.name for s in config.scenarios]
        for s in (s for s in config.scenarios if s.name in chosen):
            scores = gold_scores(config, s.name)
            cells += [Cell("gold-floor", s.name, score=score) for score in scores]
            for m in config.methods:
                if applicable(config, m.label, s.name):
                    cells += [Cell("gold", s.name, m.label, score=score) for score in scores]
                else:  # one cell, whose single row says the method does not serve the request
                    cells.append(Cell("gold", s.name, m.label))
    return cells


def gold_scores(config: BenchConfig, scenario: str) -> list[str]:
    """The per-example scores computed on ``scenario``: the config's, U-LiRA on random
    requests only (it is defined for random forget sets)."""
    kind = next(s.kind for s in config.scenarios if s.name == scenario)
    return [s for s in config.gold.get("scores", []) if s != "ulira" or kind == "random"]


def cell_key(config: BenchConfig, cell: Cell) -> str:
    """A content hash of everything the cell's rows depend on."""
    import forgetkit

    scenario = next(s for s in config.scenarios if s.name == cell.scenario)
    method = next((asdict(m) for m in config.methods if m.label == cell.method), None)
    if method is not None:  # the hyperparameters the cell really uses (tuned ones included)
        method["hyperparameters"] = config.hyperparameters(cell.method, cell.scenario)
    described = asdict(cell)
    if not cell.score:  # keys of the cells that have no score stay as they were
        del described["score"]
    payload = {
        "cell": described, "data": config.data, "model": config.model,
        "train": config.train, "scenario": asdict(scenario), "method": method,
        "device": config.device.split(":")[0], "threads": config.threads,
        "oracle_seeds": list(config.oracle_seeds), "gold": config.gold,
        "version": BENCH_VERSION, "forgetkit": forgetkit.__version__,
    }  # fmt: skip
    if cell.kind in ("gold", "gold-floor"):
        payload["gold_version"] = GOLD_VERSION
    own = _own_fingerprint(config)
    if own is not None:  # one's own data or model: their content and code, not only names
        payload["own"] = own
    return hash_payload(payload)[:24]


def _own_fingerprint(config: BenchConfig) -> dict[str, str] | None:
    if not (is_reference(config.data["dataset"]) or is_reference(config.model["name"])):
        return None
    return own_fingerprint(config)


# --------------------------------------------------------------------------- running one cell


@functools.lru_cache(maxsize=4)
def _dataset(name: str, train: int | None, test: int | None, seed: int, root: str = ""):
    from forgetkit.bench.config import load_own_dataset
    from forgetkit.data import load_dataset

    data = load_own_dataset(name, root) if is_reference(name) else load_dataset(name)
    return data.subsample(train, test, seed=seed)


def task_for(config: BenchConfig, name: str):
    """The :class:`~forgetkit.scenarios.ForgetTask` that the cells of scenario ``name`` run
    on: the same data and split, so that a chapter can score its own readouts (per-example
    losses, figures) on exactly what the engine measured.

    Parameters
    ----------
    config
        The benchmark config; its ``data`` section gives the dataset and the split seed.
    name
        One of ``config.scenarios`` by its name (``"class-3"``, ``"random-100"``).
    """
    from forgetkit import scenarios as sc

    scenario = next((s for s in config.scenarios if s.name == name), None)
    if scenario is None:
        known = [s.name for s in config.scenarios]
        raise ValueError(f"name must be one of the config's scenarios {known}, got {name!r}")
    d = config.data
    data = _dataset(d["dataset"], d.get("train"), d.get("test"), d.get("seed", 0), config.root)
    a, seed = scenario.args, d.get("seed", 0)
    if scenario.kind == "class":
        return sc.forget_class(data, a["cls"], seed=seed)
    if scenario.kind == "subclass":
        return sc.forget_subclass(data, a["cls"], a["n"], seed=seed)
    if scenario.kind == "random":
        return sc.forget_random(data, a["n"], seed=seed)
    return sc.forget_identity(data, a["person"], seed=seed)


@contextlib.contextmanager
def peak_memory(device: Any) -> Iterator[dict[str, float]]:
    """Peak memory of a block, in MiB, above its level at the start: CUDA's allocator
    statistics on a GPU, the process's resident memory sampled every 5 ms on a CPU."""
    import torch

    out: dict[str, float] = {}
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    import psutil

    proc, stop = psutil.Process(), threading.Event()
    base = proc.memory_info().rss
    peak = [base]

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], proc.memory_info().rss)
        out["peak_mib"] = (peak[0] - base) / 2**20


def _rows(df: pd.DataFrame, scenario: str, label: str | None = None) -> list[dict[str, Any]]:
    df = df.copy()
    if label is not None:
        df["method"] = label
    df.insert(0, "scenario", scenario)
    return df[list(COLUMNS)].to_dict("records")


def run_cell(config: BenchConfig, cell: Cell) -> list[dict[str, Any]]:
    """The rows of one cell (a pure function of the config and the cell)."""
    import torch
    from threadpoolctl import threadpool_limits

    from forgetkit.runtime import resolve_device

    torch.set_num_threads(config.threads)
    with threadpool_limits(config.threads):
        task = task_for(config, cell.scenario)
        device = resolve_device(config.device)
        if cell.kind == "oracle":
            return _oracle_cell(config, cell, task, device)
        if cell.kind == "original":
            return _original_cell(config, cell, task, device)
        if cell.kind == "method":
            return _method_cell(config, cell, task, device)
        from forgetkit.bench import gold as gold_cells

        if cell.kind == "gold":
            return gold_cells.gold_cell(config, cell, task, device)
        if cell.kind == "gold-floor":
            return gold_cells.floor_cell(config, cell, task, device)
    raise ValueError(f"unknown cell kind {cell.kind!r}")


def model_name(config: BenchConfig) -> str:
    """The name to build the config's model by: a shipped architecture's, or for one's own
    (``"module:Class"``, ``"torchvision:NAME"``) the name it is registered under in this
    process (see :func:`forgetkit.bench.config.register_model`)."""
    from forgetkit.bench.config import register_model

    name = config.model["name"]
    return register_model(name, config.root) if is_reference(name) else name


def _recipe(config: BenchConfig, task: Any):
    from forgetkit.models import ModelConfig
    from forgetkit.train import TrainConfig

    return (ModelConfig.for_data(model_name(config), task, **config.model["options"]),
            TrainConfig(**config.train))  # fmt: skip


def oracle_models(config: BenchConfig, task: Any, device: Any, seeds: Sequence[int] | None = None):
    from forgetkit.train import retrain

    model_cfg, train_cfg = _recipe(config, task)
    seeds = tuple(config.oracle_seeds if seeds is None else seeds)
    return retrain(task, model_cfg, train_cfg, seeds=seeds, device=device)


def original_model(config: BenchConfig, task: Any, method: Any, seed: int, device: Any):
    from forgetkit.train import train_original

    model_cfg, train_cfg = _recipe(config, task)
    return train_original(task, model_cfg, train_cfg, seed=seed, device=device,
                          hooks=method.training_hooks())  # fmt: skip


def method_instance(config: BenchConfig, label: str, scenario: str | None = None):
    """The method of ``label``, with its tuned hyperparameters for ``scenario`` if any."""
    from forgetkit.methods import get_method

    spec = next(m for m in config.methods if m.label == label)
    return get_method(spec.method, **config.hyperparameters(label, scenario))


def unlearn_inputs(task: Any, method: Any) -> dict[str, Any]:
    """Every input the method declares, taken from the task (non-members: the held-out set,
    validation: the test set), as keyword arguments of ``unlearn``."""
    given = {"nonmember": task.heldout_set, "validation": task.test_set}
    return {k: v for k, v in given.items() if k in method.needs | method.uses}


def _oracle_cell(config, cell, task, device) -> list[dict[str, Any]]:
    from forgetkit.metrics import evaluate

    oracle = oracle_models(config, task, device)
    return _rows(evaluate({}, task, oracle, device=device), cell.scenario)


def _original_cell(config, cell, task, device) -> list[dict[str, Any]]:
    """The model before unlearning, scored like a method (its rows carry no ``seconds``:
    nothing was unlearned)."""
    from forgetkit.metrics import evaluate
    from forgetkit.train import train_original

    model_cfg, train_cfg = _recipe(config, task)
    original = train_original(task, model_cfg, train_cfg, seed=cell.seed, device=device)
    oracle = oracle_models(config, task, device)
    df = evaluate({ORIGINAL: original.model}, task, oracle, device=device)
    df = df[df["method"] == ORIGINAL].assign(seed=cell.seed)
    return _rows(df, cell.scenario)


def applicable(config: BenchConfig, label: str, scenario: str) -> bool:
    """Whether the method of ``label`` is designed for the kind of request of ``scenario``
    (its ``serves``); the cells of one that is not hold a single ``not_applicable`` row."""
    from forgetkit.methods import get_method

    spec = next(m for m in config.methods if m.label == label)
    kind = next(s.kind for s in config.scenarios if s.name == scenario)
    return kind in type(get_method(spec.method)).serves


def not_applicable_rows(cell: Cell) -> list[dict[str, Any]]:
    return [{"scenario": cell.scenario, "method": cell.method, "seed": cell.seed, "split": "-",
             "metric": "not_applicable", "value": 1.0}]  # fmt: skip


def _method_cell(config, cell, task, device) -> list[dict[str, Any]]:
    from forgetkit.metrics import evaluate

    if not applicable(config, cell.method, cell.scenario):
        return not_applicable_rows(cell)
    method = method_instance(config, cell.method, cell.scenario)
    original = original_model(config, task, method, cell.seed, device)
    oracle = oracle_models(config, task, device)
    with peak_memory(device) as memory:
        result = method.unlearn(original, task.forget_set, task.retain_set, device=device,
                                seed=cell.seed, **unlearn_inputs(task, method))  # fmt: skip
    df = evaluate({cell.method: result}, task, oracle, device=device)
    df = df[df["method"] == cell.method].assign(seed=cell.seed)
    rows = _rows(df, cell.scenario)
    peak = float(memory["peak_mib"])
    rows.append({"scenario": cell.scenario, "method": cell.method, "seed": cell.seed,
                 "split": "-", "metric": "peak_mib", "value": peak})  # fmt: skip
    return rows


# --------------------------------------------------------------------------- storage


def _write_json_atomic(path: Path, payload: Any) -> None:
    from forgetkit.provenance import write_text_atomic

    write_text_atomic(path, json.dumps(payload, allow_nan=True))


def stored_rows(out_dir: Path, key: str) -> list[dict[str, Any]] | None:
    """A finished cell's rows, or ``None`` when absent or not a complete, matching record."""
    path = Path(out_dir) / "cells" / f"{key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or "rows" not in record:
        return None
    return record["rows"]


def execute_and_store(config_dict: dict[str, Any], cell_dict: dict[str, Any],
                      out_dir: str) -> str:  # fmt: skip
    """Run one cell and store its rows; the function every executor calls (picklable)."""
    config, cell = BenchConfig.from_dict(config_dict), Cell(**cell_dict)
    key = cell_key(config, cell)
    start = time.perf_counter()
    rows = run_cell(config, cell)
    record = {"key": key, "cell": cell_dict, "seconds": time.perf_counter() - start,
              "rows": rows}  # fmt: skip
    _write_json_atomic(Path(out_dir) / "cells" / f"{key}.json", record)
    return key


# --------------------------------------------------------------------------- executors


def _inline(jobs: list[tuple], workers: int, address: str | None, device: str) -> Iterable[str]:
    for job in jobs:
        yield execute_and_store(*job)


def _process(jobs: list[tuple], workers: int, address: str | None, device: str) -> Iterable[str]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(execute_and_store, *job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _ray(jobs: list[tuple], workers: int, address: str | None, device: str) -> Iterable[str]:
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "the ray executor needs Ray: pip install 'forgetkit[distributed]'"
        ) from None
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        gpus = 1 if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus)(execute_and_store)
        pending = [task.remote(*job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


_EXECUTORS: dict[str, Callable[..., Iterable[str]]] = {
    "inline": _inline, "process": _process, "ray": _ray}  # fmt: skip


def run(
    config: BenchConfig,
    out_dir: str | Path,
    *,
    executor: str = "inline",
    workers: int = 1,
    address: str | None = None,
    progress: bool | None = None,
    csv: bool = False,
    use_tuned: bool = True,
) -> pd.DataFrame:
    """Run every cell not stored yet in ``out_dir``, then write the results table.

    With ``use_tuned`` and a ``tuned.json`` in ``out_dir`` (from ``forgetkit bench tune``),
    each method runs with its tuned hyperparameters for each scenario.

    ``out_dir`` receives ``cells/`` (one file per finished cell), ``results.parquet`` (and
    ``results.csv`` with ``csv=True``) with the columns of ``COLUMNS``, and
    ``provenance.json`` (commit, versions, device, seconds per cell). Rerunning with the same
    config skips finished cells; a different config gets different keys.
    """
    if executor not in _EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if address is not None and executor != "ray":
        raise ValueError(f"address is for the ray executor, not {executor!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if use_tuned:
        from forgetkit.bench.tuning import load_tuned

        config = replace(config, tuned=load_tuned(out))
    start = time.perf_counter()
    cells = plan(config)
    keys = {cell: cell_key(config, cell) for cell in cells}
    todo = [c for c in cells if stored_rows(out, keys[c]) is None]
    config_dict = config.as_dict()
    jobs = [(config_dict, asdict(c), str(out)) for c in todo]
    finished = _EXECUTORS[executor](jobs, workers, address, config.device)
    # The bar counts the cells still to run (stored ones are skipped) and estimates the
    # time left from those finished; silenced by --no-progress or FORGETKIT_PROGRESS=0.
    bar = progress_bar(finished, total=len(jobs), desc=f"bench {config.name}", show=progress,
                       leave=True)  # fmt: skip
    for _ in bar:
        pass
    return collect(config, out, seconds=time.perf_counter() - start, skipped=len(cells) - len(todo),
                   executor=executor, csv=csv)  # fmt: skip


def collect(config: BenchConfig, out_dir: str | Path, *, seconds: float = 0.0, skipped: int = 0,
            executor: str = "inline", csv: bool = False) -> pd.DataFrame:  # fmt: skip
    """Gather the stored cells of ``config`` into one table and write it, with provenance."""
    from forgetkit.provenance import Provenance

    out = Path(out_dir)
    rows, cell_seconds, missing = [], {}, []
    for cell in plan(config):
        key = cell_key(config, cell)
        stored = stored_rows(out, key)
        if stored is None:
            missing.append(cell.describe())
            continue
        rows += stored
        cell_seconds[cell.describe()] = json.loads((out / "cells" / f"{key}.json").read_text())[
            "seconds"
        ]
    if missing:
        raise RuntimeError(f"{len(missing)} cell(s) have no stored result: {missing[:5]}")
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype(
        {"scenario": str, "method": str, "seed": int, "split": str, "metric": str, "value": float}
    )
    _write_frame(df, out / "results.parquet")
    if csv:
        _write_frame(df, out / "results.csv")
    provenance = Provenance.collect(config.name, config.device, config.seeds, seconds,
                                    executor=executor, skipped_cells=skipped,
                                    cell_seconds=cell_seconds, config=config.as_dict())  # fmt: skip
    _write_json_atomic(out / "provenance.json", provenance.as_dict())
    return df


def _write_frame(df: pd.DataFrame, path: Path) -> None:
    from forgetkit.provenance import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def load_results(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The results table and the provenance record of a finished run."""
    out = Path(out_dir)
    if not (out / "results.parquet").exists():
        raise FileNotFoundError(f"no results.parquet in {out}: run `forgetkit bench run` first")
    return pd.read_parquet(out / "results.parquet"), json.loads(
        (out / "provenance.json").read_text()
    )


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% interval (t distribution over seeds) of every metric, per scenario,
    method, split and metric, with the oracle's mean beside it and the gap to it."""
    from scipy import stats

    def interval(v: pd.Series) -> pd.Series:
        v = v.dropna()
        n = len(v)
        half = (stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        return pd.Series({"mean": v.mean() if n else np.nan, "ci95": half, "n": n})

    keys = ["scenario", "split", "metric"]
    table = df.groupby([*keys, "method"], sort=False)["value"].apply(interval).unstack()
    table = table.reset_index()
    oracle = table[table["method"] == "retrain"][[*keys, "mean"]].rename(
        columns={"mean": "oracle_mean"})  # fmt: skip
    table = table.merge(oracle, on=keys, how="left")
    table["gap"] = table["mean"] - table["oracle_mean"]
    return table
