"""Run one stage of the Makefile and time it.

    python3 scripts/stage.py NAME -- COMMAND [ARGS...]   # run, print the time, exit as it did
    python3 scripts/stage.py --summary FILE               # the table of a run's stage times

When ``STAGE_TIMES`` names a file, each stage appends ``name, seconds, status`` to it, so
``make test`` can print one table at the end. Standard library only: it also times the
stage that creates the virtual environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def run(name: str, command: list[str]) -> int:
    print(f"\n==> [{name}] {' '.join(command)}", flush=True)
    start = time.monotonic()
    try:
        code = subprocess.call(command)
    except FileNotFoundError as err:
        print(f"[{name}] cannot run {command[0]!r}: {err}", file=sys.stderr)
        code = 127
    seconds = time.monotonic() - start
    status = "ok" if code == 0 else f"FAILED (exit {code})"
    print(f"<== [{name}] {status} in {seconds:.0f} s", flush=True)
    if times := os.environ.get("STAGE_TIMES"):
        Path(times).parent.mkdir(parents=True, exist_ok=True)
        with open(times, "a") as f:
            f.write(f"{name}\t{seconds:.1f}\t{status}\n")
    return code


def summary(path: Path) -> int:
    rows = [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []
    print("\nstage          seconds  status")
    for name, seconds, status in rows:
        print(f"{name:<14} {float(seconds):7.0f}  {status}")
    total = sum(float(seconds) for _, seconds, _ in rows)
    print(f"{'total':<14} {total:7.0f}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--summary":
        return summary(Path(argv[1]))
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    return run(argv[0], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
