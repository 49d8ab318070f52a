"""The standard figures of a benchmark run, drawn from its results folder.

``forgetkit bench report DIR`` writes, per scenario, the trade-off between forgetting (the
forget-set accuracy's distance to the oracle's) and utility (test accuracy), and the
speed-up over retraining from scratch against the same distance, as SVG and PNG files in
``DIR/figures``; every point is a method's mean over seeds, with its 95% interval.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forgetkit.bench.engine import load_results, summary


def tradeoff_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and method: forget-accuracy gap to the oracle, test accuracy, seconds and
    speed-up over retraining (oracle seconds / method seconds), means over seeds."""
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


def draw(out_dir: str | Path) -> list[Path]:
    """Draw the standard figures of the run in ``out_dir``; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, provenance = load_results(out_dir)
    table = tradeoff_table(df)
    figures = Path(out_dir) / "figures"
    figures.mkdir(exist_ok=True)
    written: list[Path] = []
    for scenario, part in table.groupby("scenario", sort=False):
        methods = part[part["method"] != "retrain"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2), constrained_layout=True)
        left.errorbar(methods["forget_gap"], methods["test_mean"], xerr=methods["forget_ci95"],
                      yerr=methods["test_ci95"], fmt="o", capsize=3)  # fmt: skip
        oracle = part[part["method"] == "retrain"]
        if len(oracle):
            left.axhline(float(oracle["test_mean"].iloc[0]), color="grey", ls="--", lw=1,
                         label="retrain (oracle)")  # fmt: skip
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
