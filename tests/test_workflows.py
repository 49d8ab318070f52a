"""The GitHub Actions workflows, which cannot run here: linted, and read for what they promise.

``make lint`` validates them against the GitHub-workflow JSON schema that check-jsonschema
ships (``--builtin-schema vendor.github-workflows``, no network). This module runs the same
linter, shows that it rejects broken workflows, and checks what a schema cannot: that the
book workflow runs the README's command with both caches, uploads the execution report on
failure and deploys to Pages; that the scheduled one builds with no cache; that every
``needs`` and ``steps.<id>`` reference resolves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]


def lint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LINT, *map(str, paths)], capture_output=True, text=True)


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    return workflow


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def test_the_workflows_pass_the_linter():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"book.yml", "drift.yml", "release.yml"}
    out = lint(*files)
    assert out.returncode == 0, out.stdout + out.stderr


BREAKAGES = {
    "a job without runs-on": ("runs-on: ubuntu-latest", "runs-onn: ubuntu-latest"),
    "a step both uses and runs": ("- uses: actions/checkout@v4",
                                  "- uses: actions/checkout@v4\n        run: echo"),
    "a number that is a word": ("timeout-minutes: 120", "timeout-minutes: soon"),
    "an unknown trigger": ("workflow_dispatch:", "workflow_dispatched:"),
    "a misspelt permission": ("contents: read", "content: read"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_linter_rejects_a_broken_workflow(breakage, tmp_path):
    old, new = BREAKAGES[breakage]
    text = (WORKFLOWS / "book.yml").read_text()
    assert old in text, f"book.yml no longer contains {old!r}"
    broken = tmp_path / "book.yml"
    broken.write_text(text.replace(old, new, 1))
    out = lint(broken)
    assert out.returncode != 0, f"the linter accepted {breakage}:\n{out.stdout}"


@pytest.mark.parametrize("name", ["book.yml", "drift.yml", "release.yml"])
def test_references_resolve_and_actions_are_pinned(name):
    workflow = load(name)
    jobs = workflow["jobs"]
    for job_name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{name}: job {job_name} needs unknown job {need!r}"
        ids = {s["id"] for s in steps(job) if "id" in s}
        text = yaml.safe_dump(job)
        for ref in re.findall(r"steps\.([A-Za-z0-9_-]+)\.", text):
            assert ref in ids, f"{name}: job {job_name} refers to unknown step {ref!r}"
        for step in steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]


def test_book_workflow_builds_caches_reports_and_deploys():
    workflow = load("book.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert re.search(r"^make book$", runs(build), re.M), "not the README's command"
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme
    cached = {s["with"]["path"] for s in uses(build, "actions/cache")}
    assert cached == {".venv", "~/.cache/forgetkit"}, cached
    (report,) = uses(build, "actions/upload-artifact")
    assert report["if"] == "failure()" and "_build/executed" in report["with"]["path"]
    (pages,) = uses(build, "actions/upload-pages-artifact")
    assert pages["with"]["path"] == "_build/html"
    assert "repository.py check" in runs(build) and "$GITHUB_REPOSITORY" in runs(build)
    assert deploy["needs"] == "build" and uses(deploy, "actions/deploy-pages")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert workflow["permissions"] == {"contents": "read"}


def test_scheduled_workflow_builds_from_scratch():
    workflow = load("drift.yml")
    assert workflow["on"]["schedule"], "not scheduled"
    (job,) = workflow["jobs"].values()
    assert not uses(job, "actions/cache"), "the drift build must start with no cache"
    assert "rm -rf ~/.cache/forgetkit" in runs(job)
    assert re.search(r"^make book\b", runs(job), re.M)
    assert job["strategy"]["matrix"]["deps"] == ["pinned", "latest"]
    (report,) = uses(job, "actions/upload-artifact")
    assert report["if"] == "failure()" and "_build/executed" in report["with"]["path"]
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(CONSTRAINTS)" in makefile, "make setup ignores CONSTRAINTS"


def test_make_lint_runs_the_workflow_linter():
    makefile = (ROOT / "Makefile").read_text()
    lint_rule = makefile[makefile.index("\nlint:") : makefile.index("\nformat:")]
    assert "check-jsonschema --builtin-schema vendor.github-workflows" in lint_rule
    assert ".github/workflows/*.yml" in lint_rule


def test_release_workflow_checks_and_publishes_the_wheel():
    workflow = load("release.yml")
    assert workflow["on"]["release"]["types"] == ["published"]
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    assert "python -m build" in runs(build) and "twine check --strict" in runs(build)
    assert "$TAG" in runs(build), "the tag is not compared with the version"
    assert publish["needs"] == "build" and uses(publish, "pypa/gh-action-pypi-publish")
    assert publish["permissions"] == {"id-token": "write"}  # trusted publishing, no token
