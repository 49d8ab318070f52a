"""Run a chapter's code as one Python program, without Jupyter: for a lent GPU machine.

A machine lent for a short while (see *Reproducing this book*, "Devices") has PyTorch and
the scientific stack but not the book's toolchain (Jupyter, papermill, myst-nb). The
chapter's results do not need it: a `paper` profile computes its numbers and saves them
with :func:`forgetkit.provenance.save_results` under ``book/results/``, and the normal
build displays them later. This runner reads the committed notebook ``book/NAME.ipynb``,
sets its parameters the way papermill would (a cell right after the one tagged
``parameters``), turns IPython magics into no-ops, and executes the code cells in order in
``book/``. It stands in for ``myst_nb.glue`` and ``IPython.display`` (outside a kernel they
have nowhere to put their output): both record what they were given in ``--log`` (JSON),
so a run can be checked.

Usage::

    python scripts/run_chapter.py lcodec --profile paper --device cuda --log lcodec.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MAGIC = re.compile(r"^(\s*)[%!].*$", re.M)


def chapter_code(name: str, parameters: dict[str, Any]) -> str:
    """The chapter's code cells as one program, with ``parameters`` set after the
    ``parameters`` cell (as papermill injects them) and magics replaced by ``pass``."""
    path = BOOK / f"{name}.ipynb"
    if not path.exists():
        known = sorted(p.stem for p in BOOK.glob("*.ipynb"))
        raise SystemExit(f"no chapter {name!r}: expected one of {known}")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parts, injected = [], False
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:  # a notebook executed by papermill carries one
            continue
        source = "".join(cell["source"])
        parts.append(MAGIC.sub(r"\1pass  # IPython magic, not run here", source))
        if "parameters" in tags:
            parts.append("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
            injected = True
    if not injected:
        raise SystemExit(f"{path}: no cell tagged 'parameters' to set {sorted(parameters)} after")
    return "\n\n".join(parts) + "\n"


def _stand_ins(log: dict[str, Any]) -> None:
    """Minimal ``myst_nb.glue`` and ``IPython.display`` that write into ``log``."""

    def text_of(value: Any) -> str:
        return str(getattr(value, "data", value))

    def glue(name: str, value: Any, display: bool = True) -> None:
        log["glue"][name] = text_of(value)

    def display(*values: Any, **_: Any) -> None:
        for v in values:
            log["display"].append(text_of(v))

    class Markdown:
        def __init__(self, data: str) -> None:
            self.data = data

    myst_nb = types.ModuleType("myst_nb")
    myst_nb.glue = glue  # type: ignore[attr-defined]
    sys.modules["myst_nb"] = myst_nb
    try:  # the real module where there is one (matplotlib asks IPython questions) ...
        import IPython.display as shown
    except ImportError:  # ... else only the submodule chapters import from
        shown = types.ModuleType("IPython.display")
        shown.Markdown = shown.HTML = Markdown  # type: ignore[attr-defined]
        sys.modules["IPython.display"] = shown
    shown.display = display  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter")
    parser.add_argument("--profile", default="paper", choices=("ci", "paper"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--log", type=Path, help="write what glue and display received here")
    parser.add_argument("--print-code", action="store_true", help="print the program, run nothing")
    args = parser.parse_args(argv)
    log_path = args.log.resolve() if args.log is not None else None
    code = chapter_code(args.chapter, {"PROFILE": args.profile, "DEVICE": args.device})
    if args.print_code:
        print(code)
        return 0
    log: dict[str, Any] = {"chapter": args.chapter, "profile": args.profile,
                           "device": args.device, "glue": {}, "display": []}  # fmt: skip
    _stand_ins(log)
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(ROOT))
    os.chdir(BOOK)  # chapters read bench/ and write results/ relative to book/
    started = time.perf_counter()
    try:
        exec(compile(code, f"book/{args.chapter}.ipynb", "exec"), {"__name__": "__main__"})
    finally:
        log["seconds"] = time.perf_counter() - started
        if log_path is not None:
            log_path.write_text(json.dumps(log, indent=1, default=str), encoding="utf-8")
    print(f"{args.chapter}: profile {args.profile}, device {args.device}, "
          f"{log['seconds']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
