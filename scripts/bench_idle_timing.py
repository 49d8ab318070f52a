"""Time a stored ``forgetkit bench`` run again on idle cores: seed 0, one cell at a time.

A long grid runs two cells at a time, often beside other work, so its seconds and peak
memory carry load that is not the method's. This reruns seed 0 of the config's original,
oracle and method cells (no gold standard) inline, one cell at a time, with the stored run's
tuned hyperparameters and a fresh checkpoint cache, so that the retraining the speed-ups
divide by is timed here as well. The load average before and after goes into the
provenance. Same seed, same numbers: the accuracies must equal the stored run's seed 0,
which the chapter checks.

Usage::

    FORGETKIT_DATA=/path/to/data python scripts/bench_idle_timing.py \\
        book/bench/cpu-cifar.toml --stored book/results/bench_cpu/cifar \\
        --out book/results/bench_cpu/cifar-idle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the stored run's config (a TOML file)")
    parser.add_argument("--stored", required=True, help="the stored run's folder (its tuned.json)")
    parser.add_argument("--out", required=True, help="a new folder for the timing run")
    parser.add_argument("--max-load", type=float, default=0.5,
                        help="start once the 1-minute load average is below this")  # fmt: skip
    parser.add_argument("--wait", type=float, default=600,
                        help="seconds to wait for it (a finished run keeps it up)")  # fmt: skip
    args = parser.parse_args()

    from forgetkit import bench
    from forgetkit.provenance import write_text_atomic

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "cells").exists():
        sys.exit(f"--out {out} exists and is not a bench results folder")
    deadline = time.monotonic() + args.wait
    while (load_start := os.getloadavg())[0] > args.max_load:
        if time.monotonic() > deadline:
            sys.exit(f"load average {load_start[0]:.2f} > --max-load {args.max_load} after "
                     f"{args.wait:.0f} s: the cores are not idle")  # fmt: skip
        time.sleep(10)
    config = bench.load_config(args.config)
    config = replace(config, seeds=(0,), oracle_seeds=(0,), gold={**config.gold, "n_models": 0})
    out.mkdir(parents=True, exist_ok=True)
    tuned = Path(args.stored) / "tuned.json"
    if tuned.exists():
        shutil.copyfile(tuned, out / "tuned.json")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FORGETKIT_CACHE"] = cache  # train the original and the oracle here
        bench.run(config, out, executor="inline", workers=1)
    provenance = json.loads((out / "provenance.json").read_text())
    provenance["extra"].update(
        load_average_start=list(load_start), load_average_end=list(os.getloadavg()),
        stored_run=str(args.stored),
        command="python scripts/bench_idle_timing.py " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    write_text_atomic(out / "provenance.json", json.dumps(provenance, indent=1))
    print(f"stored in {out}; load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
