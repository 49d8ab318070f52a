"""What one model costs to train, for the networks the cpu profile could use.

The gold standard of ``book/bench/cpu-*.toml`` trains about two hundred models per family
(N unlearned and N retrained models per side, N more for the floor, U-LiRA's shadows), so
the family that carries it should be the network that gives the most models per hour at a
useful accuracy. This script trains each candidate once with the recipe it would get, on
one thread, and stores its seconds, models per hour and test accuracy with provenance
(``book/results/bench_cpu/model_cost.json``); *Which method, when?* shows the table.

    python scripts/bench_model_cost.py --out book/results/bench_cpu/model_cost.json

Run it on idle cores: the seconds are wall-clock times. A candidate's ``epochs_timed`` may
be fewer than its recipe's (``--quick-epochs``), for a network too slow to train in full
here; its seconds are then extrapolated per epoch and its accuracy is not measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch


@dataclass(frozen=True)
class Candidate:
    dataset: str
    n_train: int | None  # None: the whole training part
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 6
    lr: float = 0.05
    schedule: str = "constant"
    timed_epochs: int | None = None  # fewer than ``epochs``: timed per epoch, no accuracy


CANDIDATES = (
    # cpu-mnist's recipe first; cpu-cifar's is vgg_small at width 0.25
    Candidate("mnist", 10000, "mlp", epochs=6),
    Candidate("mnist", 10000, "small_cnn", {"width": 0.5}, epochs=3, schedule="onecycle"),
    Candidate("mnist", 10000, "small_cnn", epochs=3, schedule="onecycle"),
    Candidate("cifar10-jpeg15k", None, "small_cnn", epochs=8, schedule="onecycle"),
    Candidate("cifar10-jpeg15k", None, "small_cnn", {"width": 2.0}, epochs=8,
              schedule="onecycle"),
    Candidate("cifar10-jpeg15k", None, "vgg_small", {"width": 0.25}, epochs=8,
              schedule="onecycle"),
    Candidate("cifar10-jpeg15k", None, "vgg_small", {"width": 0.5}, epochs=8,
              schedule="onecycle"),
    Candidate("cifar10-jpeg15k", None, "resnet18", {"width": 0.125}, epochs=8,
              schedule="onecycle", timed_epochs=1),
)  # fmt: skip


def measure(c: Candidate, test: int) -> dict[str, Any]:
    from forgetkit.data import load_dataset
    from forgetkit.metrics import accuracy
    from forgetkit.models import ModelConfig, build_model
    from forgetkit.train import TrainConfig, fit

    data = load_dataset(c.dataset).subsample(c.n_train, test, seed=0)
    model = build_model(ModelConfig.for_data(c.model, data, **c.options), seed=0)
    epochs = c.timed_epochs or c.epochs
    recipe = TrainConfig(epochs=epochs, lr=c.lr, schedule=c.schedule)
    start = time.perf_counter()
    fit(model, data.train, recipe, seed=0, progress=False)
    seconds = (time.perf_counter() - start) * c.epochs / epochs
    full = epochs == c.epochs
    return {
        **{k: v for k, v in asdict(c).items() if k != "timed_epochs"},
        "n_train": len(data.train), "epochs_timed": epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": seconds, "models_per_hour": 3600 / seconds,
        "test_accuracy": accuracy(model, data.test) if full else float("nan"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="store the table with provenance here (JSON)")
    parser.add_argument("--test", type=int, default=2000, help="test images (default 2000)")
    parser.add_argument("--only", type=int, nargs="*", help="candidate indices to run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started, load = time.perf_counter(), os.getloadavg()
    rows = []
    for i, c in enumerate(CANDIDATES):
        if args.only and i not in args.only:
            continue
        row = measure(c, args.test)
        rows.append(row)
        print(f"{c.dataset} {c.model} {c.options}: {row['seconds']:.1f} s per model, "
              f"{row['models_per_hour']:.0f} per hour, test accuracy "
              f"{row['test_accuracy']:.3f}", flush=True)  # fmt: skip
    if args.out:
        from forgetkit.provenance import Provenance, save_results

        provenance = Provenance.collect(
            "benchmark", "cpu", 0, time.perf_counter() - started, threads=1,
            command="python scripts/bench_model_cost.py " + " ".join(sys.argv[1:]),
            load_average_start=list(load), load_average_end=list(os.getloadavg()),
        )  # fmt: skip
        path = save_results(args.out, pd.DataFrame(rows), provenance)
        print(f"saved {len(rows)} rows to {path}: {provenance.describe()}")


if __name__ == "__main__":
    main()
