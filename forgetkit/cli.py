"""``forgetkit``: the command line (``python -m forgetkit`` is the same).

forgetkit bench run ci --out results/ci            # the shipped ci grid
forgetkit bench run my.toml --executor process --workers 2
forgetkit bench run paper --executor ray --address auto
forgetkit bench plan ci                            # the cells, without running them
forgetkit bench report results/ci                  # the standard figures
forgetkit --version
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _bench(argv: list[str]) -> int:
    from forgetkit import bench
    from forgetkit.bench.engine import cell_key

    parser = argparse.ArgumentParser(prog="forgetkit bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) a grid")
    run.add_argument("config", help=f"a TOML file or a shipped config {list(bench.config.SHIPPED)}")
    run.add_argument("--out", default=None, help="results folder (default: bench-results/NAME)")
    run.add_argument("--executor", choices=bench.EXECUTORS, default="inline")
    run.add_argument("--workers", type=int, default=1, help="processes or Ray CPUs")
    run.add_argument("--address", default=None, help="an existing Ray cluster ('auto', host:port)")
    run.add_argument("--csv", action="store_true", help="also write results.csv")
    run.add_argument("--no-progress", action="store_true")
    tune = sub.add_parser("tune", help="tune every method with the same budget (Optuna)")
    tune.add_argument("config")
    tune.add_argument("--out", default=None)
    show = sub.add_parser("plan", help="list the cells of a grid and which are stored")
    show.add_argument("config")
    show.add_argument("--out", default=None)
    report = sub.add_parser("report", help="draw the standard figures of a results folder")
    report.add_argument("out")
    args = parser.parse_args(argv)
    created: Path | None = None  # the results folder this command made, if any
    try:
        if args.command == "report":
            from forgetkit.bench.report import draw

            for path in draw(args.out):
                print(path)
            return 0
        config = bench.load_config(args.config)
        out = args.out or f"bench-results/{config.name}"
        created = None if Path(out).exists() else Path(out)
        if args.command == "tune":
            from forgetkit.bench.tuning import tune as run_tuning

            best = run_tuning(config, out)
            for scenario, methods in best.items():
                for label, values in methods.items():
                    print(f"{scenario:<16} {label:<12} {values}")
            print(f"saved to {out}/tuned.json; `forgetkit bench run` uses it")
            return 0
        if args.command == "plan":
            from forgetkit.bench.engine import stored_rows

            for cell in bench.plan(config):
                done = stored_rows(out, cell_key(config, cell)) is not None
                print(f"{'done' if done else 'todo'}  {cell.describe()}")
            return 0
        df = bench.run(
            config, out, executor=args.executor, workers=args.workers,
            address=args.address, progress=False if args.no_progress else None, csv=args.csv,
        )  # fmt: skip
    except (bench.ConfigError, ValueError, RuntimeError, FileNotFoundError) as err:
        _remove_if_empty(created)
        print(f"forgetkit bench: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        _remove_if_empty(created)
        raise
    print(f"{len(df)} rows in {out}/results.parquet")
    return 0


def _remove_if_empty(folder: Path | None) -> None:
    """Remove a results folder that a failed command created and left without a file (empty
    subfolders included), so a failure leaves nothing that looks like results behind."""
    if folder is None or not folder.is_dir() or any(not p.is_dir() for p in folder.rglob("*")):
        return
    try:
        for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            sub.rmdir()
        folder.rmdir()
    except OSError:  # something appeared meanwhile: leave it
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] in ("-V", "--version"):
        from forgetkit import __version__

        print(f"forgetkit {__version__}")
        return 0
    if argv[0] == "bench":
        return _bench(argv[1:])
    print(f"forgetkit: unknown command {argv[0]!r}; commands: bench", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
