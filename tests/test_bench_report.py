"""The benchmark's tables: intervals over seeds, the oracle first, not-applicable cells."""

from __future__ import annotations

import pandas as pd
import pytest

from forgetkit.bench.report import comparison_table, format_interval, not_applicable


def _frame() -> pd.DataFrame:
    rows = []
    for seed, (oracle, method) in enumerate([(0.80, 0.98), (0.82, 0.99), (0.84, 1.00)]):
        rows += [("random", "retrain", seed, "forget", "accuracy", oracle),
                 ("random", "finetune", seed, "forget", "accuracy", method)]  # fmt: skip
    rows.append(("random", "mnemonic", 0, "-", "not_applicable", 1.0))
    return pd.DataFrame(rows, columns=["scenario", "method", "seed", "split", "metric", "value"])


def test_comparison_table_puts_the_oracle_first_with_intervals():
    table = comparison_table(_frame(), "random", {"forget acc": ("forget", "accuracy")})
    assert list(table.index) == ["retrain (oracle)", "finetune", "mnemonic"]
    # mean 0.82, half-width t(0.975, 2) * 0.02 / sqrt(3) = 0.0497
    assert table.loc["retrain (oracle)", "forget acc"] == "0.820 ± 0.050"
    assert table.loc["finetune", "forget acc"] == "0.990 ± 0.025"
    assert table.loc["mnemonic", "forget acc"] == "n/a"
    assert not_applicable(_frame()) == {("random", "mnemonic")}


@pytest.mark.parametrize(
    ("mean", "half", "text"),
    [(-0.0001, 0.01, "0.000 ± 0.010"), (0.5, float("nan"), "0.500"), (float("nan"), 0.1, "")],
)
def test_format_interval_has_no_negative_zero_and_drops_unknown_halves(mean, half, text):
    assert format_interval(mean, half) == text


def test_recommend_applies_each_tolerance_and_orders_recommended_fastest_first():
    from forgetkit.bench.report import Tolerances, recommend

    cols = ["scenario", "method", "seed", "split", "metric", "value"]
    rows = []
    # oracle forget 0.80 (tiny interval), test 0.90; a: close, stable, fast; b: close but its
    # test accuracy fell 5 points; c: 0.10 off; d: close on average but unstable; e: close,
    # slower than a.
    forget = {
        "retrain": [0.80, 0.80, 0.80],
        "a": [0.81, 0.81, 0.81],
        "b": [0.80, 0.80, 0.80],
        "c": [0.90, 0.90, 0.90],
        "d": [0.60, 1.00, 0.80],
        "e": [0.79, 0.79, 0.79],
    }
    test = {"b": 0.85}
    seconds = {"retrain": 10.0, "a": 1.0, "b": 0.5, "c": 0.1, "d": 0.2, "e": 3.0}
    for method, values in forget.items():
        for seed, v in enumerate(values):
            rows += [("r", method, seed, "forget", "accuracy", v),
                     ("r", method, seed, "test", "accuracy", test.get(method, 0.90)),
                     ("r", method, seed, "-", "seconds", seconds[method])]  # fmt: skip
    rows.append(("r", "m", 0, "-", "not_applicable", 1.0))
    table = recommend(pd.DataFrame(rows, columns=cols), "r", ["a", "b", "c", "d", "e", "m"])
    assert list(table.index) == ["a", "e", "c", "d", "b"]  # recommended first, then by time
    assert table["recommended"].tolist() == [True, True, False, False, False]
    assert not table.loc["c", "close to the oracle"] and not table.loc["d", "stable across seeds"]
    assert table.loc["b", "test gap (points)"] == pytest.approx(-5.0)
    loose = recommend(pd.DataFrame(rows, columns=cols), "r", ["c"], Tolerances(forget=0.2))
    assert loose.loc["c", "recommended"]


def _run(seconds: dict[str, list[float]], accuracy: float = 0.5) -> pd.DataFrame:
    rows = []
    for method, values in seconds.items():
        for seed, v in enumerate(values):
            rows += [("r", method, seed, "forget", "accuracy", accuracy),
                     ("r", method, seed, "-", "seconds", v),
                     ("r", method, seed, "-", "peak_mib", 10 * v)]  # fmt: skip
    return pd.DataFrame(rows, columns=["scenario", "method", "seed", "split", "metric", "value"])


def test_with_costs_from_takes_the_rerun_costs_and_keeps_every_seed_accuracy():
    from forgetkit.bench.report import seed_agreement, with_costs_from

    stored = _run({"retrain": [9.0, 9.0, 9.0], "a": [3.0, 4.0, 5.0]})
    stored.loc[stored["seed"] == 2, "value"] = stored["value"].where(
        stored["metric"] != "accuracy", 0.7
    )
    idle = _run({"retrain": [6.0], "a": [1.0]})
    out = with_costs_from(stored, idle)
    secs = out[out["metric"] == "seconds"].groupby("method")["value"].unique()
    assert list(secs["a"]) == [1.0] and list(secs["retrain"]) == [6.0]
    assert set(out[out["metric"] == "peak_mib"]["value"]) == {10.0, 60.0}
    accuracy = out[out["metric"] == "accuracy"]
    assert accuracy.equals(stored[stored["metric"] == "accuracy"])  # untouched
    assert seed_agreement(stored, idle) == 0.0  # seed 0 matches; seed 2 is not shared
    assert seed_agreement(stored, _run({"a": [1.0]}, accuracy=0.25)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no cost rows"):
        with_costs_from(stored, _run({"a": [1.0]}))


def test_load_with_idle_costs_reads_both_folders(tmp_path):
    from forgetkit.bench.report import load_with_idle_costs

    for name, run in [("run", _run({"retrain": [9.0, 9.0], "a": [3.0, 5.0]})),
                      ("idle", _run({"retrain": [6.0], "a": [1.0]}))]:  # fmt: skip
        (tmp_path / name).mkdir()
        run.to_parquet(tmp_path / name / "results.parquet")
        (tmp_path / name / "provenance.json").write_text(f'{{"profile": "{name}"}}')
    df, record, idle_record, agreement = load_with_idle_costs(tmp_path / "run", tmp_path / "idle")
    assert (record["profile"], idle_record["profile"], agreement) == ("run", "idle", 0.0)
    assert set(df[df["metric"] == "seconds"]["value"]) == {1.0, 6.0}
