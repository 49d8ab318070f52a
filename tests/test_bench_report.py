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
