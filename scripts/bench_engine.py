"""Benchmark the benchmark engine's overhead: a grid run against the same cells called directly.

Both sides run the same cells (a shipped or given config, inline, one thread) on a warm
checkpoint cache, so that only the engine's own work differs: planning, keys, storing each
cell atomically, collecting the table, provenance. The target is at most 5% over the direct
calls. One run each, in this order: a warm-up grid (fills the cache), the direct calls, the
grid into a fresh folder. Prints both times and the ratio, met or not.

Usage::

    FORGETKIT_DATA=/path/to/data python scripts/bench_engine.py [ci | path/to/config.toml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="ci")
    parser.add_argument("--gold", action="store_true", help="keep the config's gold cells")
    args = parser.parse_args()

    from forgetkit import bench
    from forgetkit.bench.engine import run_cell

    config = bench.load_config(args.config)
    if not args.gold:
        config = replace(config, gold={**config.gold, "n_models": 0})
    cells = bench.plan(config)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        bench.run(config, f"{tmp}/warm", progress=False, use_tuned=False)
        print(f"warm-up grid (fills the checkpoint cache): {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        rows = sum(len(run_cell(config, cell)) for cell in cells)
        direct = time.perf_counter() - t

        t = time.perf_counter()
        df = bench.run(config, f"{tmp}/grid", progress=False, use_tuned=False)
        grid = time.perf_counter() - t
    assert len(df) == rows, "the grid and the direct calls produced different row counts"
    overhead = grid / direct - 1
    print(f"{len(cells)} cells, {rows} rows")
    print(f"direct calls: {direct:.2f} s   grid: {grid:.2f} s   overhead: {overhead:+.1%}")
    print(f"target <= +5%: {'met' if overhead <= 0.05 else 'NOT met'} "
          "(one run each; the noise of a shared machine is a few percent)")  # fmt: skip


if __name__ == "__main__":
    main()
