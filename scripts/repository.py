"""The project's one repository URL: print it, check every copy of it, change it everywhere.

The setting is ``repository.url`` in ``_config.yml``: Jupyter Book reads it for the launch
buttons (Binder, Colab), the repository and the issues buttons. Every other place that
names the project's repository is a copy that cannot read a setting (GitHub reads
CITATION.cff and the workflows as they are, Colab runs a chapter's ``%pip install`` line
before forgetkit exists), so this script checks the copies instead:

``url`` / ``pages``
    Print the URL, or the GitHub Pages address derived from it
    (``https://OWNER.github.io/NAME/``).
``check [--expect URL] [--site DIR]``
    Every reference to a repository of the project (``github.com/OWNER/NAME``, and the
    Binder, Colab, raw and Pages forms of it) in the repository's files, or in the built
    site ``DIR``, must name the configured one; every chapter's Colab install line must
    install from it; CITATION.cff, ``[project.urls]`` and the README must carry it.
    ``--expect`` also fails when the setting is not URL (the workflows pass the repository
    they run in, so a fork that forgot the setting stops before publishing).
``set URL``
    For a fork: rewrite the setting and every copy (sources, notebooks, README,
    CITATION.cff, pyproject.toml) to URL. Nothing needs re-executing.

A reference is the project's when its owner is the configured owner or ``forgetkit`` (the
upstream), or its name is the configured name or ``forgetkit``; links to other projects
(the papers' official code, the tools) are left alone.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "forgetkit"
_URL = re.compile(r"^https://github\.com/([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9_.-]+)$")
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9_.-]+"
_REFERENCE = re.compile(
    r"(?:github\.com[/:]|mybinder\.org/v2/gh/|colab\.research\.google\.com/github/"
    rf"|raw\.githubusercontent\.com/)(?P<owner>{_OWNER})/(?P<name>{_NAME})"
    rf"|(?<![A-Za-z0-9.-])(?P<powner>{_OWNER})\.github\.io/(?P<pname>{_NAME})"
)
# The Colab cell of a chapter: `%pip install ... "forgetkit[book] @ git+URL"`.
_INSTALL = re.compile(r"%pip install[^\n]*?forgetkit(?:\[[^\]]*\])?\s*@\s*git\+(?P<url>[^\s\"']+)")


def configured_url(root: Path = ROOT) -> str:
    """``repository.url`` of ``_config.yml``, checked to be ``https://github.com/OWNER/NAME``."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    url = (config.get("repository") or {}).get("url")
    if not isinstance(url, str) or not _URL.match(url) or url.endswith(".git"):
        raise SystemExit(
            f"_config.yml: repository.url is {url!r}; expected https://github.com/OWNER/NAME "
            "(no trailing slash, no .git)"
        )
    return url


def owner_name(url: str) -> tuple[str, str]:
    match = _URL.match(url.rstrip("/").removesuffix(".git"))
    if not match:
        raise ValueError(f"not a GitHub repository URL: {url!r}")
    return match.group(1), match.group(2)


def pages_url(url: str) -> str:
    """The GitHub Pages address of the repository's site (owner in lower case, as GitHub
    serves it)."""
    owner, name = owner_name(url)
    return f"https://{owner.lower()}.github.io/{name}/"


@dataclass(frozen=True)
class Reference:
    """One mention of a GitHub repository: where, which, and the text spans to rewrite."""

    line: int
    owner: str
    name: str
    text: str
    owner_span: tuple[int, int]
    name_span: tuple[int, int]


def references(text: str) -> Iterator[Reference]:
    """Every mention of a GitHub repository in ``text`` (owner and name cleaned of a
    trailing ``.git`` or sentence punctuation)."""
    for m in _REFERENCE.finditer(text):
        key = "owner" if m.group("owner") else "powner"
        nkey = "name" if key == "owner" else "pname"
        name = m.group(nkey)
        end = m.start(nkey) + len(name)
        for suffix in (".git",):
            if name.endswith(suffix) and len(name) > len(suffix):
                name, end = name[: -len(suffix)], end - len(suffix)
        stripped = name.rstrip(".")
        end -= len(name) - len(stripped)
        if not stripped:
            continue
        yield Reference(
            line=text.count("\n", 0, m.start()) + 1,
            owner=m.group(key),
            name=stripped,
            text=text[m.start() : end],
            owner_span=m.span(key),
            name_span=(m.start(nkey), end),
        )


def is_project(ref: Reference, url: str) -> bool:
    owner, name = owner_name(url)
    return ref.owner.lower() in {owner.lower(), UPSTREAM} or ref.name.lower() in {
        name.lower(),
        UPSTREAM,
    }


def is_configured(ref: Reference, url: str) -> bool:
    owner, name = owner_name(url)
    return ref.owner.lower() == owner.lower() and ref.name == name


def repository_files(root: Path = ROOT) -> list[Path]:
    """The files a clone holds (and untracked ones git does not ignore), text only."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.split("\0")  # fmt: skip
        paths = [root / p for p in listed if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "_build", "__pycache__"}
        paths = [p for p in root.rglob("*") if not skip & set(p.relative_to(root).parts)]
    return [p for p in paths if p.is_file()]


def tree_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def foreign_references(files: Iterable[Path], url: str, base: Path) -> list[str]:
    """``path:line: text`` for each reference to a project repository other than ``url``."""
    problems = []
    for path in files:
        text = read_text(path)
        if text is None:
            continue
        for ref in references(text):
            if is_project(ref, url) and not is_configured(ref, url):
                problems.append(f"{path.relative_to(base)}:{ref.line}: {ref.text}")
    return problems


def project_urls(root: Path = ROOT) -> dict[str, str]:
    """``[project.urls]`` of pyproject.toml (read with a regular expression: tomllib is
    Python 3.11+, and the table is plain ``Key = "value"`` lines)."""
    text = (root / "pyproject.toml").read_text()
    table = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[)", text + "\n[", re.M | re.S)
    lines = table.group(1) if table else ""
    return dict(re.findall(r'^([A-Za-z][\w.-]*)\s*=\s*"([^"]*)"', lines, re.M))


def missing_copies(url: str, root: Path = ROOT) -> list[str]:
    """The places that must carry the URL but do not: CITATION.cff, [project.urls], the
    README, and the Colab install line of every chapter."""
    import yaml

    problems = []
    citation = yaml.safe_load((root / "CITATION.cff").read_text())
    for where, value in (
        ("repository-code", citation.get("repository-code")),
        ("preferred-citation.repository-code",
         (citation.get("preferred-citation") or {}).get("repository-code")),
    ):  # fmt: skip
        if value != url:
            problems.append(f"CITATION.cff: {where} is {value!r}, not {url!r}")
    urls = project_urls(root)
    if urls.get("Repository") != url:
        problems.append(f"pyproject.toml: [project.urls] Repository is {urls.get('Repository')!r}")
    for key in ("Homepage", "Documentation"):
        if urls.get(key) != pages_url(url):
            problems.append(f"pyproject.toml: [project.urls] {key} is not {pages_url(url)!r}")
    if url not in (root / "README.md").read_text():
        problems.append(f"README.md does not name {url}")
    for source in sorted((root / "book" / "src").glob("*.md")):
        installs = [m.group("url") for m in _INSTALL.finditer(source.read_text())]
        if not installs:
            problems.append(f"{source.relative_to(root)}: no Colab `%pip install` line")
        problems += [
            f"{source.relative_to(root)}: the Colab line installs from {u}, not {url}"
            for u in installs
            if u != url
        ]
    return problems


def check(root: Path = ROOT, site: Path | None = None, expect: str | None = None) -> list[str]:
    url = configured_url(root)
    problems = []
    if expect is not None and owner_name(expect.lower()) != owner_name(url.lower()):
        problems.append(
            f"_config.yml sets repository.url to {url}, but this is {expect}: set your "
            "repository's URL (python scripts/repository.py set URL; README.md, section "
            "'Publishing the site', 'From a fork')"
        )
    if site is not None:
        return problems + foreign_references(tree_files(site), url, site)
    return (
        problems + foreign_references(repository_files(root), url, root) + missing_copies(url, root)
    )


def rewrite(text: str, old: str, new: str) -> str:
    """``text`` with every project reference pointing at ``old`` (or upstream) moved to
    ``new``, in whichever form it was written (github.com, Pages, Binder, Colab)."""
    new_owner, new_name = owner_name(new)
    pieces, last = [], 0
    for ref in references(text):
        if not is_project(ref, old):
            continue
        is_pages = text[ref.owner_span[1] : ref.owner_span[1] + 10] == ".github.io"
        pieces += [text[last : ref.owner_span[0]], new_owner.lower() if is_pages else new_owner]
        pieces += [text[ref.owner_span[1] : ref.name_span[0]], new_name]
        last = ref.name_span[1]
    return "".join([*pieces, text[last:]])


def set_url(new: str, root: Path = ROOT) -> list[Path]:
    owner_name(new)  # validates
    old = configured_url(root)
    changed = []
    for path in repository_files(root):
        text = read_text(path)
        if text is None:
            continue
        updated = rewrite(text, old, new)
        if updated != text:
            path.write_text(updated)
            changed.append(path)
    if configured_url(root) != new:
        raise SystemExit(f"_config.yml still sets {configured_url(root)}; edit it by hand")
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("url", help="print the configured repository URL")
    sub.add_parser("pages", help="print the GitHub Pages address of the site")
    checking = sub.add_parser("check", help="fail on any other URL for the project")
    checking.add_argument("--expect", help="the URL the setting must have (the workflows')")
    checking.add_argument("--site", type=Path, help="check this built site instead")
    setting = sub.add_parser("set", help="move the setting and every copy to URL")
    setting.add_argument("url")
    args = parser.parse_args(argv)
    if args.command == "url":
        print(configured_url())
    elif args.command == "pages":
        print(pages_url(configured_url()))
    elif args.command == "check":
        problems = check(site=args.site, expect=args.expect)
        where = args.site or "the repository"
        if problems:
            print(f"{len(problems)} problem(s) with the repository URL in {where}:")
            print("\n".join(f"  {p}" for p in problems))
            raise SystemExit(1)
        print(f"{where}: every project URL is {configured_url()} (or its Pages site)")
    else:
        for path in set_url(args.url):
            print(f"  {path.relative_to(ROOT)}")
        print(f"repository.url is now {args.url}; run `make test` to check")


if __name__ == "__main__":
    sys.exit(main())
