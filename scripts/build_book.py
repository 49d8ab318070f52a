"""Execute the book's chapters and build the site; regenerate the committed notebooks.

Two commands (the Makefile calls both; see ``make help``):

``build``
    Executes every notebook chapter listed in ``_toc.yml`` with papermill, each in a fresh
    kernel with ``PROFILE`` and ``DEVICE`` injected, into ``_build/executed/``; stops at the
    first failing cell and prints its traceback. Then stages the book sources with the
    executed notebooks and a filled-in execution report under ``_build/src`` and runs
    ``jupyter-book build --all -W -n --keep-going`` on them (execution off: already done).
    The site ends up in ``_build/html``.

``notebooks``
    Regenerates the committed ``book/<chapter>.ipynb`` from ``book/src/<chapter>.md``
    (jupytext), executed in place by papermill with the default parameters (the ``ci``
    profile), so that nbval has reference outputs to compare against.

Chapters run with ``book/`` as their working directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
SRC = BOOK / "src"
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
STAGE = BUILD / "src"
HTML = BUILD / "html"
REPORT_START = "% BEGIN EXECUTION REPORT"
REPORT_END = "% END EXECUTION REPORT"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------- chapters


def toc_files() -> list[str]:
    """Every document of ``_toc.yml`` in reading order, as paths without suffix."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part.get("chapters", []))
    return files


def chapter_name(doc: str) -> str | None:
    """The chapter name if ``doc`` is a notebook chapter (it has a source in book/src)."""
    name = Path(doc).name
    if Path(doc).parent == Path("book") and (SRC / f"{name}.md").exists():
        return name
    return None


def notebook_chapters() -> list[str]:
    """The notebook chapters in reading order; fails on a toc entry that names no file."""
    chapters = []
    for doc in toc_files():
        name = chapter_name(doc)
        if name is not None:
            chapters.append(name)
        elif not any((ROOT / f"{doc}{ext}").exists() for ext in (".md", ".ipynb")):
            sys.exit(f"_toc.yml names {doc!r}, but neither {doc}.md nor book/src/ has it")
    return chapters


def read_source(name: str):
    """The chapter's MyST source as a notebook (no outputs), with cell ids numbered in order
    rather than random, so that regenerating a notebook changes only what changed."""
    import jupytext

    nb = jupytext.read(SRC / f"{name}.md")
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


# --------------------------------------------------------------------------- execution


@dataclass
class Record:
    """One chapter's execution, as shown in the execution report."""

    chapter: str
    profile: str
    device: str
    seconds: float
    status: str
    forgetkit: str
    commit: str | None
    torch: str
    date: str
    threads: int


def execute(name: str, output: Path, parameters: dict[str, object]) -> float:
    """Run the chapter's source in a fresh kernel into ``output``; return the seconds.

    Raises ``SystemExit`` with the failing cell's traceback when a cell fails.
    """
    import papermill as pm

    # No progress bars in a stored notebook: the kernel inherits this environment.
    os.environ["FORGETKIT_PROGRESS"] = "0"
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            read_source(name),
            str(output),
            parameters=parameters or None,
            cwd=str(BOOK),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
    except pm.PapermillExecutionError as err:
        seconds = time.perf_counter() - start
        trace = ANSI.sub("", "\n".join(err.traceback))
        print(
            f"\nFAILED: chapter {name!r} (book/src/{name}.md), cell {err.cell_index} "
            f"[{err.exec_count}], after {seconds:.1f} s: {err.ename}: {err.evalue}\n"
            f"{'-' * 78}\n{err.source}\n{'-' * 78}\n{trace}\n{'-' * 78}\n"
            f"The executed notebook, with the error, is {output.relative_to(ROOT)}.",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    return time.perf_counter() - start


def run_chapters(profile: str, device: str, only: list[str] | None) -> list[Record]:
    import torch

    import forgetkit
    from forgetkit.provenance import git_commit

    chapters = notebook_chapters()
    if only:
        unknown = sorted(set(only) - set(chapters))
        if unknown:
            sys.exit(f"not notebook chapters in _toc.yml: {unknown}; choose from {chapters}")
        chapters = [c for c in chapters if c in only]
    commit = git_commit(ROOT)
    records: list[Record] = []
    report = EXECUTED / "report.json"
    EXECUTED.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")

    for i, name in enumerate(chapters, 1):
        print(f"  [{i}/{len(chapters)}] {name}: profile {profile}, device {device} ...", flush=True)
        record = Record(
            name,
            profile,
            device,
            0.0,
            "failed",
            forgetkit.__version__,
            commit,
            torch.__version__,
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            torch.get_num_threads(),
        )
        records.append(record)
        started = time.perf_counter()
        try:
            record.seconds = execute(
                name, EXECUTED / "book" / f"{name}.ipynb", {"PROFILE": profile, "DEVICE": device}
            )
        except SystemExit:
            record.seconds = time.perf_counter() - started
            save()
            raise
        record.status = "ok"
        save()
        print(f"  [{i}/{len(chapters)}] {name}: ok in {record.seconds:.1f} s", flush=True)
    return records


# --------------------------------------------------------------------------- staging


def report_table(records: list[Record]) -> str:
    """The execution report's table, in MyST markdown: what all chapters shared, then one
    row per chapter."""
    if not records:
        return (
            "This build executed no chapter: it shows the outputs stored in the committed "
            "notebooks (`book/<chapter>.ipynb`, profile `ci`).\n"
        )
    first = records[0]
    lines = [
        f"Built {first.date} with forgetkit {first.forgetkit} (commit "
        f"`{first.commit or 'none: not a git checkout'}`), torch {first.torch}, "
        f"{first.threads} CPU threads.",
        "",
        ":::{table} The chapters this build executed: profile, device, seconds and outcome.",
        ":name: tbl-execution-report",
        "",
        "| chapter | profile | device | seconds | status |",
        "|---|---|---|---:|---|",
    ]
    for r in records:
        lines.append(
            f"| {{doc}}`{r.chapter}` | {r.profile} | {r.device} | {r.seconds:.1f} | {r.status} |"
        )
    total = sum(r.seconds for r in records)
    lines += [":::", "", f"Total execution time: {total:.0f} s ({len(records)} notebooks)."]
    return "\n".join(lines) + "\n"


def fill_report(page: Path, table: str) -> None:
    """Replace the table part between the report markers of ``page``."""
    text = page.read_text()
    start, end = text.find(REPORT_START), text.find(REPORT_END)
    if start < 0 or end < start:
        sys.exit(f"{page} lacks the lines {REPORT_START!r} ... {REPORT_END!r}")
    start += len(REPORT_START)
    page.write_text(text[:start] + "\n\n" + table + "\n" + text[end:])


COLAB_MARK = '"google.colab" in sys.modules'


def hide_setup_cells(nb, name: str) -> int:
    """Tag ``remove-cell`` on the cells that only set a notebook up: papermill's
    injected-parameters cell (it repeats the parameters cell) and the Colab install cell
    (it does nothing outside Colab). The tag removes them from the web page only; the
    notebook a reader opens in Jupyter or on Colab keeps and runs them. Returns how many
    cells it tagged; exits when the chapter has no Colab install cell to hide."""
    hidden, colab = 0, 0
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        is_colab = cell.cell_type == "code" and COLAB_MARK in cell.source
        colab += is_colab
        if (is_colab or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
            hidden += 1
        if not tags:
            del cell.metadata["tags"]
    if colab != 1:
        sys.exit(f"chapter {name!r}: expected one Colab install cell ({COLAB_MARK}), found {colab}")
    return hidden


def stage(records: list[Record], notebooks: Path) -> None:
    """Copy the book sources to _build/src, with executed notebooks from ``notebooks``
    (their setup cells hidden from the page: see :func:`hide_setup_cells`)."""
    import nbformat

    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, STAGE / name)
    shutil.copytree(
        BOOK,
        STAGE / "book",
        ignore=shutil.ignore_patterns("src", ".ipynb_checkpoints", "__pycache__"),
    )
    for name in notebook_chapters():
        executed = notebooks / f"{name}.ipynb"
        if not executed.exists():
            sys.exit(f"no executed notebook for chapter {name!r} at {executed}")
        nb = nbformat.read(executed, as_version=4)
        hide_setup_cells(nb, name)
        nbformat.write(nb, STAGE / "book" / f"{name}.ipynb")
    fill_report(STAGE / "book" / "execution_report.md", report_table(records))
    fill_catalogue()


def fill_catalogue() -> None:
    """Write the figures' SVG and CSV downloads and the figure catalogue (book/figures.md)
    from the staged notebooks; see scripts/catalogue.py."""
    page = STAGE / "book" / "figures.md"
    if not page.exists():
        return  # a toc without the catalogue page
    sys.path.insert(0, str(ROOT / "scripts"))
    import catalogue
    from repository import configured_url, pages_url

    text = catalogue.build(
        STAGE / "book", notebook_chapters(), SRC, pages_url(configured_url(ROOT))
    )
    catalogue.fill(page, text)


def build_site() -> None:
    jb = Path(sys.executable).parent / "jupyter-book"
    command = [str(jb), "build", str(STAGE), "--all", "-W", "-n", "--keep-going"]
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"FAILED: jupyter-book build (exit {result.returncode}); warnings are errors")
    if HTML.exists():
        shutil.rmtree(HTML)
    shutil.move(STAGE / "_build" / "html", HTML)


# --------------------------------------------------------------------------- commands


def cmd_build(args: argparse.Namespace) -> None:
    timings: list[tuple[str, float]] = []
    start = time.perf_counter()
    if args.no_execute:
        print("==> using the committed notebooks (no execution)", flush=True)
        records: list[Record] = []
        notebooks = BOOK
    else:
        print(
            f"==> executing the chapters (profile {args.profile}, device {args.device}, "
            f"{os.environ.get('OMP_NUM_THREADS', 'all')} threads)",
            flush=True,
        )
        records = run_chapters(args.profile, args.device, args.only)
        notebooks = EXECUTED / "book"
        timings.append(("execute", time.perf_counter() - start))
    if args.only:
        print(f"==> executed only {args.only}; not building the site")
        return
    t = time.perf_counter()
    stage(records, notebooks)
    timings.append(("stage", time.perf_counter() - t))
    print("==> jupyter-book build (warnings are errors)", flush=True)
    t = time.perf_counter()
    build_site()
    timings.append(("jupyter-book", time.perf_counter() - t))
    for chapter in records:
        print(f"   {chapter.chapter:<24} {chapter.seconds:8.1f} s")
    for what, seconds in timings:
        print(f"   {what:<24} {seconds:8.1f} s")
    print(
        f"The book is at {(HTML / 'index.html').relative_to(ROOT)} "
        f"({time.perf_counter() - start:.0f} s in all)."
    )


def strip_run_metadata(nb) -> None:
    """Drop papermill's and nbclient's timestamps, so re-running changes only outputs."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


def cmd_notebooks(args: argparse.Namespace) -> None:
    import nbformat

    names = args.chapters or sorted(p.stem for p in SRC.glob("*.md"))
    missing = [n for n in names if not (SRC / f"{n}.md").exists()]
    if missing:
        sys.exit(f"no source book/src/<name>.md for {missing}")
    work = BUILD / "notebooks"
    start = time.perf_counter()
    for i, name in enumerate(names, 1):
        print(
            f"  [{i}/{len(names)}] {name}: book/src/{name}.md -> book/{name}.ipynb ...", flush=True
        )
        output = work / f"{name}.ipynb"
        seconds = execute(name, output, {})  # the defaults are the ci profile
        nb = nbformat.read(output, as_version=4)
        strip_run_metadata(nb)
        tmp = BOOK / f".{name}.ipynb.tmp"
        nbformat.write(nb, tmp)
        os.replace(tmp, BOOK / f"{name}.ipynb")
        print(f"  [{i}/{len(names)}] {name}: ok in {seconds:.1f} s", flush=True)
    print(f"Regenerated {len(names)} notebooks in {time.perf_counter() - start:.0f} s.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="execute the chapters and build _build/html")
    build.add_argument("--profile", default=os.environ.get("PROFILE", "ci"))
    build.add_argument("--device", default=os.environ.get("DEVICE", "cpu"))
    build.add_argument(
        "--only",
        nargs="+",
        metavar="CHAPTER",
        help="execute only these chapters (into _build/executed), no site",
    )
    build.add_argument(
        "--no-execute",
        action="store_true",
        help="build the site from the committed notebooks, executing nothing",
    )
    build.set_defaults(func=cmd_build)
    notebooks = sub.add_parser("notebooks", help="regenerate book/<chapter>.ipynb from sources")
    notebooks.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    notebooks.set_defaults(func=cmd_notebooks)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    args.func(args)


if __name__ == "__main__":
    main()
