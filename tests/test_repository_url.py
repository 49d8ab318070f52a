"""One repository URL: ``repository.url`` in _config.yml, and nothing else anywhere.

The launch buttons read the setting; the copies that cannot read it (README, CITATION.cff,
``[project.urls]``, every chapter's Colab ``%pip install`` line and its notebook, the book's
pages) are checked by ``scripts/repository.py check``, which this module runs on the
repository (the built site is checked by tests/test_browser.py, after the book build). The
checker is shown to catch a stray URL in each form, and ``set`` to move a fork's copy of the
repository to its own URL in one step.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


repository = load_script("repository")
URL = repository.configured_url()
OWNER, NAME = repository.owner_name(URL)
FORK = "https://github.com/" + "someone-else/unlearning-course"  # split: no stray URL here


def test_the_repository_names_no_other_project_url():
    problems = repository.check(ROOT)
    assert problems == [], "\n".join(problems)


def test_every_chapter_installs_from_the_setting_on_colab():
    sources = sorted((ROOT / "book" / "src").glob("*.md"))
    assert sources
    line = f'%pip install --quiet "forgetkit[book] @ git+{URL}"'
    for source in sources:
        assert line in source.read_text(), f"{source.name}: no Colab line installing from {URL}"
        notebook = ROOT / "book" / f"{source.stem}.ipynb"
        assert line.replace('"', '\\"') in notebook.read_text(), f"{notebook.name} lags behind"


@pytest.mark.parametrize(
    "stray",
    [
        "https://github.com/" + "someone/forgetkit",  # another owner, the project's name
        "git@github.com:" + f"{OWNER}/forgetkit-old.git",  # the owner, another name
        "https://mybinder.org/v2/gh/" + f"{OWNER}/forgetkit-book/main",  # another name, Binder
        "https://colab.research.google.com/github/" + "x/forgetkit/blob/main/a.ipynb",
        "https://someone" + ".github.io/forgetkit/",  # another Pages site
    ],
)
def test_the_checker_finds_a_stray_url(stray, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(f'<a href="{URL}">ok</a> <a href="{repository.pages_url(URL)}">ok</a>\n'
                    f'<a href="{stray}">stray</a>\n')  # fmt: skip
    problems = repository.foreign_references([page], URL, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("page.html:2:"), problems


def test_the_checker_leaves_other_projects_alone(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[nbval](https://github.com/computationalmodelling/nbval), "
                    "[official code](https://github.com/" "AGolatkar/SelectiveForgetting).\n"
                    f"Clone {URL}.git, or read {URL}/issues.\n")  # fmt: skip
    assert repository.foreign_references([page], URL, tmp_path) == []


def test_the_workflows_check_against_the_repository_they_run_in():
    assert repository.check(ROOT, expect=URL) == []
    (problem,) = repository.check(ROOT, expect=FORK)
    assert "set your repository's URL" in problem and "README.md" in problem


def test_a_fork_changes_the_url_in_one_command(tmp_path):
    """``scripts/repository.py set URL`` on a copy of the repository: afterwards the check
    passes for the new URL and nothing names the old one."""
    fork = tmp_path / "fork"
    for path in repository.repository_files(ROOT):
        target = fork / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    subprocess.run(["git", "init", "-q"], cwd=fork, check=True)  # so `set` lists the files
    subprocess.run(["git", "add", "-A"], cwd=fork, check=True)
    out = subprocess.run([sys.executable, str(fork / "scripts/repository.py"), "set", FORK],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert repository.configured_url(fork) == FORK
    assert repository.check(fork, expect=FORK) == []
    old = [p for p in repository.repository_files(fork) if URL in p.read_text(errors="ignore")]
    assert old == [], f"still naming {URL}: {old}"
    assert "someone-else.github.io/unlearning-course/" in (fork / "pyproject.toml").read_text()
