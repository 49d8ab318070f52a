"""The book's citations: author-year labels that tell every entry apart, and a bibliography
in which every entry is cited somewhere.

The labels come from the styles registered by book/_ext/forgetkit_sphinx.py (the same code
Sphinx runs); the rendered site is checked by tests/test_browser.py.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

pybtex_database = pytest.importorskip("pybtex.database")
pytest.importorskip("sphinxcontrib.bibtex")

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
# {cite}`a,b`, {cite:t}`a` in MyST; :cite:p:`a` in docstrings (reStructuredText, autodoc).
CITE = re.compile(r"(?:\{cite(?::[a-z]+)?\}|:cite(?::[a-z]+)?:)`([^`]+)`")


def _extension():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import forgetkit_sphinx
    finally:
        sys.path.pop(0)
    forgetkit_sphinx.register_citation_styles()
    return forgetkit_sphinx


def _labels(bib) -> dict[str, str]:
    style = _extension().AuthorYearStyle()
    return {e.key: e.label for e in style.format_entries(bib.entries.values())}


def cited_keys(root: Path = ROOT) -> Counter:
    """Every key cited in the book's pages, chapter sources and the package's docstrings."""
    files = [*root.glob("book/*.md"), *root.glob("book/src/*.md"), *root.glob("forgetkit/**/*.py")]
    keys: Counter = Counter()
    for path in files:
        for group in CITE.findall(path.read_text()):
            keys.update(k.strip() for k in group.split(",") if k.strip())
    return keys


def test_every_entry_has_its_own_label():
    labels = _labels(pybtex_database.parse_file(BIB))
    shared = {label: keys for label, keys in _group(labels).items() if len(keys) > 1}
    assert shared == {}, f"entries that would render with the same in-text label: {shared}"


def test_same_authors_same_year_get_letters():
    labels = _labels(pybtex_database.parse_file(BIB))
    assert labels["golatkar2020eternal"] == "Golatkar et al., 2020a"
    assert labels["golatkar2020forgetting"] == "Golatkar et al., 2020b"
    assert labels["azadkia2021simple"] == "Azadkia and Chatterjee, 2021"  # two authors
    assert labels["krizhevsky2009learning"] == "Krizhevsky, 2009"  # no letter when alone


def test_the_label_check_can_fail():
    """Two entries that differ only in title get a and b; without the letters they clash."""
    bib = pybtex_database.parse_string(
        "@misc{x, author={Doe, J. and Roe, R. and Poe, P.}, title={B}, year={2001}}\n"
        "@misc{y, author={Doe, J. and Moe, M. and Zoe, Z.}, title={A}, year={2001}}\n",
        "bibtex",
    )
    labels = _labels(bib)
    assert labels == {"y": "Doe et al., 2001a", "x": "Doe et al., 2001b"}
    plain = {key: label.rstrip("ab") for key, label in labels.items()}
    assert len(set(plain.values())) == 1


def _group(labels: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key, label in labels.items():
        groups.setdefault(label, []).append(key)
    return groups


def test_every_entry_is_cited_and_every_citation_exists():
    keys = set(pybtex_database.parse_file(BIB).entries)
    cited = set(cited_keys())
    assert sorted(keys - cited) == [], "entries in book/references.bib cited nowhere"
    assert sorted(cited - keys) == [], "citations of keys that book/references.bib lacks"


def test_the_citation_scan_finds_every_form(tmp_path):
    (tmp_path / "book" / "src").mkdir(parents=True)
    (tmp_path / "forgetkit").mkdir()
    (tmp_path / "book" / "src" / "a.md").write_text("{cite}`k1, k2` and {cite:t}`k3`\n")
    (tmp_path / "forgetkit" / "m.py").write_text('"""As in :cite:p:`k4`."""\n')
    assert set(cited_keys(tmp_path)) == {"k1", "k2", "k3", "k4"}
