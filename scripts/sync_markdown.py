"""Copy a chapter's prose from its MyST source into its committed notebook, without running it.

``make notebooks`` regenerates ``book/<chapter>.ipynb`` by executing ``book/src/<chapter>.md``,
which takes minutes per chapter. After an edit that touches only the prose (markdown cells),
this script brings the notebook back in line with its source instead: it reads the source
with jupytext, keeps every code cell of the committed notebook as it is (source, outputs,
execution counts), and replaces the markdown cells between each pair of code cells with the
source's. Markdown cells may be added or removed; code cells may not change, and a chapter
whose code differs from its notebook is refused (re-execute it with ``make notebooks``).

Usage::

    python scripts/sync_markdown.py why_forget jit     # write the notebooks
    python scripts/sync_markdown.py --check jit         # only say what would change

``tests/test_notebooks_sync.py`` is the check this keeps passing.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
SRC = BOOK / "src"


class CodeChanged(Exception):
    """The source's code cells are not the notebook's: only executing it can sync them."""


def _tags(cell: Any) -> list[str]:
    return sorted(cell.metadata.get("tags", []))


def _key(cell: Any) -> tuple[str, str, list[str]]:
    """What tests/test_notebooks_sync.py compares of a cell."""
    return cell.cell_type, cell.source, _tags(cell)


def _segments(cells: list[Any]) -> tuple[list[list[Any]], list[Any]]:
    """Split ``cells`` at its code cells: the runs of other cells around them, and the code
    cells themselves (``len(runs) == len(code) + 1``)."""
    runs: list[list[Any]] = [[]]
    code: list[Any] = []
    for cell in cells:
        if cell.cell_type == "code":
            code.append(cell)
            runs.append([])
        else:
            runs[-1].append(cell)
    return runs, code


def _prose_cell(source_cell: Any) -> Any:
    """A new notebook cell for a markdown (or raw) cell of the source, with the empty tag list
    that papermill gives every cell."""
    cell = copy.deepcopy(source_cell)
    cell.metadata.setdefault("tags", [])
    return cell


def merge(source: Any, stored: Any, name: str = "chapter") -> tuple[Any, int]:
    """The notebook ``stored`` with its prose replaced by ``source``'s, and how many cells
    changed (added, removed or edited).

    Raises :class:`CodeChanged` when the code cells differ in number, source or tags.
    """
    src_runs, src_code = _segments(source.cells)
    old_runs, old_code = _segments(stored.cells)
    if len(src_code) != len(old_code):
        raise CodeChanged(
            f"{name}: book/src/{name}.md has {len(src_code)} code cells, "
            f"book/{name}.ipynb has {len(old_code)}"
        )
    for k, (new, old) in enumerate(zip(src_code, old_code, strict=True)):
        if new.source != old.source or _tags(new) != _tags(old):
            raise CodeChanged(f"{name}: code cell {k} differs between the source and the notebook")

    merged = copy.deepcopy(stored)
    cells: list[Any] = []
    changed = 0
    reshaped = False
    for k, (new_run, old_run) in enumerate(zip(src_runs, old_runs, strict=True)):
        if len(new_run) == len(old_run):
            for new, old in zip(new_run, old_run, strict=True):
                cell = copy.deepcopy(old)
                if _key(new) != _key(old):
                    changed += 1
                    cell = _prose_cell(new)
                    cell["id"] = old.get("id")
                cells.append(cell)
        else:
            changed += max(len(new_run), len(old_run))
            reshaped = True
            cells.extend(_prose_cell(new) for new in new_run)
        if k < len(old_code):
            cells.append(copy.deepcopy(old_code[k]))
    merged.cells = cells
    if reshaped:
        # Number the ids as a regeneration would (scripts/build_book.py, read_source).
        for i, cell in enumerate(merged.cells):
            cell["id"] = f"cell-{i}"
    for cell in merged.cells:
        if cell.get("id") is None:
            cell.pop("id", None)
    return merged, changed


def sync(name: str, check: bool = False) -> int:
    """Bring ``book/<name>.ipynb``'s prose in line with ``book/src/<name>.md``; return how many
    cells changed. With ``check``, write nothing."""
    import jupytext
    import nbformat

    source = jupytext.read(SRC / f"{name}.md")
    path = BOOK / f"{name}.ipynb"
    stored = nbformat.read(path, as_version=4)
    merged, changed = merge(source, stored, name)
    if changed and not check:
        tmp = BOOK / f".{name}.ipynb.tmp"
        nbformat.write(merged, tmp)
        os.replace(tmp, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", help="chapter names, as in book/src/<name>.md")
    parser.add_argument("--check", action="store_true", help="report, write nothing")
    args = parser.parse_args(argv)
    status = 0
    for name in args.chapters:
        if not (SRC / f"{name}.md").exists() or not (BOOK / f"{name}.ipynb").exists():
            print(f"{name}: needs book/src/{name}.md and book/{name}.ipynb", file=sys.stderr)
            status = 2
            continue
        try:
            changed = sync(name, check=args.check)
        except CodeChanged as error:
            print(f"{error}: run `make notebooks NB={name}` instead", file=sys.stderr)
            status = 1
            continue
        verb = "would change" if args.check else "changed"
        print(f"{name}: {changed} markdown cell(s) {verb}")
        if args.check and changed:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
