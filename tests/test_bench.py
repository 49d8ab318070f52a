"""The benchmark engine: config checks, the grid, resume after a kill, and the executors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forgetkit import bench
from forgetkit.bench import engine
from forgetkit.bench.config import ConfigError
from forgetkit.metrics import gold as gold_metrics
from forgetkit.metrics import per_sample_loss

pytestmark = pytest.mark.slow

TINY = """
[bench]
name = "tiny"
seeds = [0, 1]
oracle_seeds = [0, 1]

[data]
dataset = "mnist"
train = 300
test = 200

[model]
name = "logistic"

[train]
epochs = 2
lr = 0.1

[[scenario]]
name = "class-3"
kind = "class"
cls = 3

[[scenario]]
name = "random-20"
kind = "random"
n = 20

[methods.finetune]
epochs = 1
[methods.neggrad]
epochs = 1
lr = 0.001
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FORGETKIT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["scenario", "method", "seed", "split", "metric"]
    return df.sort_values(keys).reset_index(drop=True)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("[model]", "[modle]"), r"unknown key\(s\) \['modle'\] in \[top level\]"),
        (('name = "logistic"', 'name = "resnet"'), r"model.name must be one of .*'logistic'"),
        (("[methods.neggrad]", "[methods.nope]"), r"unknown method 'nope'.*available: \["),
        (("epochs = 1\n[methods.neggrad]", "epochs = 1\nwarp = 2\n[methods.neggrad]"),
         r"methods.finetune: .*unknown hyperparameter\(s\) \['warp'\]"),
        (('kind = "random"', 'kind = "noise"'), r"kind must be one of \['class', "),
        (("n = 20", "m = 20"), r"unknown key\(s\) \['m'\] in \[scenario random-20\]"),
        (("lr = 0.1", 'lr = "fast"'), r"\[train\]"),
        (("seeds = [0, 1]\n", "seeds = [0, 0]\n"), "bench.seeds has duplicates"),
        (("[methods.finetune]", "[methods.retrain]"), "retraining is the oracle"),
        (("[bench]", "[bench"), "not valid TOML"),
        (("[methods.finetune]", '[gold]\nn_models = 8\nscenarios = ["class-9"]\n'
          "[methods.finetune]"), r"gold.scenarios must be .* from \['class-3', 'random-20'\]"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key_and_the_allowed_values(tmp_path, edit, match):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(*edit, 1))
    with pytest.raises(ConfigError, match=match):
        bench.load_config(path)


def test_shipped_configs_load():
    for name in ("ci", "paper"):
        config = bench.load_config(name)
        assert config.name == name and config.scenarios and config.methods


def test_unknown_config_names_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"neither a file nor a shipped config \['ci', 'paper'\]"):
        bench.load_config("nightly")


# --------------------------------------------------------------------------- the grid


def test_task_for_names_the_scenarios_it_knows():
    config = bench.load_config("ci")
    first = config.scenarios[0].name
    assert len(engine.task_for(config, first).forget_set) > 0
    with pytest.raises(ValueError, match=rf"name must be one of .*{first}.*'nope'"):
        engine.task_for(config, "nope")


def test_grid_runs_resumes_and_writes_a_tidy_table(tiny, tmp_path, monkeypatch):
    config = bench.load_config(tiny)
    out = tmp_path / "out"
    df = bench.run(config, out, progress=False, csv=True)
    assert list(df.columns) == list(bench.COLUMNS)
    cells = bench.plan(config)
    assert len(cells) == 2 + 2 * 2 + 2 * 2 * 2  # oracles, originals x seed, then x method
    assert len(list((out / "cells").glob("*.json"))) == len(cells)
    assert set(df["method"]) == {"retrain", "original", "finetune", "neggrad"}
    assert (df[df["metric"] == "peak_mib"]["method"] != "retrain").all()
    assert len(df[(df["method"] == "original") & (df["metric"] == "tow")]) == 2 * 2
    assert (out / "results.parquet").exists() and (out / "results.csv").exists()
    provenance = (out / "provenance.json").read_text()
    assert '"profile": "tiny"' in provenance and "cell_seconds" in provenance

    def boom(*args, **kwargs):
        raise AssertionError("a stored cell ran again")

    monkeypatch.setattr(engine, "run_cell", boom)
    again = bench.run(config, out, progress=False)
    pd.testing.assert_frame_equal(_sorted(again), _sorted(df))


def test_results_do_not_depend_on_the_executor(tiny, tmp_path):
    config = bench.load_config(tiny)
    inline = bench.run(config, tmp_path / "inline", progress=False)
    pool = bench.run(config, tmp_path / "pool", executor="process", workers=2, progress=False)
    volatile = inline["metric"].isin(["seconds", "peak_mib"])
    pd.testing.assert_frame_equal(_sorted(pool[~volatile]), _sorted(inline[~volatile]))


def test_ray_executor_gives_the_same_table(tiny, tmp_path):
    pytest.importorskip("ray")
    config = bench.load_config(tiny)
    inline = bench.run(config, tmp_path / "inline", progress=False)
    on_ray = bench.run(config, tmp_path / "ray", executor="ray", workers=2, progress=False)
    volatile = inline["metric"].isin(["seconds", "peak_mib"])
    pd.testing.assert_frame_equal(_sorted(on_ray[~volatile]), _sorted(inline[~volatile]))


def test_a_killed_run_resumes_without_losing_or_repeating_cells(tiny, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "forgetkit", "bench", "run", str(tiny), "--out", str(out),
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("cells/*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = len(list(out.glob("cells/*.json")))
    config = bench.load_config(tiny)
    assert 3 <= stored < len(bench.plan(config)), "the run was not killed halfway"
    assert not (out / "results.parquet").exists()
    resumed = bench.run(config, out, progress=False)
    fresh = bench.run(config, tmp_path / "fresh", progress=False)
    volatile = fresh["metric"].isin(["seconds", "peak_mib"])
    pd.testing.assert_frame_equal(_sorted(resumed[~volatile]), _sorted(fresh[~volatile]))
    assert not list(out.glob("cells/.*.tmp")), "a half-written cell file was left behind"


def test_the_command_line_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("[methods.neggrad]", "[methods.nope]"))
    result = subprocess.run([sys.executable, "-m", "forgetkit", "bench", "run", str(bad)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "unknown method 'nope'" in result.stderr


def test_gold_standard_cells(tiny, tmp_path):
    path = tmp_path / "gold.toml"
    text = TINY.replace('[[scenario]]\nname = "random-20"\nkind = "random"\nn = 20\n', "")
    path.write_text(text + "\n[gold]\nn_models = 8\n")
    config = bench.load_config(path)
    df = bench.run(config, tmp_path / "gold", progress=False)
    gold = df[df["metric"].isin(["forget_quality", "klom_p95"])]
    assert set(gold["method"]) == {"retrain", "finetune", "neggrad"}  # floor rows as retrain
    assert gold["value"].between(0, 20).all()
    eps = df[(df["metric"] == "epsilon") & (df["method"] == "finetune")]
    task = engine.task_for(config, "class-3")
    assert len(eps) == len(task.forget_set)  # one row per example
    # The cheap readout stored beside it is the loss of the first unlearned model (seed 0).
    stored = df[(df["metric"] == "loss") & (df["method"] == "neggrad")].sort_values("seed")
    method = engine.method_instance(config, "neggrad", "class-3")
    original = engine.original_model(config, task, method, 0, "cpu")
    again = method.unlearn(original, task.forget_set, task.retain_set, seed=0)
    expected = per_sample_loss(again.model, task.forget_set).numpy()
    np.testing.assert_allclose(stored["value"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    medians = df[df["metric"] == "loss_median"]
    assert sorted(medians["method"]) == ["finetune", "neggrad"] and (medians["value"] > 0).all()
    # Each capped epsilon names the rule that capped it; the others name none.
    rules = df[(df["metric"] == "epsilon_cap_rule") & (df["method"] == "finetune")]
    capped = eps.sort_values("seed")["value"].to_numpy() >= gold_metrics.EPSILON_CAP
    np.testing.assert_array_equal(rules.sort_values("seed")["value"].to_numpy() > 0, capped)
    # The floor: 8 more retrained models (seeds 8..15) against the 8 the methods face.
    reference = engine.oracle_models(config, task, "cpu", seeds=range(8))
    fresh = engine.oracle_models(config, task, "cpu", seeds=range(8, 16))
    margins = gold_metrics.margins
    expected_fq = gold_metrics.forget_quality(margins(fresh, task.forget_set),
                                              margins(reference, task.forget_set))  # fmt: skip
    floor = df[(df["method"] == "retrain") & (df["metric"] == "forget_quality")]
    assert floor["value"].tolist() == [pytest.approx(expected_fq.quality)]
    floor_eps = df[(df["method"] == "retrain") & (df["metric"] == "epsilon")]
    np.testing.assert_allclose(floor_eps.sort_values("seed")["value"], expected_fq.epsilons)


def test_a_method_is_not_run_on_a_request_it_does_not_serve(tiny, tmp_path):
    """The mnemonic code forgets whole classes: on random samples its cells say so (one
    ``not_applicable`` row, gold cells included) instead of running or vanishing."""
    path = tmp_path / "serves.toml"
    path.write_text(TINY + '[methods.mnemonic]\n[gold]\nn_models = 8\nscenarios = ["random-20"]\n')
    config = bench.load_config(path)
    gold = [c for c in bench.plan(config) if c.kind.startswith("gold")]
    assert {c.scenario for c in gold} == {"random-20"}  # gold.scenarios restricts the cells
    df = bench.run(config, tmp_path / "serves", progress=False)
    mnemonic = df[df["method"] == "mnemonic"]
    on_random = mnemonic[mnemonic["scenario"] == "random-20"]
    assert set(on_random["metric"]) == {"not_applicable"} and len(on_random) == 3  # 2 seeds, gold
    on_class = mnemonic[mnemonic["scenario"] == "class-3"]
    assert "accuracy" in set(on_class["metric"]) and "not_applicable" not in set(on_class["metric"])


def test_tuning_gives_every_method_the_same_budget_resumes_and_is_reused(tiny, tmp_path):
    import optuna

    path = tmp_path / "tune.toml"
    path.write_text(TINY + '\n[tune]\ntrials = 3\n[tune.space.finetune]\nlr = [0.001, 0.1, "log"]'
                    '\n[tune.space.neggrad]\nlr = [0.00001, 0.01, "log"]\n')  # fmt: skip
    config = bench.load_config(path)
    out = tmp_path / "tuned"
    from forgetkit.bench.tuning import load_tuned, tune

    best = tune(config, out)
    assert set(best) == {"class-3", "random-20"}
    assert all(set(m) == {"finetune", "neggrad"} for m in best.values())
    storage = f"sqlite:///{out / 'tuning.db'}"
    names = optuna.get_all_study_names(storage)
    assert all(len(optuna.load_study(study_name=n, storage=storage).trials) == 3 for n in names)
    tune(config, out)  # resumes: the budget is already spent, no new trials
    assert all(len(optuna.load_study(study_name=n, storage=storage).trials) == 3 for n in names)
    assert load_tuned(out) == best
    tuned = engine.replace(config, tuned=best)
    cell = bench.Cell("method", "class-3", "finetune", 0)
    assert engine.cell_key(tuned, cell) != engine.cell_key(config, cell)
    assert engine.method_instance(tuned, "finetune", "class-3").hparams.lr == pytest.approx(
        best["class-3"]["finetune"]["lr"]
    )


def test_tuning_space_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY + "\n[tune.space.finetune]\nwarp = [1, 2]\n")
    with pytest.raises(ConfigError, match=r"tune.space.finetune.warp: not a hyperparameter"):
        bench.load_config(path)
    path.write_text(TINY + "\n[tune.space.finetune]\nlr = [0.1, 0.01]\n")
    with pytest.raises(ConfigError, match=r"must be \[low, high\]"):
        bench.load_config(path)


def test_ulira_evaluation_tells_a_method_that_leaves_a_trace(tiny, tmp_path):
    from forgetkit.bench.engine import _dataset
    from forgetkit.bench.gold import ulira_evaluation
    from forgetkit.methods import get_method
    from forgetkit.models import ModelConfig
    from forgetkit.train import TrainConfig

    data = _dataset("mnist", 300, 200, 0)
    model_cfg = ModelConfig.for_data("logistic", data)
    recipe = TrainConfig(epochs=8, lr=0.1)
    # "Unlearning" that changes nothing: forgotten members keep their high margins.
    nothing = get_method("finetune", epochs=0)
    res = ulira_evaluation(nothing, data, model_cfg, recipe, n_shadows=16, forget_fraction=0.5,
                           device="cpu")  # fmt: skip
    assert res.accuracy > 0.6 and res.auc > 0.6
    assert res.is_forgotten.any() and (~res.is_forgotten).any()


def test_summary_intervals_by_hand():
    from scipy import stats

    rows = [("s", "m", seed, "forget", "accuracy", v) for seed, v in enumerate([0.2, 0.4, 0.6])]
    rows += [("s", "retrain", 0, "forget", "accuracy", 0.1), ("s", "retrain", 1, "forget",
             "accuracy", 0.3)]  # fmt: skip
    table = bench.summarize_results(pd.DataFrame(rows, columns=list(bench.COLUMNS)))
    m = table[table["method"] == "m"].iloc[0]
    half = stats.t.ppf(0.975, 2) * 0.2 / 3**0.5  # sample std of (0.2, 0.4, 0.6) is 0.2
    assert m["mean"] == pytest.approx(0.4) and m["ci95"] == pytest.approx(half)
    assert m["oracle_mean"] == pytest.approx(0.2) and m["gap"] == pytest.approx(0.2)
    assert m["n"] == 3


def test_gold_cells_one_per_score_and_ulira_floor_is_retraining(tiny, tmp_path):
    """Each per-example score is a cell of its own (a stopped run loses at most one), U-LiRA
    runs on random requests only with ``gold.n_shadows`` shadows, and its floor is
    retraining put through the same protocol."""
    path = tmp_path / "scores.toml"
    path.write_text(TINY + '[methods.mnemonic]\n[gold]\nn_models = 8\nn_shadows = 4\n'
                    'scores = ["forget_quality", "klom", "ulira"]\n')  # fmt: skip
    config = bench.load_config(path)
    gold = [(c.kind, c.scenario, c.method, c.score) for c in bench.plan(config)
            if c.kind.startswith("gold")]  # fmt: skip
    assert ("gold-floor", "random-20", "retrain", "ulira") in gold
    assert ("gold-floor", "class-3", "retrain", "ulira") not in gold  # random requests only
    for method in ("finetune", "neggrad"):
        assert {s for k, sc, m, s in gold if sc == "random-20" and m == method} == {
            "forget_quality", "klom", "ulira"}  # fmt: skip
    assert [s for k, sc, m, s in gold if sc == "random-20" and m == "mnemonic"] == [""]
    floor = engine.Cell("gold-floor", "random-20", score="ulira")
    rows = engine.run_cell(config, floor)
    metrics = {r["metric"]: r["value"] for r in rows}
    assert set(metrics) == {"ulira_accuracy", "ulira_auc", "ulira_tpr_at_0.1pct_fpr"}
    assert all(r["method"] == "retrain" for r in rows) and 0 <= metrics["ulira_auc"] <= 1
    path.write_text(TINY + "[gold]\nn_models = 8\nn_shadows = 2\n")
    with pytest.raises(ConfigError, match=r"gold.n_shadows .* >= 4, got 2"):
        bench.load_config(path)
