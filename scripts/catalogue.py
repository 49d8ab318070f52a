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


_ABBREVIATIONS = ("al", "e.g", "i.e", "vs", "cf", "Fig", "Eq", "approx", "etc", "resp")
TITLE_CHARS = 90  # longer first sentences are cut at a clause for the heading
THUMBNAIL_WIDTH = "35%"  # of the text column: beside the caption on a desktop and a phone


def _top_level(text: str) -> list[int]:
    """Nesting depth before each character of ``text``: brackets, ``$...$`` math and
    ```...``` code count, so that a split never falls inside a formula or a parenthesis."""
    depth, math, code, out = 0, False, False, []
    for char in text:
        out.append(depth + math + code)
        if char == "`" and not math:
            code = not code
        elif char == "$" and not code:
            math = not math
        elif not (math or code):
            depth += char in "([{"
            depth -= char in ")]}" and depth > 0
    return out


def sentences(caption: str) -> list[str]:
    """``caption`` split into its sentences (a full stop, then a space, outside brackets,
    formulas and code, and not after an abbreviation such as "et al.")."""
    depth, out, start = _top_level(caption), [], 0
    for i, char in enumerate(caption):
        if char != "." or depth[i] or caption[i + 1 : i + 2] != " ":
            continue
        word = caption[start:i].split()[-1:] or [""]
        if word[0].endswith(_ABBREVIATIONS):
            continue
        out.append(caption[start : i + 1].strip())
        start = i + 2
    if caption[start:].strip():
        out.append(caption[start:].strip())
    return out


def title_of(caption: str, limit: int = TITLE_CHARS) -> str:
    """A heading for a figure: its caption's first sentence without the full stop, cut at
    a clause (semicolon, else colon, else parenthesis or comma) when longer than ``limit``."""
    first = (sentences(caption) or [caption])[0].rstrip(".").strip()
    if len(first) <= limit:
        return first
    depth = _top_level(first)
    for marks in (("; ",), (": ",), (" (", ", ")):
        cuts = [i for i in range(20, limit) if not depth[i] and first[i : i + 2] in marks]
        if cuts:
            return first[: cuts[-1]].rstrip()
    words = [i for i in range(20, limit) if first[i] == " " and not depth[i]]
    return first[: words[-1]].rstrip(",;:") + " …" if words else first


def _clauses(text: str) -> list[str]:
    depth, out, start = _top_level(text), [], 0
    for i in range(len(text)):
        if text[i : i + 2] == ", " and not depth[i]:
            out.append(text[start:i])
            start = i + 2
    out.append(text[start:])
    return [c.strip() for c in out if c.strip()]


_SEED_CLAUSE = re.compile(r"^(?:(?P<role>.+?)\s+)?seeds?\s+(?P<numbers>[\d\s,()and]+)$")


def provenance_facts(record: FigureRecord) -> tuple[str, str]:
    """``(data, seeds)``: the record's ``source`` without the profile, device and seeds
    that the entry states on their own, and the seeds, each once and in order, with the
    roles the source gives them ("oracle 0, 1, 2; method 0")."""
    data, roles, seeds = [], [], set(record.seeds)
    for clause in _clauses(record.source):
        words = clause.split(maxsplit=1)
        if len(words) == 2 and (words[0], words[1]) in (
            ("profile", record.profile),
            ("device", record.device),
        ):
            continue
        match = _SEED_CLAUSE.match(clause)
        if match:
            numbers = sorted({int(n) for n in re.findall(r"\d+", match.group("numbers"))})
            seeds.update(numbers)
            if match.group("role"):
                roles.append(f"{match.group('role')} {', '.join(map(str, numbers))}")
            continue
        data.append(clause)
    listed = ", ".join(str(s) for s in sorted(seeds)) or "none (deterministic)"
    return ", ".join(data), "; ".join(roles) if roles else listed


def caption_without_source(caption: str, source: str) -> str:
    """The caption less the sentence that only restates the figure's source ("Computed at
    <source>."), which the entry's provenance line states once."""
    if not source:
        return caption
    kept = [s for s in sentences(caption) if not (source in s and len(s) - len(source) <= 25)]
    return " ".join(kept)


def _bibtex(record: FigureRecord, label: str, title_: str, caption: str, url: str) -> str:
    year = (record.provenance.get("date") or "")[:4] or "n.d."
    title = title_of(caption, limit=10_000).replace("{", "").replace("}", "")
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
    data, seeds = provenance_facts(record)
    where = record.device + (f" ({p['accelerator']})" if p.get("accelerator") else "")
    files = f"{FIGURES_DIR}/{record.name}"
    heading = title_of(caption)
    alt = re.sub(r"[`$\\]", "", heading)
    computed = f"- **Computed** at profile `{record.profile}` on {where}; **seeds** {seeds}"
    return "\n".join(
        [
            f"({record.name}-entry)=",
            f"### {heading}",
            "",
            f"```{{image}} {files}.svg",
            f":alt: {alt} (thumbnail; opens the figure in its chapter)",
            f":width: {THUMBNAIL_WIDTH}",
            ":align: right",
            ":loading: lazy",
            ":class: forgetkit-thumbnail",
            f":target: {chapter}.html#{label}",
            "```",
            "",
            f"{{numref}}`{label}` of {{doc}}`{chapter}`: "
            + caption_without_source(caption, record.source),
            "",
            computed + (f"; **data** {data}" if data else ""),
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
            meta["seeds"] = sorted(set(record.seeds))  # older records may repeat a seed
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
