"""Numbers in tables, formatted one way for the whole book.

A chapter builds a :class:`pandas.DataFrame` of raw values, says how each column is to be
read (:func:`percent`, :func:`pp`, :func:`number`, :func:`sci`, :func:`count`), and hands
both to :func:`markdown_table` (or :func:`glue_table`, which glues the result for a MyST
``{table}`` directive, so the table is numbered and captioned like a figure). In a chapter::

    glue_table("tbl-es-cost", frame, {"seconds": number(2)})

and in its Markdown (a colon fence: jupytext misreads nested backtick fences)::

    :::{table} The caption.
    :name: tbl-es-cost

    ```{glue:md} tbl-es-cost
    :format: myst
    ```
    :::

The rules are the book's, kept in one place so that every chapter follows them:

- fractions print as percentages, and differences of fractions as percentage points
  (``+1.2 pp``), never as "%";
- a value that rounds to zero prints without a sign (no ``-0.000``);
- log-scale values (noise scales, learning rates) print as ``1e-8``, not ``1.000000e-08``;
- a value at a cap (a relearn time that hit its epoch limit) is censored: it prints as
  ``≥100``, and a difference involving it as a bound (``≥+36``), never as an exact number;
- a missing value prints as ``–``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "CENSORED_NOTE",
    "Format",
    "count",
    "difference",
    "format_frame",
    "format_value",
    "glue_table",
    "markdown_table",
    "number",
    "percent",
    "pp",
    "sci",
]

MISSING = "–"
CENSORED_NOTE = "≥: censored at the cap (the true value is at least this)"

Kind = Literal["percent", "pp", "number", "sci", "count", "text"]


@dataclass(frozen=True)
class Format:
    """How to print one column: ``kind`` with ``digits`` after the point; ``cap`` marks
    values at or above it as censored; ``signed`` prints a ``+`` on positive values."""

    kind: Kind = "number"
    digits: int = 2
    cap: float | None = None
    signed: bool = False

    def __post_init__(self) -> None:
        kinds = ("percent", "pp", "number", "sci", "count", "text")
        if self.kind not in kinds:
            raise ValueError(f"kind must be one of {kinds}, got {self.kind!r}")
        if not isinstance(self.digits, int) or self.digits < 0:
            raise ValueError(f"digits must be a non-negative int, got {self.digits!r}")


def percent(digits: int = 1, *, signed: bool = False) -> Format:
    """A fraction in [0, 1] shown as a percentage: 0.248 -> ``24.8%``."""
    return Format("percent", digits, signed=signed)


def pp(digits: int = 1, *, signed: bool = True) -> Format:
    """A difference of two fractions shown in percentage points: 0.012 -> ``+1.2 pp``;
    ``signed=False`` drops the ``+`` where the words already give the direction ("a loss
    of 1.2 pp"), keeping the ``-`` of a value that went the other way."""
    return Format("pp", digits, signed=signed)


def number(digits: int = 2, *, cap: float | None = None, signed: bool = False) -> Format:
    """A plain decimal number."""
    return Format("number", digits, cap=cap, signed=signed)


def sci(digits: int = 0) -> Format:
    """A log-scale value in short scientific notation: 1e-08 -> ``1e-8``, 2.5e-06 ->
    ``2.5e-6`` (with ``digits=1``)."""
    return Format("sci", digits)


def count(*, cap: float | None = None, signed: bool = False) -> Format:
    """A whole number (epochs, samples) with thousands separated as in the prose
    (``60,000``); ``cap`` marks values at the cap as censored."""
    return Format("count", 0, cap=cap, signed=signed)


def _unsigned_zero(text: str) -> str:
    """``-0.0`` -> ``0.0`` and ``+0.0`` -> ``0.0``: a value that rounds to zero has no sign."""
    if text[:1] in "+-" and not any(c in "123456789" for c in text.split("e")[0]):
        return text[1:]
    return text


def format_value(value: Any, fmt: Format | str, *, at_least: bool = False) -> str:
    """``value`` printed by the rules of ``fmt`` (a :class:`Format`, or a ``str.format``
    pattern for a one-off); ``at_least`` marks it censored (``≥``)."""
    if isinstance(fmt, str):
        return fmt.format(value)
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt must be a Format or a format string, got {type(fmt).__name__}")
    if fmt.kind == "text":
        return MISSING if value is None else str(value)
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return MISSING
    x = float(value)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    censored = at_least or (fmt.cap is not None and x >= fmt.cap)
    if fmt.cap is not None and x >= fmt.cap and not at_least:
        x = float(fmt.cap)
    sign = "+" if fmt.signed else ""
    if fmt.kind == "percent":
        text = f"{100 * x:{sign}.{fmt.digits}f}" + "%"
    elif fmt.kind == "pp":
        text = f"{100 * x:{sign}.{fmt.digits}f}"
    elif fmt.kind == "count":
        text = f"{x:{sign},.0f}"
    elif fmt.kind == "sci":
        mantissa, exponent = f"{x:.{fmt.digits}e}".split("e")
        text = f"{mantissa}e{int(exponent)}"
    else:
        text = f"{x:{sign}.{fmt.digits}f}"
    text = _unsigned_zero(text) + (" pp" if fmt.kind == "pp" else "")
    return ("≥" if censored else "") + text


def difference(
    ours: pd.DataFrame, theirs: pd.DataFrame, caps: Mapping[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ours - theirs`` and a mask of the cells that are only a lower bound: those where
    ``ours`` sits at its column's cap (censored), so the true gap is at least the printed one.
    A cell where ``theirs`` is at the cap is not a bound either way and becomes NaN."""
    caps = dict(caps or {})
    gap = ours - theirs
    at_least = pd.DataFrame(False, index=gap.index, columns=gap.columns)
    for column, cap in caps.items():
        if column not in gap:
            raise ValueError(f"caps names column {column!r}, not in {list(gap.columns)}")
        ours_capped = ours[column] >= cap
        theirs_capped = theirs[column] >= cap
        at_least[column] = ours_capped & ~theirs_capped
        gap.loc[theirs_capped, column] = math.nan
    return gap, at_least


def format_frame(
    frame: pd.DataFrame,
    formats: Mapping[Any, Format | str] | Format,
    *,
    at_least: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``frame`` with every cell printed as text by its column's format (one
    :class:`Format` for all columns, or a mapping column -> format; columns not named keep
    ``str``). ``at_least`` (booleans, same index; missing columns count as False) marks
    cells censored."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(formats, Format):
        formats = dict.fromkeys(frame.columns, formats)
    unknown = [c for c in formats if c not in frame.columns]
    if unknown:
        raise ValueError(f"formats name columns {unknown} that the frame lacks: {list(frame)}")
    out = pd.DataFrame(index=frame.index, columns=frame.columns, dtype=object)
    for column in frame.columns:
        fmt = formats.get(column, Format("text"))
        for row in frame.index:
            bound = (
                at_least is not None
                and column in at_least.columns
                and bool(at_least.loc[row, column])
            )
            out.loc[row, column] = format_value(frame.loc[row, column], fmt, at_least=bound)
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    frame: pd.DataFrame,
    formats: Mapping[Any, Format | str] | Format | None = None,
    *,
    at_least: pd.DataFrame | None = None,
    index: bool | str = True,
) -> str:
    """A Markdown pipe table of ``frame`` (numbers right-aligned), for a MyST ``{table}``
    directive. ``index`` keeps the row labels (a string names their column)."""
    text = format_frame(frame, formats or {}, at_least=at_least) if formats is not None else frame
    header = [_cell(c) for c in frame.columns]
    align = ["---:" if formats is not None and c in _formatted(formats, frame) else ":---"
             for c in frame.columns]  # fmt: skip
    rows = [[_cell(v) for v in row] for row in text.astype(str).values.tolist()]
    if index is not False:
        name = index if isinstance(index, str) else (frame.index.name or "")
        header = [_cell(name), *header]
        align = [":---", *align]
        rows = [[_cell(label), *row] for label, row in zip(frame.index, rows, strict=True)]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def _formatted(formats: Mapping[Any, Format | str] | Format, frame: pd.DataFrame) -> set[Any]:
    if isinstance(formats, Format):
        return set() if formats.kind == "text" else set(frame.columns)
    return {c for c, f in formats.items() if not (isinstance(f, Format) and f.kind == "text")}


def glue_table(
    key: str,
    frame: pd.DataFrame,
    formats: Mapping[Any, Format | str] | Format | None = None,
    **kwargs: Any,
) -> None:
    """Glue :func:`markdown_table` under ``key`` for a MyST ``{table}`` directive holding
    ``{glue:md}`` with ``:format: myst``, which numbers and captions it. Returns nothing, so
    that a cell ending in it shows no raw Markdown (:func:`markdown_table` gives the text)."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(markdown_table(frame, formats, **kwargs)), display=False)


OFFICIAL_SPEED_FORMATS: dict[str, Format] = {
    "official structure (s)": number(3),
    "forgetkit (s)": number(3),
    "speed-up": number(2),
    "max. rel. difference": sci(1),
}


def official_speed(frame: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The rows of ``scripts/bench_official.py``'s stored table for ``methods``, as a
    chapter's cost section shows them: the step timed and its network, both times, the speed-up
    (the official structure's time over forgetkit's) and the largest relative difference of
    the results. Format with :data:`OFFICIAL_SPEED_FORMATS`.

    Parameters
    ----------
    frame
        The stored table (``load_results("results/bench_official.json")[0]``).
    methods
        The registered method names whose rows to show, in this order.
    """
    known = list(dict.fromkeys(frame["method"]))
    missing = [m for m in methods if m not in known]
    if missing:
        raise ValueError(f"official_speed: no stored rows for {missing}; the table has {known}")
    rows = pd.concat([frame[frame["method"] == m] for m in methods])
    return pd.DataFrame(
        {  # one row per (step, network): a unique label, as format_frame needs
            "step": (rows["method"] + ": " + rows["what"] + ", " + rows["network"]).to_numpy(),
            "official structure (s)": rows["official_s"].to_numpy(),
            "forgetkit (s)": rows["forgetkit_s"].to_numpy(),
            "speed-up": rows["ratio"].to_numpy(),
            "max. rel. difference": rows["max_rel_diff"].to_numpy(),
        }
    ).set_index("step")


def official_speed_run(provenance: Any) -> str:
    """``scripts/bench_official.py``'s stored run in one line, for a chapter: its provenance,
    the CPU and threads (ratios near one change from machine to machine) and how many timed
    rounds each time is the best of.

    Parameters
    ----------
    provenance
        The stored run's :class:`~forgetkit.provenance.Provenance`.
    """
    rounds = provenance.extra.get("repeats")
    return f"{provenance.describe()}; {provenance.cpu}, {provenance.threads} threads" + (
        f", best of {rounds} rounds" if rounds else ""
    )
