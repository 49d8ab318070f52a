"""The book's figures: one style, and figures published so that a reader can cite them.

A chapter draws with :func:`use_style` in effect and hands each finished figure to
:func:`publish_figure` instead of a bare ``glue``. That glues the figure as SVG (vector,
sharp at any width) under its name, for the chapter's ``glue:figure`` directive, and glues
beside it a record (``<name>--record``): the data behind the figure as CSV, where it came
from (profile, data, seeds, device, commit) and its size and smallest font. The book build
(``scripts/build_book.py``) reads the records out of the executed notebooks, writes the
SVG and CSV downloads and fills the figure catalogue page (``book/figures.md``).

Nothing is written to disk while a chapter runs, so the committed notebook is the single
store and a build without execution shows the same figures and downloads.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgetkit.provenance import Provenance, write_text_atomic

__all__ = [
    "CONTENT_WIDTH_PX",
    "MIN_FONT_PX",
    "FigureRecord",
    "method_styles",
    "plotted_data",
    "publish_figure",
    "read_records",
    "style",
    "use_style",
    "write_figure_files",
]

# Widest a figure's image is shown in the book: measured in headless Chromium on the built
# site (sphinx-book-theme, 1280 px window: the image inside a figure is 672 px wide).
CONTENT_WIDTH_PX = 672
# Smallest text a reader should be asked to read, in CSS pixels, at that width.
MIN_FONT_PX = 10.0
# CSS pixels per point: an SVG sized in pt is shown at this many px per pt when not scaled.
PX_PER_PT = 96 / 72
RECORD_SUFFIX = "--record"
RECORD_FORMAT = "forgetkit-figure"
RECORD_MIME = "application/x-forgetkit-figure"
_NAME = re.compile(r"^fig-[a-z0-9]+(?:-[a-z0-9]+)*$")

# The palette is matplotlib's tab10 in its usual order, stated so that every chapter's
# "C0" (blue), "C1" (orange), "C3" (red) mean the same colour whatever the local matplotlibrc.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def style() -> dict[str, Any]:
    """The book's matplotlib settings: no text under 10 pt, so that a figure up to
    ``CONTENT_WIDTH_PX / MIN_FONT_PX`` points (9.3 in) wide keeps every label at 10 px or
    more in the book; deterministic SVG output; frames on legends that sit over data."""
    from cycler import cycler

    return {
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "legend.title_fontsize": 10,
        "figure.titlesize": 12,
        "axes.prop_cycle": cycler(color=list(PALETTE)),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": True,
        "legend.framealpha": 0.85,
        "legend.edgecolor": "0.8",
        "lines.linewidth": 1.8,
        "figure.dpi": 100,
        "savefig.dpi": 200,
        # Text as text: selectable, searchable, read aloud, and a tenth of the size of
        # outlines; the browser draws it in its own sans-serif if it lacks DejaVu Sans.
        "svg.fonttype": "none",
        "svg.hashsalt": "forgetkit",  # stable element ids: regenerating changes only changes
    }


MARKERS = "osD^vP*Xph"


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, str]]:
    """A marker and a colour per method, fixed by its place in ``methods``, so that a
    method looks the same on every panel and every page that draws the same list (a
    panel's own colour cycle would give it the colour of its rank on that panel)."""
    methods = list(methods)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct, got {methods}")
    if len(methods) > len(MARKERS):
        raise ValueError(f"at most {len(MARKERS)} methods can be told apart, got {len(methods)}")
    return {
        m: {"marker": MARKERS[k], "color": PALETTE[k % len(PALETTE)]} for k, m in enumerate(methods)
    }


def use_style() -> None:
    """Apply :func:`style` to matplotlib for the rest of the process (a chapter's kernel)."""
    import matplotlib as mpl

    mpl.rcParams.update(style())


@dataclass(frozen=True)
class FigureRecord:
    """What the catalogue states about one figure."""

    name: str
    source: str
    profile: str
    device: str
    seeds: tuple[int, ...]
    width_pt: float
    height_pt: float
    min_font_pt: float
    csv: str
    provenance: dict[str, Any] = field(default_factory=dict)
    format: str = RECORD_FORMAT

    @property
    def min_font_px(self) -> float:
        """The smallest text's height in CSS px at the widest the book shows the figure."""
        shown = min(CONTENT_WIDTH_PX, self.width_pt * PX_PER_PT)
        return self.min_font_pt * shown / self.width_pt

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FigureRecord:
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a {RECORD_FORMAT} record: {str(data)[:80]!r}")
        return cls(**{**data, "seeds": tuple(int(s) for s in data["seeds"])})

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        # A string under a mime type of its own: nbformat allows JSON objects only under
        # application/...json, which glue's prefix turns into another type.
        return {RECORD_MIME: json.dumps(self.as_dict()), "text/plain": repr(self)}

    def __repr__(self) -> str:  # what a notebook shows as text/plain: short
        return f"FigureRecord({self.name!r}, {self.source!r})"


class _SVG:
    """An SVG document that IPython displays (and myst-nb glues) as image/svg+xml."""

    def __init__(self, text: str, name: str) -> None:
        self.text, self.name = text, name

    def _repr_svg_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<figure {self.name}>"


COLUMNS = ["panel", "title", "series", "kind", "x", "x_position", "y", "y_position", "value"]
# Float noise: a value this many times smaller than the largest of its series is a zero
# that arithmetic missed (-1.11e-14 beside values near 1).
_NOISE = 1e-9
_DIGITS = 6


@dataclass
class _Drawn:
    """One artist's points before the table is made: coordinates in data units, or NaN
    where the artist is placed in axes units (an axhline's x)."""

    panel: int
    title: str
    kind: str
    x: np.ndarray
    y: np.ndarray
    value: np.ndarray | None
    artist: Any
    series: str | None


def _colours(artist) -> set[tuple[float, float, float]]:
    """The RGB colours an artist (or a legend handle) is drawn in, to match one to the other."""
    from matplotlib.colors import to_rgb

    found = []
    for getter in ("get_color", "get_facecolor", "get_edgecolor", "get_markerfacecolor"):
        if hasattr(artist, getter):
            try:
                colour = getattr(artist, getter)()
            except (TypeError, ValueError):  # pragma: no cover - artist-specific getters
                continue
            arr = np.asarray(colour, dtype=object)
            found.extend([colour] if arr.ndim <= 1 else list(np.asarray(colour, dtype=float)))
    out = set()
    for colour in found:
        try:
            rgb = to_rgb(colour)
        except (ValueError, TypeError):
            continue
        out.add(tuple(round(c, 3) for c in rgb))
    return out


def _legend_entries(fig, ax) -> list[tuple[Any, str]]:
    """``(handle, text)`` of the legends that describe ``ax``: its own and the figure's."""
    entries = []
    for legend in [ax.get_legend(), *fig.legends]:
        if legend is None:
            continue
        texts = [t.get_text() for t in legend.get_texts()]
        entries.extend((h, t) for h, t in zip(legend.legend_handles, texts, strict=False) if t)
    return entries


def _own_label(artist) -> str | None:
    text = artist.get_label() if hasattr(artist, "get_label") else ""
    return None if not text or text.startswith("_") else str(text)


def _categories(axis, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The tick locations and labels of ``axis`` when it names categories (bar names, a
    heatmap's rows) and every drawn value lies at one of its ticks (give or take a dodge);
    otherwise None (a numeric axis)."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter

    formatter, locator = axis.get_major_formatter(), axis.get_major_locator()
    named = isinstance(formatter, FixedFormatter | StrCategoryFormatter) or (
        isinstance(formatter, FuncFormatter) and isinstance(locator, FixedLocator)
    )
    if not named or not axis.get_visible() or not axis.axes.axison:
        return None
    locs = np.asarray(axis.get_majorticklocs(), dtype=float)
    labels = np.asarray([str(t).strip() for t in formatter.format_ticks(locs)], dtype=object)
    keep = labels != ""
    locs, labels = locs[keep], labels[keep]
    values = values[np.isfinite(values)]
    if len(locs) == 0 or len(values) == 0:
        return None
    spacing = np.min(np.diff(np.sort(locs))) if len(locs) > 1 else 1.0
    if spacing <= 0:
        return None
    nearest = np.abs(values[:, None] - locs[None, :]).min(axis=1)
    if np.any(nearest > 0.45 * spacing):
        return None
    return locs, labels


def _number_text(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.{_DIGITS}g}"


def _rounded(values: np.ndarray, snap: bool = True) -> np.ndarray:
    """``values`` at ``_DIGITS`` significant digits, and with ``snap`` float noise set to
    zero (not on a log axis, where 1e-9 of the largest value is a real value)."""
    values = np.asarray(values, dtype=float).copy()
    finite = np.isfinite(values)
    if not finite.any():
        return values
    if snap:
        scale = np.max(np.abs(values[finite]))
        values[finite & (np.abs(values) <= _NOISE * scale)] = 0.0
    nonzero = finite & (values != 0)
    magnitude = np.floor(np.log10(np.abs(values[nonzero])))
    factor = 10.0 ** (_DIGITS - 1 - magnitude)
    values[nonzero] = np.round(values[nonzero] * factor) / factor
    return values


def _collect(fig) -> list[_Drawn]:
    """Every data-carrying artist of ``fig``, axes by axes."""
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection
    from matplotlib.container import BarContainer, ErrorbarContainer
    from matplotlib.image import AxesImage
    from matplotlib.patches import Polygon

    drawn: list[_Drawn] = []
    for panel, ax in enumerate(fig.axes):
        title = ax.get_title() or ax.get_ylabel() or ""

        def add(kind, x, y, artist, value=None, series=None, _at=(panel, title, ax)):
            _panel, _title, _ax = _at
            # Rounded artist by artist: one series' scale says what is noise, not another's.
            x = _rounded(np.ravel(np.asarray(x, dtype=float)), _ax.get_xscale() == "linear")
            y = _rounded(np.ravel(np.asarray(y, dtype=float)), _ax.get_yscale() == "linear")
            if value is not None:
                value = _rounded(np.ravel(np.asarray(value, dtype=float)))
            label = series if series is not None else _own_label(artist)
            drawn.append(_Drawn(_panel, _title, kind, x, y, value, artist, label))

        errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        caps = {id(cap) for c in errorbars for cap in c.lines[1]}
        for line in ax.get_lines():
            if id(line) in caps:
                continue
            x, y = line.get_data(orig=False)
            if not np.size(x):
                continue
            x_data, y_data = line.get_transform().contains_branch_seperately(ax.transData)
            if x_data and not y_data:  # axvline: y spans the axes
                add("vline", np.unique(np.asarray(x, dtype=float)), np.nan, line)
            elif y_data and not x_data:  # axhline
                add("hline", np.nan, np.unique(np.asarray(y, dtype=float)), line)
            else:
                add("line", x, y, line)
        for coll in ax.collections:
            if isinstance(coll, PathCollection):
                offsets = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
                if len(offsets):
                    add("points", offsets[:, 0], offsets[:, 1], coll)
            elif isinstance(coll, PolyCollection):
                for path in coll.get_paths():
                    xy = np.asarray(path.vertices, dtype=float)
                    add("area", xy[:, 0], xy[:, 1], coll)
        for container in errorbars:
            label = _own_label(container)
            for coll in container.lines[2]:
                if isinstance(coll, LineCollection):
                    segments = [np.asarray(s, dtype=float) for s in coll.get_segments()]
                    if segments:
                        xy = np.concatenate(segments)
                        add("error bar", xy[:, 0], xy[:, 1], coll, series=label)
            data_line = container.lines[0]
            if data_line is not None and label and not _own_label(data_line):
                for item in drawn:
                    if item.artist is data_line:
                        item.series = label
        for bars in (c for c in ax.containers if isinstance(c, BarContainer)):
            rects = bars.patches
            if getattr(bars, "orientation", "vertical") == "horizontal":
                x = [r.get_x() + r.get_width() for r in rects]
                y = [r.get_y() + r.get_height() / 2 for r in rects]
            else:
                x = [r.get_x() + r.get_width() / 2 for r in rects]
                y = [r.get_y() + r.get_height() for r in rects]
            add("bar", x, y, bars)
        for patch in (p for p in ax.patches if isinstance(p, Polygon)):
            xy = np.asarray(patch.get_xy(), dtype=float)  # histogram steps, filled areas
            add("polygon", xy[:, 0], xy[:, 1], patch)
        for image in (a for a in ax.get_images() if isinstance(a, AxesImage)):
            array = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
            if array.ndim == 3:  # RGB(A): keep the luminance
                array = array[..., :3].mean(axis=-1)
            left, right, bottom, top = image.get_extent()
            first, last = (top, bottom) if image.origin == "upper" else (bottom, top)
            rows, cols = np.indices(array.shape)
            x = left + (cols + 0.5) * (right - left) / array.shape[1]
            y = first + (rows + 0.5) * (last - first) / array.shape[0]
            add("image", x, y, image, value=array)
    return drawn


def _name_series(fig, drawn: list[_Drawn]) -> None:
    """Name each artist without a label of its own: after the legend entry drawn in its
    colour, a reference line after where it stands, anything else after its panel."""
    for panel, ax in enumerate(fig.axes):
        items = [d for d in drawn if d.panel == panel]
        taken = {d.series for d in items if d.series}
        entries = [(h, t) for h, t in _legend_entries(fig, ax) if t not in taken]
        for item in items:
            if item.series:
                continue
            colours = _colours(item.artist)
            match = [t for h, t in entries if colours & _colours(h)]
            if len(set(match)) == 1:
                item.series = match[0]
            elif item.kind in ("hline", "vline"):
                axis, values = ("y", item.y) if item.kind == "hline" else ("x", item.x)
                item.series = f"{axis} = " + ", ".join(f"{v:.4g}" for v in values)
        unnamed = [d for d in items if not d.series]
        kinds = Counter(d.kind for d in unnamed)
        seen: Counter[str] = Counter()
        for item in unnamed:
            seen[item.kind] += 1
            base = item.title or f"panel {panel}"
            if len(unnamed) == 1:
                item.series = base
            elif kinds[item.kind] == 1:
                item.series = f"{base} ({item.kind})"
            else:
                item.series = f"{base} ({item.kind} {seen[item.kind]})"


def plotted_data(fig) -> pd.DataFrame:
    """The numbers a figure draws, in long form: one row per point, bar or pixel.

    Columns: ``panel`` (axes index), ``title`` (the axes title, else its y label),
    ``series`` (the artist's label; else the legend entry drawn in its colour; else the
    reference line's position or the panel's title), ``kind`` (line, hline, vline, points,
    bar, error bar, polygon: a histogram's outline, area: a filled band's outline, image),
    ``x``, ``y`` and ``value`` (the pixel value for images). An axis that names categories
    (bars named "original", "retrain"; a heatmap's row names) gives the name, with the
    position kept as ``x_position`` / ``y_position`` where points are dodged off their tick.
    Numbers are rounded to 6 significant digits with float noise set to zero, and columns
    that would be empty are left out. Read from the artists themselves, so the CSV is what
    is drawn.
    """
    drawn = _collect(fig)
    if not drawn:
        return pd.DataFrame(columns=["panel", "title", "series", "kind", "x", "y"])
    _name_series(fig, drawn)
    frames = []
    for item in drawn:
        n = max(len(item.x), len(item.y))
        frames.append(
            pd.DataFrame(
                {
                    "panel": item.panel,
                    "title": item.title,
                    "series": item.series,
                    "kind": item.kind,
                    "x": np.broadcast_to(item.x, n),
                    "y": np.broadcast_to(item.y, n),
                    "value": np.full(n, np.nan) if item.value is None else item.value,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    panels = table.panel.to_numpy()
    for column in ("x", "y"):
        values = table[column].to_numpy(dtype=float)
        names = np.full(len(table), None, dtype=object)
        positions = np.full(len(table), np.nan)
        for panel, ax in enumerate(fig.axes):
            rows = panels == panel
            found = _categories(getattr(ax, f"{column}axis"), values[rows])
            if found is None:
                continue
            locs, labels = found
            here = values[rows]
            at = np.abs(here[:, None] - locs[None, :]).argmin(axis=1)
            names[rows] = np.where(np.isfinite(here), labels[at], "")
            if np.any(np.isfinite(here) & ~np.isclose(here, locs[at])):  # dodged off its tick
                positions[rows] = here
        if any(n is not None for n in names):  # other panels' numbers as the CSV has them
            table[column] = [
                _number_text(v) if n is None else n for n, v in zip(names, values, strict=True)
            ]
            table[f"{column}_position"] = positions
    blank = table.isna() | table.astype(str).eq("")
    empty = [c for c in table.columns if c not in ("panel", "series", "kind") and blank[c].all()]
    table = table.drop(columns=empty)
    return table[[c for c in COLUMNS if c in table.columns]]


def _tidy(data: pd.DataFrame) -> pd.DataFrame:
    """A chapter's own table with its float columns rounded as :func:`plotted_data` rounds."""
    data = data.copy()
    for column in data.columns:
        if pd.api.types.is_float_dtype(data[column]):
            data[column] = _rounded(data[column].to_numpy(dtype=float))
    return data


def _svg(fig) -> tuple[str, list[tuple[float, str]]]:
    """The figure as SVG, and ``(size in pt, text)`` of every text the renderer drew (so
    hidden axes' tick labels, which exist but are not drawn, do not count)."""
    from matplotlib.backends.backend_svg import RendererSVG

    drawn: list[tuple[float, str]] = []
    draw_text = RendererSVG.draw_text

    def recording(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            drawn.append((float(prop.get_size_in_points()), s))
        return draw_text(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    buffer = io.StringIO()
    RendererSVG.draw_text = recording
    try:
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        RendererSVG.draw_text = draw_text
    return buffer.getvalue(), drawn


_SVG_SIZE = re.compile(r'<svg[^>]*\swidth="([0-9.]+)pt"[^>]*\sheight="([0-9.]+)pt"')


def _check_args(name: Any, fig: Any, data: Any, source: Any, profile: Any, seeds: Any) -> None:
    from matplotlib.figure import Figure

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"publish_figure: name={name!r}; expected 'fig-' and lower-case words joined by "
            "'-', as in the glue:figure directive's key"
        )
    if not isinstance(fig, Figure):
        raise TypeError(f"publish_figure: fig is a {type(fig).__name__}; expected a Figure")
    if not fig.axes:
        raise ValueError(f"publish_figure({name!r}): fig has no axes: nothing is drawn")
    if data is not None and (not isinstance(data, pd.DataFrame) or data.empty):
        raise ValueError(
            f"publish_figure({name!r}): data={type(data).__name__}; expected a non-empty "
            "DataFrame (or None: the data is read from the figure's artists)"
        )
    for arg, value in (("source", source), ("profile", profile)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"publish_figure({name!r}): {arg}={value!r}; expected a text")
    bad = isinstance(seeds, str | bytes) or not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds
    )
    if bad:
        raise ValueError(f"publish_figure({name!r}): seeds={seeds!r}; expected integers")


def publish_figure(
    name: str,
    fig,
    *,
    source: str,
    profile: str,
    seeds: Sequence[int] | int = (),
    device: Any = "cpu",
    data: pd.DataFrame | None = None,
    provenance: Provenance | None = None,
    check_fonts: bool = True,
) -> FigureRecord:
    """Glue ``fig`` as SVG under ``name`` and its catalogue record under
    ``name + "--record"``; return the record.

    ``source`` says what data the figure shows (it also goes into the caption, via the
    chapter's ``{name}-source`` glue if it has one), ``profile``, ``seeds`` and ``device``
    how it was computed (seeds are kept once each, in order). ``data`` is the table behind
    the figure, offered as CSV (float columns rounded as the drawn data are); by default
    the numbers the figure draws (:func:`plotted_data`). ``provenance`` is the record of a
    stored run the figure is drawn from (its commit and versions are then the ones stated;
    the commit that drew the figure is kept as ``drawn_by``). Raises ``ValueError`` when a text
    of the figure would be shown under ``MIN_FONT_PX`` px in the book (``check_fonts``).
    """
    seeds = (seeds,) if isinstance(seeds, int | np.integer) else seeds
    _check_args(name, fig, data, source, profile, seeds)
    svg, texts = _svg(fig)
    size = _SVG_SIZE.search(svg)
    if size is None:  # pragma: no cover - matplotlib always writes both
        raise RuntimeError(f"publish_figure({name!r}): the SVG has no size in pt")
    width_pt, height_pt = float(size.group(1)), float(size.group(2))
    min_font = min((size for size, _ in texts), default=float("inf"))
    table = plotted_data(fig) if data is None else _tidy(data)
    if table.empty:
        raise ValueError(
            f"publish_figure({name!r}): the figure draws no lines, points, bars or images to "
            "offer as CSV; pass data=DataFrame with the numbers behind it"
        )
    if provenance is not None and not isinstance(provenance, Provenance):
        raise TypeError(
            f"publish_figure({name!r}): provenance is a {type(provenance).__name__}; "
            "expected a forgetkit.provenance.Provenance (or None: this run)"
        )
    here = Provenance.collect(profile, device, sorted({int(s) for s in seeds}), 0.0)
    stated = (provenance or here).as_dict()
    for key in ("seconds", "profile", "device", "seeds", "extra"):
        stated.pop(key)
    if provenance is not None:
        stated["drawn_by"] = here.git_commit
    record = FigureRecord(
        name=name,
        source=source,
        profile=profile,
        device=str(device),
        seeds=tuple(sorted({int(s) for s in seeds})),
        width_pt=width_pt,
        height_pt=height_pt,
        min_font_pt=float(min_font) if texts else 0.0,
        csv=table.to_csv(index=False, float_format="%.6g"),
        provenance=stated,
    )
    if check_fonts and texts and record.min_font_px < MIN_FONT_PX:
        smallest = min(texts)[1][:30]
        raise ValueError(
            f"publish_figure({name!r}): the text {smallest!r} is {min_font:g} pt in a figure "
            f"{width_pt / 72:.1f} in wide, {record.min_font_px:.1f} px when shown "
            f"{CONTENT_WIDTH_PX} px wide; expected at least {MIN_FONT_PX:g} px: make the "
            "figure narrower or the text larger (use_style() sets no text under 10 pt)"
        )
    from myst_nb import glue

    glue(name, _SVG(svg, name), display=False)
    glue(name + RECORD_SUFFIX, record, display=False)
    return record


def read_records(notebook: dict[str, Any]) -> list[tuple[FigureRecord, str]]:
    """Every published figure of an executed notebook (nbformat JSON), in order, as
    ``(record, svg)``; a record without its SVG glue is an error."""
    glued: dict[str, dict[str, Any]] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            key = (output.get("metadata") or {}).get("scrapbook", {}).get("name")
            if key:
                prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
                glued[key] = {k.removeprefix(prefix): v for k, v in output["data"].items()}
    out = []
    for key, bundle in glued.items():
        if not key.endswith(RECORD_SUFFIX):
            continue
        payload = bundle.get(RECORD_MIME)
        if payload is None:
            raise ValueError(f"glue {key!r} holds no {RECORD_MIME} record")
        payload = payload if isinstance(payload, str) else "".join(payload)
        record = FigureRecord.from_dict(json.loads(payload))
        svg = glued.get(record.name, {}).get("image/svg+xml")
        if svg is None:
            raise ValueError(f"figure record {key!r} has no SVG glued under {record.name!r}")
        out.append((record, svg if isinstance(svg, str) else "".join(svg)))
    return out


def write_figure_files(record: FigureRecord, svg: str, directory: str | Path) -> dict[str, Path]:
    """Write ``NAME.svg`` and ``NAME.csv`` into ``directory``, each atomically (a reader
    sees the old file or the new one, never a part)."""
    directory = Path(directory)
    return {
        "svg": write_text_atomic(directory / f"{record.name}.svg", svg),
        "csv": write_text_atomic(directory / f"{record.name}.csv", record.csv),
    }
