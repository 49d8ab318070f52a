"""The figure catalogue: every published figure of the book, with downloads and a citation.

Called by ``scripts/build_book.py`` when it stages the book. Each chapter publishes its
figures with :func:`forgetkit.figures.publish_figure`, which leaves in the executed
notebook the figure's SVG and a record (data as CSV, provenance, size). Here the records
are read back, the SVG and CSV written to ``book/figures/`` of the staged sources (Sphinx's
``{download}`` role copies them into the site), and the catalogue's entries written
between the markers of ``book/figures.md``. Captions come from the chapters' own
``glue:figure`` directives, their ``{glue:text}`` values from the notebook, so the
catalogue says what the chapter says.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from forgetkit.figures import FigureRecord, read_records, write_figure_files
from forgetkit.provenance import write_text_atomic

CATALOGUE_START = "% BEGIN FIGURE CATALOGUE"
CATALOGUE_END = "% END FIGURE CATALOGUE"
FIGURES_DIR = "figures"
_DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{glue:figure\}\s+(\S+)\s*\n(.*?)^\1\s*$", re.M | re.S)
_OPTION = re.compile(r"^:(\w+):\s*(.*)$")
_GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::([^`]*))?`")


def figure_directives(source: str) -> dict[str, tuple[str, str]]:
    """``{glue key: (label, caption)}`` of the ``glue:figure`` directives of a MyST source."""
    out = {}
    for match in _DIRECTIVE.finditer(source):
        key, body = match.group(2), match.group(3)
        options, lines = {}, body.splitlines()
        while lines and _OPTION.match(lines[0]):
            option = _OPTION.match(lines.pop(0))
            options[option.group(1)] = option.group(2).strip()
        if "name" not in options:
            raise SystemExit(f"glue:figure {key!r} has no :name: (the catalogue links to it)")
        out[key] = (options["name"], " ".join(" ".join(lines).split()))
    return out


def glued_texts(notebook: dict) -> dict[str, str]:
    """The text/plain value of every glue of an executed notebook."""
    out = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            scrapbook = (output.get("metadata") or {}).get("scrapbook")
            if not scrapbook:
                continue
            prefix = scrapbook.get("mime_prefix", "")
            text = output.get("data", {}).get(prefix + "text/plain")
            if text is not None:
                out[scrapbook["name"]] = text if isinstance(text, str) else "".join(text)
    return out


def resolve_glue(caption: str, texts: dict[str, str], where: str) -> str:
    """``caption`` with its ``{glue:text}`` roles replaced by the glued values (as myst-nb
    shows them: strings without quotes, numbers through the role's format)."""

    def value(match: re.Match) -> str:
        key, spec = match.group(1), match.group(2)
        if key not in texts:
            raise SystemExit(f"{where}: a caption uses {{glue:text}}`{key}`, never glued")
        text = texts[key]
        try:
            literal = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            literal = text
        if spec:
            return format(literal, spec)
        return literal if isinstance(literal, str) else text

    return _GLUE_ROLE.sub(value, caption)


def _bibtex(record: FigureRecord, label: str, title_: str, caption: str, url: str) -> str:
    year = (record.provenance.get("date") or "")[:4] or "n.d."
    title = caption.split(". ")[0].rstrip(".").replace("{", "").replace("}", "")
    title = re.sub(r"[`$\\]", "", title)
    return (
        f"@misc{{forgetkit-{record.name},\n"
        f"  author       = {{{{The forgetkit authors}}}},\n"
        f"  title        = {{{{{title}}}}},\n"
        f"  howpublished = {{forgetkit: selective forgetting in deep networks, "
        f"chapter ``{title_}'', figure {label}}},\n"
        f"  year         = {{{year}}},\n"
        f"  url          = {{{url}}},\n"
        f"  note         = {{Profile {record.profile}, commit "
        f"{record.provenance.get('git_commit') or 'unknown'}}}\n"
        "}"
    )


def _entry(record, label, caption, chapter, title, url) -> str:
    p = record.provenance
    seeds = ", ".join(str(s) for s in record.seeds) or "none (deterministic)"
    where = record.device + (f" ({p['accelerator']})" if p.get("accelerator") else "")
    files = f"{FIGURES_DIR}/{record.name}"
    return "\n".join(
        [
            f"({record.name}-entry)=",
            f"### {record.name}",
            "",
            f"{{numref}}`{label}` of {{doc}}`{chapter}`: {caption}",
            "",
            f"- **Profile** `{record.profile}`; **data** {record.source}; **seeds** {seeds}; "
            f"**device** {where}",
            f"- **Commit** `{p.get('git_commit') or 'none'}`, forgetkit "
            f"{p.get('forgetkit_version')}, torch {p.get('torch_version')}, "
            f"{(p.get('date') or '')[:10]}",
            f"- **Download** {{download}}`vector (SVG) <{files}.svg>`, "
            f"{{download}}`data (CSV) <{files}.csv>`",
            "",
            "```bibtex",
            _bibtex(record, label, title, caption, url),
            "```",
            "",
        ]
    )


def build(book: Path, chapters: list[str], sources: Path, site_url: str) -> str:
    """Write every chapter's figures under ``book/figures`` and return the catalogue's
    MyST text. ``book`` holds the executed notebooks, ``sources`` the chapters' MyST."""
    entries, index = [], []
    for chapter in chapters:
        notebook = json.loads((book / f"{chapter}.ipynb").read_text())
        directives = figure_directives((sources / f"{chapter}.md").read_text())
        texts = glued_texts(notebook)
        published = read_records(notebook)
        if not published:
            continue
        title = next(
            (
                line[2:].strip()
                for cell in notebook["cells"]
                if cell["cell_type"] == "markdown"
                for line in "".join(cell["source"]).splitlines()
                if line.startswith("# ")
            ),
            chapter,
        )
        entries.append(f"## {title}\n")
        for record, svg in published:
            if record.name not in directives:
                raise SystemExit(
                    f"book/src/{chapter}.md publishes {record.name!r} but shows it in no "
                    "glue:figure directive"
                )
            label, caption = directives[record.name]
            caption = resolve_glue(caption, texts, f"book/src/{chapter}.md")
            url = f"{site_url.rstrip('/')}/book/{chapter}.html#{label}"
            write_figure_files(record, svg, book / FIGURES_DIR)
            entries.append(_entry(record, label, caption, chapter, title, url))
            meta = record.as_dict()
            meta.pop("csv")
            index.append(
                meta
                | {
                    "chapter": chapter,
                    "label": label,
                    "url": url,
                    "min_font_px": record.min_font_px,
                    "svg": f"{record.name}.svg",
                    "csv": f"{record.name}.csv",
                }
            )
    write_text_atomic(book / FIGURES_DIR / "figures.json", json.dumps(index, indent=1) + "\n")
    head = (
        f"Figures in all: {len(index)}. The records of all of them, as JSON: "
        f"{{download}}`figures.json <{FIGURES_DIR}/figures.json>`.\n\n"
    )
    return head + "\n".join(entries)


def fill(page: Path, text: str) -> None:
    """Replace what lies between the catalogue markers of ``page``."""
    body = page.read_text()
    start, end = body.find(CATALOGUE_START), body.find(CATALOGUE_END)
    if start < 0 or end < start:
        raise SystemExit(f"{page} lacks the lines {CATALOGUE_START!r} ... {CATALOGUE_END!r}")
    start += len(CATALOGUE_START)
    page.write_text(body[:start] + "\n\n" + text + "\n" + body[end:])
