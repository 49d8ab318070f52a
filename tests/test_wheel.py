"""The package as a wheel: built from the repository, checked by twine, installed alone.

``python -m build`` runs on a copy of the repository's files (what a fresh clone holds:
tracked files and untracked ones git does not ignore), so the test never writes into the
work tree. It builds the sdist, and the wheel from the sdist, as a release would.

How the fresh virtual environment gets its dependencies, and why. The runtime dependencies
weigh about 5 GB (torch's CUDA build and its nvidia-* libraries). Installing the pinned ones
into an empty environment took 7 min 45 s here even from the machine's local disk copy of
the wheels (pip, 2 busy cores, measured once), and is a multi-GB download elsewhere: a
test inside ``make test`` cannot afford that. So the test assembles a *runtime-only site*:
a folder of symbolic links to exactly the distributions that the wheel's own
``Requires-Dist`` entries pull in (their closure, markers evaluated, resolved in the
environment running the test), and nothing else: no Jupyter Book, no papermill, no pytest.
A new, empty ``python -m venv --without-pip`` sees that folder through a ``.pth`` file (it
has no pip or setuptools of its own to shadow the linked ones), and pip, run on it with
``--python``, installs the wheel with ``--no-index`` and without ``--no-deps``: pip itself
checks that the declared requirements are met by what is there, and cannot fetch anything.
What this proves: the wheel's metadata names every package forgetkit needs at import and
at unlearning time (an undeclared import fails here), the wheel holds every module, and
the package works without the book toolchain. What it does not prove: that the lowest
versions the metadata allows still work (the environment holds the pinned ones).
"""

from __future__ import annotations

import email
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import forgetkit

ROOT = Path(__file__).resolve().parents[1]
BOOK_TOOLCHAIN = ("jupyter_book", "papermill", "jupytext", "myst_nb", "nbval", "sphinx", "pytest")
EXTRAS = {"book": {"jupyter-book", "papermill"}, "test": {"pytest", "build", "twine"},
          "distributed": {"ray"}}  # fmt: skip

pytestmark = pytest.mark.slow


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{command} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def clone_files(root: Path, target: Path) -> Path:
    """Copy what a fresh clone of ``root`` would hold (plus untracked, unignored files)."""
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built from a copy of the repository."""
    base = tmp_path_factory.mktemp("dist")
    src = clone_files(ROOT, base / "src")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(base / "out"),
          str(src)])  # fmt: skip
    (wheel,) = (base / "out").glob("*.whl")
    (sdist,) = (base / "out").glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(zf.read(name))


# --------------------------------------------------------------------------- the files


def test_build_gives_an_sdist_and_a_wheel_that_twine_accepts(dist):
    assert dist["wheel"].name == f"forgetkit-{forgetkit.__version__}-py3-none-any.whl"
    assert dist["sdist"].name == f"forgetkit-{forgetkit.__version__}.tar.gz"
    out = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.values())])
    assert out.stdout.count("PASSED") == 2, out.stdout


def test_wheel_carries_the_package_and_nothing_else(dist):
    with zipfile.ZipFile(dist["wheel"]) as zf:
        names = zf.namelist()
    info = f"forgetkit-{forgetkit.__version__}.dist-info/"
    outside = [n for n in names if not n.startswith(("forgetkit/", info))]
    assert outside == [], f"files outside the package: {outside}"
    # Python modules, the benchmark configs shipped as package data, and the PEP 561 marker
    # that tells type checkers the package is typed; nothing else.
    assert "forgetkit/py.typed" in names, "py.typed missing: type checkers would ignore hints"
    not_code = [n for n in names if n.startswith("forgetkit/") and not n.endswith(".py")
                and n != "forgetkit/py.typed"
                and not re.fullmatch(r"forgetkit/bench/configs/\w+\.toml", n)]  # fmt: skip
    assert not_code == [], f"book files, data or checkpoints in the wheel: {not_code}"
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "forgetkit").rglob("*.toml")}
    assert configs <= set(names), f"benchmark configs missing from the wheel: {configs}"
    for banned in ("book/", "tests/", "scripts/", ".ipynb", ".npz", ".safetensors", "_build"):
        assert not [n for n in names if banned in n], f"{banned} in the wheel"
    # every module of the package made it in
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "forgetkit").rglob("*.py")}
    assert modules <= set(names), f"modules missing from the wheel: {modules - set(names)}"
    assert f"{info}licenses/LICENSE" in names


def test_sdist_carries_no_book_data_or_checkpoints(dist):
    with tarfile.open(dist["sdist"]) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
    top = {n.split("/")[0] for n in names}
    assert top <= {"forgetkit", "forgetkit.egg-info", "README.md", "LICENSE", "PKG-INFO",
                   "pyproject.toml", "setup.cfg", "MANIFEST.in"}, top  # fmt: skip


def test_version_is_single_sourced(dist):
    project = (ROOT / "pyproject.toml").read_text().split("\n[", 2)[1]  # the [project] table
    assert project.startswith("project]") and not re.search(r"^version\s*=", project, re.M)
    assert re.search(r'^dynamic = \["version"\]', project, re.M)
    assert wheel_metadata(dist["wheel"])["Version"] == forgetkit.__version__
    assert len(re.findall(r"__version__\s*=", (ROOT / "forgetkit/__init__.py").read_text())) == 1
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == forgetkit.__version__, "CITATION.cff names another version"
    assert citation["preferred-citation"]["version"] == forgetkit.__version__


def test_metadata_names_the_extras_and_the_urls(dist):
    meta = wheel_metadata(dist["wheel"])
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)
    by_extra: dict[str, set[str]] = {}
    for line in meta.get_all("Requires-Dist"):
        req = Requirement(line)
        for extra in EXTRAS:
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, set()).add(canonicalize_name(req.name))
    for extra, wanted in EXTRAS.items():
        assert wanted <= by_extra.get(extra, set()), f"[{extra}] lacks {wanted}"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls), urls
    # equal to the one setting: tests/test_repository_url.py checks every copy of it
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert urls["Repository"] == repository


# --------------------------------------------------------------------------- installed alone


def runtime_closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """The installed distributions that ``requirements`` pull in, transitively, with
    environment markers evaluated (no extras of forgetkit's own)."""
    found: dict[str, md.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = found.setdefault(name, md.distribution(req.name))
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) not in done:
                done.add((name, wanted))
                todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return found


def link_site(closure: dict[str, md.Distribution], target: Path) -> None:
    """Fill ``target`` with symbolic links to the files of ``closure`` only.

    A folder is linked whole when no distribution outside the closure has files in it (so
    ``__pycache__`` and data files come along), and entry by entry otherwise (a namespace
    package shared with a distribution that must stay out)."""

    def files(dist: md.Distribution) -> list[tuple[Path, tuple[str, ...]]]:
        base = Path(dist.locate_file(""))
        return [(base, f.parts) for f in dist.files or [] if f.parts and f.parts[0] != ".."]

    keep = {canonicalize_name(n) for n in closure}
    mine: dict[tuple[str, ...], Path] = {}
    dirty: set[tuple[str, ...]] = set()  # folders holding files of other distributions
    for dist in md.distributions():
        inside = canonicalize_name(dist.metadata["Name"]) in keep
        for base, parts in files(dist):
            if inside:
                mine[parts] = base
            else:
                dirty.update(parts[:i] for i in range(1, len(parts)))

    linked: set[tuple[str, ...]] = set()
    for parts, base in sorted(mine.items()):
        if any(parts[:i] in linked for i in range(1, len(parts) + 1)):
            continue
        i = next((i for i in range(1, len(parts)) if parts[:i] not in dirty), len(parts))
        prefix = parts[:i]
        (target.joinpath(*prefix)).parent.mkdir(parents=True, exist_ok=True)
        if not target.joinpath(*prefix).exists():
            target.joinpath(*prefix).symlink_to(base.joinpath(*prefix))
        linked.add(prefix)


INSTALLED_CHECK = """
import importlib.util, json, sys
import torch
import forgetkit as fk

toolchain = {toolchain!r}
leaked = [m for m in toolchain if importlib.util.find_spec(m) is not None]
methods = fk.available_methods()
gen = torch.Generator().manual_seed(0)
x = torch.randn(48, 1, 6, 6, generator=gen)
y = torch.arange(48) % 3
model = fk.build_model(fk.ModelConfig("logistic", (1, 6, 6), 3), seed=0)
before = [p.detach().clone() for p in model.parameters()]
result = fk.get_method("fisher").unlearn(model, (x[:8], y[:8]), (x[8:], y[8:]))
after = [p.detach() for p in result.model.parameters()]
print(json.dumps({{
    "file": fk.__file__,
    "version": fk.__version__,
    "leaked": leaked,
    "methods": methods,
    "caller_untouched": all(torch.equal(a, b) for a, b in zip(before, model.parameters())),
    "moved": sum(float((a - b).abs().sum()) for a, b in zip(before, after)),
    "finite": all(bool(torch.isfinite(p).all()) for p in after),
    "prefix": sys.prefix,
}}))
"""


def test_wheel_installs_into_a_fresh_venv_and_unlearns_without_the_book(dist, tmp_path):
    requires = wheel_metadata(dist["wheel"]).get_all("Requires-Dist")
    runtime = [r for r in requires if "extra ==" not in r]
    closure = runtime_closure(runtime)
    assert not {canonicalize_name(n) for n in ("jupyter-book", "papermill", "pytest")} & set(
        closure
    ), "the runtime dependencies pull in the book toolchain"
    site = tmp_path / "runtime-site"
    link_site(closure, site)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])  # empty: no setuptools
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                         "'purelib'))"]).stdout.strip())  # fmt: skip
    (purelib / "runtime-deps.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FORGETKIT_OFFLINE": "1",
            "FORGETKIT_CACHE": str(tmp_path / "cache")}  # fmt: skip
    before = {p.name for p in purelib.iterdir()}
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated",
          "--no-index", "--no-cache-dir", str(dist["wheel"])], env=env, cwd=tmp_path)  # fmt: skip
    added = {p.name for p in purelib.iterdir()} - before
    assert {a.split("-")[0] for a in added} == {"forgetkit"}, f"pip installed more: {added}"

    code = INSTALLED_CHECK.format(toolchain=BOOK_TOOLCHAIN)
    out = _run([str(python), "-I", "-c", code], env=env, cwd=tmp_path)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(purelib), report["file"]
    assert report["version"] == forgetkit.__version__
    assert report["leaked"] == [], f"book toolchain importable: {report['leaked']}"
    assert {"fisher", "finetune", "neggrad", "retrain"} <= set(report["methods"])
    # every method of the package (toy methods other tests register here are not in it)
    assert report["methods"] == [
        m for m in forgetkit.available_methods() if not m.startswith("test-")
    ]
    assert report["caller_untouched"] and report["finite"]
    assert report["moved"] > 0, "Fisher forgetting left the weights where they were"
