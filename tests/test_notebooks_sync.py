"""The committed chapter notebooks against their sources, and the conventions nbval needs.

Each chapter is written as ``book/src/<chapter>.md`` (MyST markdown, jupytext) and
committed as ``book/<chapter>.ipynb`` executed at the ``ci`` profile (``make notebooks``).
These tests catch a notebook edited without its source (or the reverse), a notebook that
was not executed top to bottom (nbval never compares cells without an execution count),
and a chapter that papermill cannot parameterise.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from conftest import load_script, toc_files

jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
SRC = BOOK / "src"
CHAPTERS = sorted(p.stem for p in SRC.glob("*.md"))
DEFAULTS = {"PROFILE": "ci", "DEVICE": "cpu", "SEED": 0}
REGENERATE = "run `make notebooks NB={name}` to regenerate it"


def committed(name: str):
    path = BOOK / f"{name}.ipynb"
    if not path.exists():
        pytest.fail(
            f"book/src/{name}.md has no committed book/{name}.ipynb: "
            + REGENERATE.format(name=name)
        )
    return nbformat.read(path, as_version=4)


def cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_chapters():
    assert CHAPTERS, "no chapter sources in book/src"


def test_every_notebook_has_a_source():
    orphans = sorted(p.stem for p in BOOK.glob("*.ipynb") if not (SRC / f"{p.stem}.md").exists())
    assert orphans == [], f"notebooks without a source in book/src: {orphans}"


def test_toc_and_sources_agree():
    docs = [d for d in toc_files() if Path(d).parent == Path("book")]
    names = {Path(d).name for d in docs}
    for doc in docs:
        name = Path(doc).name
        page, chapter = (BOOK / f"{name}.md").exists(), (SRC / f"{name}.md").exists()
        assert page or chapter, (
            f"_toc.yml names {doc}, but there is no {doc}.md or book/src/{name}.md"
        )
        assert not (page and chapter), f"{doc} is both a page (book/{name}.md) and a chapter source"
    missing = sorted(set(CHAPTERS) - names)
    assert missing == [], f"chapter sources not listed in _toc.yml (never built or run): {missing}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_matches_source(name):
    source = cells(jupytext.read(SRC / f"{name}.md"))
    stored = cells(committed(name))
    hint = REGENERATE.format(name=name)
    assert len(stored) == len(source), (
        f"book/{name}.ipynb has {len(stored)} cells, book/src/{name}.md has {len(source)}: {hint}"
    )
    for i, (a, b) in enumerate(zip(stored, source, strict=True)):
        assert a == b, f"cell {i} of book/{name}.ipynb differs from book/src/{name}.md: {hint}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_was_executed_in_order(name):
    nb = committed(name)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts, f"book/{name}.ipynb has no code cell"
    assert None not in counts, (
        f"book/{name}.ipynb has code cells without an execution count (nbval would skip them): "
        + REGENERATE.format(name=name)
    )
    assert counts == list(range(1, len(counts) + 1)), (
        f"book/{name}.ipynb was not executed top to bottom in one fresh kernel (counts {counts}): "
        + REGENERATE.format(name=name)
    )
    errors = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    ]
    assert errors == [], f"book/{name}.ipynb has error outputs in cells {errors}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_parameters_cell(name):
    nb = jupytext.read(SRC / f"{name}.md")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: needs exactly one code cell tagged `parameters`"
    assert tagged[0] is code[0], f"{name}: the `parameters` cell must be the first code cell"
    values = {}
    for node in ast.parse(tagged[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                values[target.id] = node.value.value
    for key, default in DEFAULTS.items():
        assert key in values, f"{name}: the parameters cell must assign {key} a literal"
        assert values[key] == default, (
            f"{name}: {key} defaults to {values[key]!r}; the ci profile needs {default!r}"
        )
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == [], f"{name}: the source carries a papermill injected-parameters cell"


@pytest.mark.parametrize("name", CHAPTERS)
def test_some_output_is_compared(name):
    nb = committed(name)
    checked = [
        c
        for c in nb.cells
        if c.cell_type == "code" and "nbval-check-output" in c.metadata.get("tags", [])
    ]
    assert checked, f"{name}: tag at least one cell `nbval-check-output` (a range check) for nbval"
    assert all(c.outputs for c in checked), (
        f"{name}: a cell tagged nbval-check-output prints nothing"
    )


@pytest.mark.parametrize("name", CHAPTERS)
def test_setup_cells_are_hidden_from_the_page(name):
    """The build tags the Colab install cell and papermill's injected-parameters cell
    ``remove-cell`` (scripts/build_book.py, hide_setup_cells); the parameters cell stays."""
    build_book = load_script("build_book")
    nb = committed(name)
    injected = nbformat.v4.new_code_cell('PROFILE = "paper"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(1, injected)  # where papermill puts it: after the parameters cell
    assert build_book.hide_setup_cells(nb, name) == 2
    removed = [c for c in nb.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert removed[0] is injected
    assert build_book.COLAB_MARK in removed[1].source and "%pip install" in removed[1].source
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert params and "remove-cell" not in params[0].metadata["tags"]


def test_a_chapter_without_its_colab_cell_stops_the_build():
    build_book = load_script("build_book")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(SystemExit, match="Colab install cell"):
        build_book.hide_setup_cells(nb, "empty")


HIDDEN = {"hide-input", "remove-input", "remove-cell"}
# Calls that teach the API: a plotting cell making one of them stays visible.
API = re.compile(
    r"\.unlearn\(|get_method\(|evaluate\(|summarize\(|train_original\(|fk\.retrain\("
    r"|\bfoci\(|codec_all\(|fisher_diagonal\("
)


def _needs_collapsing(cell) -> str | None:
    """Why a code cell is bookkeeping the page should collapse, or None."""
    tags = set(cell.metadata.get("tags", []))
    if "nbval-check-output" in tags:
        return "a range check for nbval"
    if 'if PROFILE == "paper"' in cell.source and "PAPER_RESULTS" in cell.source:
        return "the paper-profile block"
    if "plt.subplots(" in cell.source and not API.search(cell.source):
        return "plotting code"
    return None


@pytest.mark.parametrize("name", CHAPTERS)
def test_bookkeeping_code_is_collapsed(name):
    """Range checks, paper-profile blocks and plotting cells (those that call no method or
    metric of the API) are tagged hide-input, so the page reads as text and figures."""
    nb = jupytext.read(SRC / f"{name}.md")
    shown = [
        f"code cell {k} ({why}): {cell.source.splitlines()[0][:60]!r}"
        for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code")
        if (why := _needs_collapsing(cell)) and not HIDDEN & set(cell.metadata.get("tags", []))
    ]
    assert shown == [], f"{name}: tag these cells hide-input:\n" + "\n".join(shown)


def test_the_collapse_rule_can_fail():
    plot = nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2])")
    teach = nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nr = m.unlearn(original, f)")
    assert _needs_collapsing(plot) == "plotting code"
    assert _needs_collapsing(teach) is None
