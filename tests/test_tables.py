"""The book's one number format: pp named, no negative zero, short log-scale, censored caps."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_script

from forgetkit.tables import (
    Format,
    count,
    difference,
    format_frame,
    format_value,
    markdown_table,
    number,
    percent,
    pp,
    sci,
)


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (0.248, percent(), "24.8%"),
        (0.0, percent(), "0.0%"),
        (-0.0001, percent(), "0.0%"),  # rounds to zero: no sign
        (0.012, pp(), "+1.2 pp"),
        (-0.012, pp(), "-1.2 pp"),
        (-0.0001, pp(), "0.0 pp"),
        (0.012, pp(signed=False), "1.2 pp"),
        (-0.012, pp(signed=False), "-1.2 pp"),
        (-0.0002, number(3), "0.000"),
        (-0.0002, number(3, signed=True), "0.000"),
        (0.25, number(3, signed=True), "+0.250"),
        (1e-8, sci(), "1e-8"),
        (3e-6, sci(), "3e-6"),
        (2.5e-6, sci(1), "2.5e-6"),
        (1e3, sci(), "1e3"),
        (64.0, count(cap=100), "64"),
        (100.0, count(cap=100), "≥100"),
        (101.0, count(cap=100), "≥100"),
        (60000.0, count(), "60,000"),
        (-1234.0, count(signed=True), "-1,234"),
        (math.nan, percent(), "–"),
        (None, number(), "–"),
        (np.float32(0.5), percent(0), "50%"),
    ],
)
def test_format_value(value, fmt, text):
    assert format_value(value, fmt) == text


def test_a_bound_is_marked_and_a_plain_pattern_still_works():
    assert format_value(36.0, count(signed=True), at_least=True) == "≥+36"
    assert format_value(0.5, "{:.1f}") == "0.5"


def test_difference_marks_gaps_from_a_censored_value_as_bounds():
    ours = pd.DataFrame({"relearn": [100.0, 8.0, 100.0], "err": [0.1, 0.2, 0.3]})
    theirs = pd.DataFrame({"relearn": [64.0, 20.0, 100.0], "err": [0.1, 0.25, 0.3]})
    gap, at_least = difference(ours, theirs, {"relearn": 100})
    assert at_least["relearn"].tolist() == [True, False, False]
    assert not at_least["err"].any()
    assert gap["relearn"].iloc[0] == 36 and math.isnan(gap["relearn"].iloc[2])
    text = format_frame(gap, {"relearn": count(signed=True), "err": pp()}, at_least=at_least)
    assert text["relearn"].tolist() == ["≥+36", "-12", "–"]
    assert text["err"].tolist() == ["0.0 pp", "-5.0 pp", "0.0 pp"]
    with pytest.raises(ValueError, match="'nope'"):
        difference(ours, theirs, {"nope": 1})


def test_markdown_table_is_a_pipe_table_with_numbers_right_aligned():
    frame = pd.DataFrame({"error": [0.25, 0.0], "note": ["a|b", "c"]}, index=["x", "y"])
    text = markdown_table(frame, {"error": percent()}, index="model")
    lines = text.splitlines()
    assert lines[0] == "| model | error | note |"
    assert lines[1] == "| :--- | ---: | :--- |"
    assert lines[2] == "| x | 25.0% | a\\|b |"
    assert markdown_table(frame, index=False).splitlines()[0] == "| error | note |"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        Format("percentage")
    with pytest.raises(ValueError, match="digits"):
        Format("number", -1)
    with pytest.raises(ValueError, match=r"\['missing'\]"):
        format_frame(pd.DataFrame({"a": [1.0]}), {"missing": number()})
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame"):
        format_frame([1, 2], number())
    with pytest.raises(TypeError, match="fmt must be a Format"):
        format_value(1.0, 3)


CHAPTERS = Path(__file__).resolve().parent.parent / "book" / "src"
# Every chapter, the ones still to come included: each table goes through forgetkit.tables.
CONVERTED = tuple(sorted(p.stem for p in CHAPTERS.glob("*.md")))


def _cells(text: str) -> list[str]:
    return re.findall(r"```\{code-cell\}[^\n]*\n(.*?)\n```", text, flags=re.S)


@pytest.mark.parametrize("path", sorted(CHAPTERS.glob("*.md")), ids=lambda p: p.stem)
def test_every_glued_table_is_numbered_and_captioned(path):
    text = path.read_text(encoding="utf-8")
    keys = re.findall(r'glue_table\(\s*f?"([^"]+)"', text)
    directives = re.findall(  # further options (e.g. `:class: prose-table`) may follow `:name:`
        r":::\{table\} (.+)\n:name: (\S+)\n(?::[\w-]+:[^\n]*\n)*\n```\{glue:md\} (\S+)\n", text
    )
    named = {name for caption, name, key in directives if caption.strip() and name == key}
    for key in keys:
        if "{" in key:  # an f-string key: each expansion must be named
            pattern = re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(key)) + "$")
            assert any(pattern.match(n) for n in named), f"{path.name}: no table for {key}"
        else:
            assert key in named, f"{path.name}: glued table {key!r} has no numbered {{table}}"


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_chapters_show_no_unnumbered_table(name):
    text = (CHAPTERS / f"{name}.md").read_text(encoding="utf-8")
    for cell in _cells(text):
        last = cell.strip().splitlines()[-1] if cell.strip() else ""
        assert ".style.format(" not in cell, f"{name}: a Styler table bypasses forgetkit.tables"
        assert not re.search(r"\.(round\(\d*\)|head\(\)|to_html\(\))$", last), (
            f"{name}: a cell ends in a bare DataFrame ({last!r}); glue it with glue_table"
        )


def test_no_chapter_shows_a_glued_table_as_raw_text():
    """A cell that glues a table shows it only where its ``{table}`` directive is: no
    ``execute_result`` (the raw Markdown string) on the page."""
    import nbformat

    book = Path(__file__).resolve().parents[1] / "book"
    shown = []
    for path in sorted(book.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            glued = cell.cell_type == "code" and "glue_table(" in cell.source
            if glued and any(o.get("output_type") == "execute_result" for o in cell.outputs):
                shown.append(f"{path.name} cell {i}")
    assert not shown, f"glued tables also printed as text: {shown}"


def _bare_pipe_tables(text: str) -> list[int]:
    """Lines of pipe tables outside a ``:::{table} Caption`` fence."""
    inside, captioned, bare = False, False, []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith(":::{table}"):
            inside = True
            captioned = bool(line.removeprefix(":::{table}").strip())
        elif line.startswith(":::") and inside:
            inside = False
        elif re.match(r"\|\s*:?-{3,}", line) and not (inside and captioned):
            bare.append(lineno)
    return bare


@pytest.mark.parametrize("path", sorted(CHAPTERS.glob("*.md")), ids=lambda p: p.stem)
def test_every_written_table_is_numbered_and_captioned(path):
    """A pipe table typed into a chapter's prose sits in a ``:::{table} Caption`` fence with
    a ``:name:``, so it is numbered like the computed ones."""
    bare = _bare_pipe_tables(path.read_text(encoding="utf-8"))
    assert not bare, f"{path.name}: pipe tables outside a captioned {{table}} at lines {bare}"


def test_the_execution_report_table_is_numbered_and_captioned():
    build_book = load_script("build_book")
    record = build_book.Record("jit", "ci", "cpu", 12.5, "ok", "0.1.0", "abc1234", "2.14",
                               "2026-12-02", 2)  # fmt: skip
    text = build_book.report_table([record])
    assert "| {doc}`jit` | ci | cpu | 12.5 | ok |" in text
    assert ":name: tbl-execution-report" in text and not _bare_pipe_tables(text)


def test_official_speed_rows_keep_the_methods_order_and_refuse_unknown_ones():
    from forgetkit.tables import OFFICIAL_SPEED_FORMATS, official_speed

    frame = pd.DataFrame(
        {
            "method": ["ssd", "jit", "jit"],
            "what": ["unlearning step"] * 3,
            "network": ["resnet", "mlp", "vgg"],
            "official_s": [2.0, 1.0, 3.0],
            "forgetkit_s": [1.0, 0.5, 3.0],
            "ratio": [2.0, 2.0, 1.0],
            "max_rel_diff": [0.0, 1e-7, 0.0],
        }
    )
    rows = official_speed(frame, ["jit", "ssd"])
    assert list(rows.index) == [
        "jit: unlearning step, mlp",
        "jit: unlearning step, vgg",
        "ssd: unlearning step, resnet",
    ]
    assert set(OFFICIAL_SPEED_FORMATS) == set(rows.columns)
    text = markdown_table(rows, OFFICIAL_SPEED_FORMATS, index="step")  # unique labels format
    assert "| jit: unlearning step, mlp | 1.000 | 0.500 | 2.00 | 1.0e-7 |" in text
    with pytest.raises(ValueError, match=r"no stored rows for \['scrub'\]"):
        official_speed(frame, ["scrub"])


def test_official_speed_run_names_the_cpu_threads_and_rounds():
    from forgetkit.provenance import Provenance
    from forgetkit.tables import official_speed_run

    run = Provenance.collect("benchmark", "cpu", [0], 12.0, repeats=5)
    text = official_speed_run(run)
    assert text.startswith(run.describe())
    assert f"; {run.cpu}, {run.threads} threads, best of 5 rounds" in text
    run.extra.pop("repeats")
    assert official_speed_run(run).endswith(f"{run.threads} threads")
