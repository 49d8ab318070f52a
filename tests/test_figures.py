"""Published figures: what the glue holds, the data offered as CSV, readable text, atomic
files, the catalogue's reading of chapters, and errors that name the bad argument."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import load_script

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from forgetkit import figures
from forgetkit.figures import (
    FigureRecord,
    plotted_data,
    publish_figure,
    read_records,
    use_style,
    write_figure_files,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def notebook(monkeypatch) -> dict:
    """A notebook whose outputs are what ``glue`` displayed, as papermill would store them."""
    import myst_nb.ext.glue as glue_module

    cells: list[dict] = []

    def display(bundle, raw, metadata):
        assert raw
        cells.append({
            "cell_type": "code",
            "outputs": [{"output_type": "display_data", "data": bundle, "metadata": metadata}],
        })  # fmt: skip

    monkeypatch.setattr(glue_module, "ipy_display", display)
    return {"cells": cells}


@pytest.fixture
def fig():
    use_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 2.5))
    left.plot([0, 1, 2], [0.5, 0.25, 0.125], label="loss")
    left.scatter([0.5, 1.5], [0.3, 0.2], label="oracle")
    left.legend()
    left.set_title("training")
    right.bar([0, 1, 2], [3.0, 1.0, 2.0], label="counts")
    yield fig
    plt.close(fig)


def test_published_figure_round_trips_through_the_notebook(notebook, fig):
    record = publish_figure(
        "fig-test-toy", fig, source="a toy", profile="ci", seeds=(0, 1), device="cpu"
    )
    [(back, svg)] = read_records(notebook)
    assert back == record
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert f'width="{record.width_pt!r}pt"' in svg
    assert record.seeds == (0, 1) and record.profile == "ci" and record.device == "cpu"
    for key in ("git_commit", "forgetkit_version", "torch_version", "date", "platform"):
        assert key in record.provenance, key
    assert record.min_font_pt >= 10 and record.min_font_px >= figures.MIN_FONT_PX


def test_csv_holds_what_is_drawn(fig):
    table = pd.read_csv(io.StringIO(plotted_data(fig).to_csv(index=False)))
    assert table.columns.tolist() == ["panel", "title", "series", "kind", "x", "y"]  # no value
    line = table[table.series == "loss"]
    assert line.kind.unique().tolist() == ["line"]
    assert np.allclose(line.y, [0.5, 0.25, 0.125]) and (line.title == "training").all()
    points = table[table.series == "oracle"]
    assert np.allclose(points[["x", "y"]].to_numpy(), [[0.5, 0.3], [1.5, 0.2]])
    bars = table[table.kind == "bar"]
    assert np.allclose(bars.x, [0, 1, 2]) and np.allclose(bars.y, [3.0, 1.0, 2.0])
    assert (bars.panel == 1).all() and (bars.series == "counts").all()


def _csv(fig) -> pd.DataFrame:
    """The figure's CSV as a reader opens it: every cell as written."""
    text = plotted_data(fig).to_csv(index=False, float_format="%.6g")  # as publish_figure
    return pd.read_csv(io.StringIO(text), dtype=str)


def test_csv_names_categories_by_their_tick_labels():
    use_style()
    fig, (bars, dots, heat) = plt.subplots(1, 3, figsize=(9, 3))
    bars.bar(["original", "retrain"], [0.9, 0.1])
    bars.set_title("accuracy")
    for i, method in enumerate(["finetune", "scrub"]):  # dodged around each category
        dots.scatter(np.arange(2) + 0.2 * i - 0.1, [1, 2], label=method)
    dots.set_xticks([0, 1], ["forget", "test"])
    heat.imshow(np.arange(6.0).reshape(2, 3))
    heat.set_xticks(range(3), ["1e-3", "1e-2", "1e-1"])
    heat.set_yticks([0, 1], ["lr 0.1", "lr 1"])
    table = _csv(fig)
    bar = table[table.kind == "bar"]
    assert bar.x.tolist() == ["original", "retrain"] and bar.y.tolist() == ["0.9", "0.1"]
    assert bar.x_position.isna().all()  # on the tick: the name says it all
    scrub = table[table.series == "scrub"]
    assert scrub.x.tolist() == ["forget", "test"] and scrub.x_position.tolist() == ["0.1", "1.1"]
    pixels = table[table.kind == "image"]
    assert pixels.x.tolist() == ["1e-3", "1e-2", "1e-1"] * 2
    assert pixels.y.tolist() == ["lr 0.1"] * 3 + ["lr 1"] * 3
    assert pixels.value.tolist() == ["0", "1", "2", "3", "4", "5"]
    plt.close(fig)


def test_a_numeric_axis_with_named_ticks_stays_numeric():
    """Ticks labelled "0%", "50%", "100%" name positions, not categories: a point at 23
    is not "0%"."""
    fig, ax = plt.subplots()
    ax.plot([0, 23, 100], [1, 2, 3])
    ax.set_xticks([0, 50, 100], ["0%", "50%", "100%"])
    assert _csv(fig).x.tolist() == ["0", "23", "100"]
    plt.close(fig)


def test_csv_series_are_named_and_values_rounded():
    from matplotlib.lines import Line2D

    use_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    left.plot([0, 1, 2], [0.1 + 0.2, 0.5, 0.1 + 0.2 - 0.3], color="C0")  # no label of its own
    left.axhline(0.25, color="k", linestyle=":")
    proxy = Line2D([], [], color="C0")
    left.legend([proxy], ["original model"])
    right.scatter([0, 1], [1 / 3, 2 / 3], color="C1")
    right.scatter([0, 1], [1, 2], color="C2")
    right.set_ylabel("loss")
    table = _csv(fig)
    assert table.series.unique().tolist() == [
        "original model",  # from the legend entry drawn in its colour
        "y = 0.25",  # a reference line: where it stands
        "loss (points 1)",  # otherwise its panel's title or y label
        "loss (points 2)",
    ]
    line = table[table.series == "original model"]
    assert line.y.tolist() == ["0.3", "0.5", "0"]  # not 0.30000000000000004, -2.8e-17
    assert table[table.series == "loss (points 1)"].y.tolist() == ["0.333333", "0.666667"]
    hline = table[table.kind == "hline"]
    assert hline.y.tolist() == ["0.25"] and hline.x.isna().all()  # x spans the axes
    plt.close(fig)


def test_small_values_are_not_taken_for_noise():
    """Noise is judged series by series, and not at all on a log axis."""
    fig, (log, small) = plt.subplots(1, 2)
    log.semilogx([1e-12, 1e-3], [1, 2], label="sweep")
    small.plot([0, 1], [2e-12, 1e-11], label="tiny")
    small.plot([0, 1], [0, 1e5], label="huge")
    table = _csv(fig)
    assert table[table.series == "sweep"].x.tolist() == ["1e-12", "0.001"]
    assert table[table.series == "tiny"].y.tolist() == ["2e-12", "1e-11"]
    plt.close(fig)


def test_the_svg_keeps_its_text_as_text(notebook, fig):
    publish_figure("fig-test-text", fig, source="toy", profile="ci")
    [(_, svg)] = read_records(notebook)
    assert "<text" in svg and "training" in svg  # the title, searchable and selectable


def test_seeds_are_stated_once_and_in_order(notebook, fig):
    record = publish_figure("fig-test-seeds", fig, source="toy", profile="ci", seeds=(2, 0, 0, 1))
    assert record.seeds == (0, 1, 2)


def test_an_explicit_table_replaces_the_drawn_data(notebook, fig):
    data = pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.5, 0.25, 0.125]})
    record = publish_figure("fig-test-table", fig, source="toy", profile="ci", data=data)
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(record.csv)), data)


def test_the_svg_is_the_same_on_every_run(notebook, fig):
    publish_figure("fig-test-a", fig, source="toy", profile="ci")
    publish_figure("fig-test-b", fig, source="toy", profile="ci")
    (_, first), (_, second) = read_records(notebook)
    assert first == second


def test_text_too_small_at_the_page_width_is_refused(notebook):
    use_style()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("tiny label", fontsize=6)
    with pytest.raises(ValueError, match=r"fig-test-small.*'tiny label' is 6 pt.*10 px"):
        publish_figure("fig-test-small", fig, source="toy", profile="ci")
    assert notebook["cells"] == []  # nothing glued
    plt.close(fig)


def test_hidden_axes_text_does_not_count(notebook):
    """Tick labels of an axis turned off exist but are not drawn; they do not count."""
    use_style()
    fig, ax = plt.subplots(figsize=(9, 1.5))
    ax.imshow(np.eye(4))
    ax.tick_params(labelsize=4)
    ax.axis("off")
    ax.set_title("shown")
    record = publish_figure("fig-test-hidden", fig, source="toy", profile="ci")
    assert record.min_font_pt == 11.0
    plt.close(fig)


def test_wide_figures_shrink_their_text(notebook):
    """A figure wider than the page is scaled down, and so is its text."""
    use_style()
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="make the figure narrower"):
        publish_figure("fig-test-wide", fig, source="toy", profile="ci")
    plt.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "Figure 1"}, "name='Figure 1'"),
        ({"name": "fig-"}, "name='fig-'"),
        ({"fig": "not a figure"}, "fig is a str"),
        ({"data": pd.DataFrame()}, "data=DataFrame; expected a non-empty"),
        ({"data": [1, 2]}, "data=list"),
        ({"source": ""}, "source=''"),
        ({"profile": None}, "profile=None"),
        ({"seeds": "0"}, "seeds='0'"),
        ({"seeds": (0, 1.5)}, r"seeds=\(0, 1.5\)"),
    ],
)
def test_bad_input_is_named(notebook, fig, kwargs, match):
    args = {"name": "fig-test-bad", "fig": fig, "source": "toy", "profile": "ci"} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        publish_figure(args.pop("name"), args.pop("fig"), **args)
    assert notebook["cells"] == []


def test_a_figure_without_anything_drawn_needs_a_table(notebook):
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "only text")
    with pytest.raises(ValueError, match="pass data=DataFrame"):
        publish_figure("fig-test-empty", fig, source="toy", profile="ci")
    plt.close(fig)


def test_a_record_without_its_svg_is_an_error(notebook, fig):
    publish_figure("fig-test-lonely", fig, source="toy", profile="ci")
    del notebook["cells"][0]  # the SVG glue
    with pytest.raises(ValueError, match="no SVG glued under 'fig-test-lonely'"):
        read_records(notebook)


def test_files_are_written_atomically(tmp_path, notebook, fig, monkeypatch):
    record = publish_figure("fig-test-files", fig, source="toy", profile="ci")
    [(_, svg)] = read_records(notebook)
    paths = write_figure_files(record, svg, tmp_path / "figures")
    assert paths["svg"].read_text() == svg and paths["csv"].read_text() == record.csv

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    changed = FigureRecord(**{**record.as_dict(), "csv": "x\n1\n", "seeds": ()})
    with pytest.raises(OSError, match="disk full"):
        write_figure_files(changed, "<svg/>", tmp_path / "figures")
    assert paths["svg"].read_text() == svg and paths["csv"].read_text() == record.csv
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "fig-test-files.csv",
        "fig-test-files.svg",
    ]  # no temporary file left behind


def test_records_of_another_kind_are_refused():
    with pytest.raises(ValueError, match="not a forgetkit-figure record"):
        FigureRecord.from_dict({"format": "something else"})


# --------------------------------------------------------------------------- catalogue


def _catalogue():
    return load_script("catalogue")


SOURCE = """
Some text.

```{glue:figure} fig-test-toy
:name: fig-test-toy

A toy figure: {glue:text}`toy-source` at {glue:text}`toy-rate:.2f`.
```
"""


def test_catalogue_reads_captions_and_glued_values():
    catalogue = _catalogue()
    directives = catalogue.figure_directives(SOURCE)
    label, caption = directives["fig-test-toy"]
    assert label == "fig-test-toy"
    texts = {"toy-source": "'profile ci, toy data'", "toy-rate": "0.12345"}
    resolved = catalogue.resolve_glue(caption, texts, "toy.md")
    assert resolved == "A toy figure: profile ci, toy data at 0.12."
    with pytest.raises(SystemExit, match="toy-source"):
        catalogue.resolve_glue(caption, {}, "toy.md")


def test_catalogue_writes_entries_and_downloads(tmp_path, notebook, fig):
    catalogue = _catalogue()
    publish_figure("fig-test-toy", fig, source="toy data", profile="ci", seeds=3)
    notebook["cells"].append({
        "cell_type": "code",
        "outputs": [{
            "output_type": "display_data",
            "data": {"application/papermill.record/text/plain": "'profile ci, toy'"},
            "metadata": {"scrapbook": {"name": "toy-source",
                                       "mime_prefix": "application/papermill.record/"}},
        }],
    })  # fmt: skip
    notebook["cells"].append({"cell_type": "markdown", "source": "# A toy chapter\n"})
    (tmp_path / "toy.ipynb").write_text(json.dumps(notebook))
    src = tmp_path / "src"
    src.mkdir()
    (src / "toy.md").write_text(SOURCE.replace("{glue:text}`toy-rate:.2f`", "1"))
    text = catalogue.build(tmp_path, ["toy"], src, "https://owner.github.io/name/")
    assert "{numref}`fig-test-toy` of {doc}`toy`: A toy figure: profile ci, toy at 1." in text
    assert "{download}`vector (SVG) <figures/fig-test-toy.svg>`" in text
    assert "url          = {https://owner.github.io/name/book/toy.html#fig-test-toy}" in text
    assert "## A toy chapter" in text
    index = json.loads((tmp_path / "figures" / "figures.json").read_text())
    assert [e["label"] for e in index] == ["fig-test-toy"] and index[0]["seeds"] == [3]
    assert (tmp_path / "figures" / "fig-test-toy.csv").read_text().startswith("panel,")


def test_catalogue_titles_are_the_first_sentence():
    catalogue = _catalogue()
    caption = (
        "Forgetting on a quadratic. Grey: the loss $L_D$, i.e. the loss on all data. "
        "As Golatkar et al. show, it works."
    )
    assert catalogue.sentences(caption) == [
        "Forgetting on a quadratic.",
        "Grey: the loss $L_D$, i.e. the loss on all data.",
        "As Golatkar et al. show, it works.",
    ]
    assert catalogue.title_of(caption) == "Forgetting on a quadratic"
    long = "ToW of each model against the oracle's mean accuracies; blue dots: " + "x " * 40
    assert catalogue.title_of(long) == "ToW of each model against the oracle's mean accuracies"
    formula = "A model with parents $X_2$ and $X_7$ of $Y = " + "a + " * 30 + "b$ and noise."
    title = catalogue.title_of(formula)
    assert title.endswith(" …") and title.count("$") % 2 == 0 and len(title) <= 92


def _record(source: str, seeds: tuple[int, ...], profile="ci", device="cpu") -> FigureRecord:
    return FigureRecord(
        name="fig-test-toy", source=source, profile=profile, device=device, seeds=seeds,
        width_pt=400.0, height_pt=200.0, min_font_pt=10.0, csv="x\n1\n",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "seeds", "data", "stated"),
    [
        ("profile ci, Olivetti faces, seeds 0 and (0, 1, 2)", (0, 0, 1, 2), "Olivetti faces",
         "0, 1, 2"),
        ("profile ci, mnist[3000/1000, seed 0], oracle seeds (0, 1, 2), method seed 0, "
         "device cpu", (0, 1, 2), "mnist[3000/1000, seed 0]", "oracle 0, 1, 2; method 0"),
        ("a quadratic (no data)", (), "a quadratic (no data)", "none (deterministic)"),
        ("profile paper, device cuda, toy", (1,), "profile paper, device cuda, toy", "1"),
    ],
)  # fmt: skip
def test_catalogue_states_each_fact_once(source, seeds, data, stated):
    """The profile, device and seeds have their own place in an entry; the source's data
    keeps only what they do not say (a profile or device other than the record's stays)."""
    facts = _catalogue().provenance_facts(_record(source, seeds))
    assert facts == (data, stated)


def test_catalogue_entries_have_a_title_and_a_thumbnail(tmp_path, notebook, fig, monkeypatch):
    catalogue = _catalogue()
    source = "profile ci, toy data, seeds (0, 0, 1), device cpu"
    publish_figure("fig-test-toy", fig, source=source, profile="ci", seeds=(0, 0, 1))
    (tmp_path / "toy.ipynb").write_text(json.dumps(notebook))
    src = tmp_path / "src"
    src.mkdir()
    caption = "A toy figure. Red: the loss. Computed at {glue:text}`toy-source`."
    (src / "toy.md").write_text(
        SOURCE.replace("A toy figure: {glue:text}`toy-source` at {glue:text}`toy-rate:.2f`.",
                       caption)
    )  # fmt: skip
    texts = {"toy-source": repr(source)}
    monkeypatch.setattr(catalogue, "glued_texts", lambda notebook: texts)
    text = catalogue.build(tmp_path, ["toy"], src, "https://owner.github.io/name/")
    assert "(fig-test-toy-entry)=\n### A toy figure\n" in text
    assert "```{image} figures/fig-test-toy.svg\n" in text
    assert ":target: toy.html#fig-test-toy\n" in text
    assert "{numref}`fig-test-toy` of {doc}`toy`: A toy figure. Red: the loss.\n" in text
    assert text.count("cpu") == 1 and text.count("seeds") == 1
    assert "**seeds** 0, 1;" in text and "**data** toy data" in text


def test_histograms_and_bands_are_offered_as_outlines():
    fig, ax = plt.subplots()
    ax.hist([0.1, 0.2, 0.2, 0.7], bins=[0, 0.5, 1], histtype="step", label="forget")
    ax.fill_between([0, 1], 0.2, 0.4, label="oracle range")
    table = plotted_data(fig)
    step = table[table.series == "forget"]
    assert step.kind.unique().tolist() == ["polygon"] and step.y.max() == 3
    band = table[table.series == "oracle range"]
    assert band.kind.unique().tolist() == ["area"]
    assert np.isclose(band.y.min(), 0.2) and np.isclose(band.y.max(), 0.4)
    plt.close(fig)


def test_a_figure_of_stored_results_states_their_provenance(notebook, fig):
    from forgetkit.provenance import Provenance

    stored = Provenance.collect("paper", "cuda", [0, 1, 2], 3600.0)
    stored = Provenance(**{**stored.as_dict(), "seeds": (0, 1, 2), "git_commit": "abc1234"})
    record = publish_figure(
        "fig-test-stored", fig, source="stored", profile="paper", seeds=(0, 1, 2),
        device="cuda", provenance=stored,
    )  # fmt: skip
    assert record.provenance["git_commit"] == "abc1234"
    assert "drawn_by" in record.provenance
    with pytest.raises(TypeError, match="provenance is a dict"):
        publish_figure("fig-test-x", fig, source="s", profile="ci", provenance={"a": 1})


def test_method_styles_fix_marker_and_colour_by_place():
    from forgetkit.figures import MARKERS, PALETTE, method_styles

    styles = method_styles(["a", "b", "c"])
    assert styles["b"] == {"marker": MARKERS[1], "color": PALETTE[1]}
    assert method_styles(["x", "b"])["b"] == styles["b"]  # the place, not the name, decides
    with pytest.raises(ValueError, match="distinct"):
        method_styles(["a", "a"])
    with pytest.raises(ValueError, match="at most"):
        method_styles([str(k) for k in range(len(MARKERS) + 1)])
