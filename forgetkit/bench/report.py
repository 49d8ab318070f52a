"""The standard figures of a benchmark run, drawn from its results folder.

``forgetkit bench report DIR`` writes, per scenario, the trade-off between forgetting (the
forget-set accuracy's distance to the oracle's) and utility (test accuracy), and the
speed-up over retraining from scratch against the same distance, as SVG and PNG files in
``DIR/figures``; every point is a method's mean over seeds, with its 95% interval. The
original model (method ``"original"``, the model before unlearning) is drawn in the
trade-off as where every method started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgetkit.bench.engine import ORIGINAL, load_results, summary


def tradeoff_table(df: pd.DataFrame, *, original: bool = False) -> pd.DataFrame:
    """Per scenario and method: forget-accuracy gap to the oracle, test accuracy, seconds and
    speed-up over retraining (oracle seconds / method seconds), means over seeds.

    With ``original``, the original model's row too (it unlearned nothing: no seconds, no
    speed-up); without, only the oracle and the methods."""
    if not original:
        df = df[df["method"] != ORIGINAL]
    s = summary(df)

    def pick(split: str, metric: str, name: str) -> pd.DataFrame:
        part = s[(s["split"] == split) & (s["metric"] == metric)]
        return part.set_index(["scenario", "method"])[["mean", "ci95", "oracle_mean"]].add_prefix(
            f"{name}_"
        )

    t = pick("forget", "accuracy", "forget").join(pick("test", "accuracy", "test"))
    t = t.join(pick("-", "seconds", "seconds"))
    t["forget_gap"] = (t["forget_mean"] - t["forget_oracle_mean"]).abs()
    t["speedup"] = t["seconds_oracle_mean"] / t["seconds_mean"]
    return t.reset_index()


COSTS = ("seconds", "peak_mib")  # the metrics that measure the machine, not the model
KEYS = ["scenario", "method", "split", "metric"]


def with_costs_from(df: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its seconds and peak memory replaced by those of ``timing``, a rerun of
    some of its seeds on idle cores (``scripts/bench_idle_timing.py``).

    A long grid runs beside other work, so its costs carry load that is not the method's;
    its accuracies do not. Each (scenario, method)'s cost rows take the mean of ``timing``'s
    for that pair, on every seed, so that speed-ups and memory come from the idle run and
    everything else from all seeds. Raises if ``timing`` lacks a pair that ``df`` has."""
    cost = timing[timing["metric"].isin(COSTS)].groupby(KEYS)["value"].mean()
    out = df.copy()
    rows = out["metric"].isin(COSTS)
    wanted = pd.MultiIndex.from_frame(out.loc[rows, KEYS])
    missing = wanted.difference(cost.index)
    if len(missing):
        raise ValueError(f"timing has no cost rows for {len(missing)} (scenario, method, split, "
                         f"metric) of df, e.g. {list(missing[:3])}")  # fmt: skip
    out.loc[rows, "value"] = cost.reindex(wanted).to_numpy()
    return out


def seed_agreement(df: pd.DataFrame, timing: pd.DataFrame, metric: str = "accuracy") -> float:
    """The largest absolute difference in ``metric`` between two runs on the rows they share
    (same scenario, method, seed and split): 0 when a rerun reproduced the stored numbers.
    Raises when they share none."""
    keys = ["scenario", "method", "seed", "split"]
    a, b = (t[t["metric"] == metric][[*keys, "value"]] for t in (df, timing))
    both = a.merge(b, on=keys, suffixes=("", "_rerun"))
    if both.empty:
        raise ValueError(f"the two runs share no {metric!r} rows")
    return float((both["value"] - both["value_rerun"]).abs().max())


def load_with_idle_costs(
    out_dir: str | Path, idle_dir: str | Path
) -> tuple[pd.DataFrame, dict, dict, float]:
    """A stored run with the costs of its idle-core rerun (:func:`with_costs_from`): the
    table, the run's provenance record, the rerun's, and their largest accuracy difference
    on the seeds they share (:func:`seed_agreement`; 0 when the rerun reproduced them)."""
    df, record = load_results(out_dir)
    idle, idle_record = load_results(idle_dir)
    return with_costs_from(df, idle), record, idle_record, seed_agreement(df, idle)


NOT_APPLICABLE = "n/a"  # the method does not serve the request: not run


def not_applicable(df: pd.DataFrame) -> set[tuple[str, str]]:
    """The (scenario, method) pairs whose cells were not run: the method does not serve
    that kind of request (see ``UnlearningMethod.serves``)."""
    rows = df[df["metric"] == "not_applicable"]
    return set(zip(rows["scenario"], rows["method"], strict=True))


def comparison_table(
    df: pd.DataFrame,
    scenario: str,
    columns: Mapping[str, tuple[str, str]],
    *,
    digits: int = 3,
    methods: Sequence[str] | None = None,
    caps: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One scenario as a compact table of strings: a row per method (the oracle first,
    then the original model, where the methods started, when ``df`` has it), a column per
    ``label -> (split, metric)``, each cell "mean ± half-width of the 95% interval over
    seeds" (the interval is omitted with one seed). A method that was not run because it
    does not serve the request says so in every column.

    ``methods`` fixes the rows and their order (default: as in ``df``, the original second;
    list ``"original"`` to keep it); ``caps`` names the columns whose values are censored at
    a cap (label -> cap), printed ``≥cap`` there."""
    s = summary(df[df["scenario"] == scenario])
    skipped = {m for sc, m in not_applicable(df) if sc == scenario}
    if methods is not None:
        order = list(methods)
    else:
        present = list(dict.fromkeys(df["method"]))
        order = [m for m in present if m == ORIGINAL] + [m for m in present if m != ORIGINAL]
    order = ["retrain", *[m for m in order if m != "retrain"]]
    out = pd.DataFrame(index=pd.Index(order, name="method"), columns=list(columns), dtype=object)
    for label, (split, metric) in columns.items():
        part = s[(s["split"] == split) & (s["metric"] == metric)].set_index("method")
        for method in order:
            if method in skipped:
                out.loc[method, label] = NOT_APPLICABLE
            elif method in part.index:
                out.loc[method, label] = format_interval(
                    part.loc[method, "mean"], part.loc[method, "ci95"], digits,
                    (caps or {}).get(label),
                )  # fmt: skip
            else:
                out.loc[method, label] = ""
    return out.rename(index={"retrain": "retrain (oracle)", ORIGINAL: "original (before)"})


def format_interval(mean: float, half: float, digits: int = 3, cap: float | None = None) -> str:
    """``mean ± half`` by the book's number rules (``forgetkit.tables``: no negative
    zero; a mean at ``cap`` printed censored, ``≥cap``, without an interval), the ± part
    dropped when the half-width is unknown (one seed); empty when the mean is missing."""
    import math

    from forgetkit.tables import format_value, number

    if mean is None or math.isnan(float(mean)):
        return ""
    text = format_value(float(mean), number(digits, cap=cap))
    if half is None or math.isnan(float(half)) or text.startswith("≥"):
        return text
    return f"{text} ± {format_value(float(half), number(digits))}"


@dataclass(frozen=True)
class Tolerances:
    """When a method counts as doing what retraining does on a request, in accuracy units."""

    forget: float = 0.03  # |forget accuracy - oracle's|, or the oracle's 95% interval if wider
    stable: float = 0.10  # the half-width of the method's own 95% interval over seeds
    test: float = 0.02  # how far its test accuracy may fall below the oracle's


def recommend(df: pd.DataFrame, scenario: str, methods: Sequence[str],
              tolerances: Tolerances = Tolerances()) -> pd.DataFrame:  # fmt: skip
    """The evidence for recommending each method on one request, from a results table.

    A row per method that ran on ``scenario``: the forget-accuracy gap to the oracle's mean,
    whether it is ``close to the oracle`` (within the oracle's 95% interval or
    ``tolerances.forget``, whichever is wider), ``stable across seeds``, the test-accuracy
    gap in points, the mean unlearning seconds, and ``recommended`` (all three tests hold).
    Recommended methods come first, fastest first; then the others, fastest first. Computed,
    never written by hand, so that a chapter's recommendations follow its stored run."""
    s = summary(df[df["scenario"] == scenario]).set_index(["split", "metric", "method"])
    skipped = {m for sc, m in not_applicable(df) if sc == scenario}
    oracle_forget = s.loc[("forget", "accuracy", "retrain")]
    oracle_test = s.loc[("test", "accuracy", "retrain")]
    rows = []
    for label in methods:
        if label in skipped:
            continue
        forget, test = s.loc[("forget", "accuracy", label)], s.loc[("test", "accuracy", label)]
        gap = forget["mean"] - oracle_forget["mean"]
        rows.append({
            "method": label,
            "forget gap": gap,
            "close to the oracle": bool(abs(gap) <= max(oracle_forget["ci95"], tolerances.forget)),
            "stable across seeds": bool(forget["ci95"] <= tolerances.stable),
            "test gap (points)": 100 * (test["mean"] - oracle_test["mean"]),
            "seconds": s.loc[("-", "seconds", label), "mean"],
        })  # fmt: skip
    table = pd.DataFrame(rows).set_index("method")
    table["recommended"] = (table["close to the oracle"] & table["stable across seeds"]
                            & (table["test gap (points)"] >= -100 * tolerances.test))  # fmt: skip
    return table.sort_values(["recommended", "seconds"], ascending=[False, True])


def draw(out_dir: str | Path) -> list[Path]:
    """Draw the standard figures of the run in ``out_dir``; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, provenance = load_results(out_dir)
    table = tradeoff_table(df, original=True)
    figures = Path(out_dir) / "figures"
    figures.mkdir(exist_ok=True)
    written: list[Path] = []
    for scenario, part in table.groupby("scenario", sort=False):
        methods = part[~part["method"].isin(["retrain", ORIGINAL])]
        fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2), constrained_layout=True)
        start = part[part["method"] == ORIGINAL]
        if len(start):  # where every method started
            left.errorbar(start["forget_gap"], start["test_mean"], xerr=start["forget_ci95"],
                          yerr=start["test_ci95"], fmt="x", color="black", capsize=3,
                          label="original (before)")  # fmt: skip
        left.errorbar(methods["forget_gap"], methods["test_mean"], xerr=methods["forget_ci95"],
                      yerr=methods["test_ci95"], fmt="o", capsize=3)  # fmt: skip
        oracle = part[part["method"] == "retrain"]
        if len(oracle):
            left.axhline(float(oracle["test_mean"].iloc[0]), color="grey", ls="--", lw=1,
                         label="retrain (oracle)")  # fmt: skip
        if len(oracle) or len(start):
            left.legend(fontsize=8)
        right.scatter(methods["forget_gap"], methods["speedup"])
        right.set_yscale("log")
        for ax in (left, right):
            for _, row in methods.iterrows():
                y = row["test_mean"] if ax is left else row["speedup"]
                ax.annotate(row["method"], (row["forget_gap"], y), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
            ax.set_xlabel("|forget accuracy - oracle's|")
        left.set_ylabel("test accuracy")
        right.set_ylabel("speed-up over retraining")
        fig.suptitle(f"{scenario} ({provenance.get('profile', '?')} profile)", fontsize=10)
        for suffix in ("svg", "png"):
            path = figures / f"{scenario}.{suffix}"
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)
    return written
