"""scripts/run_chapter.py: a chapter's code runs as one program where Jupyter is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
run_chapter = load_script("run_chapter")


def test_parameters_are_set_after_the_parameters_cell_and_magics_do_nothing():
    code = run_chapter.chapter_code("lcodec", {"PROFILE": "paper", "DEVICE": "cuda"})
    default, injected = code.index('PROFILE = "ci"'), code.index("PROFILE = 'paper'")
    assert default < injected < code.index("import forgetkit")
    assert "DEVICE = 'cuda'" in code and "%pip" not in code
    compile(code, "lcodec", "exec")  # the magics' replacements keep it valid Python


def test_an_unknown_chapter_names_the_known_ones():
    with pytest.raises(SystemExit, match=r"no chapter 'nope': expected one of \[.*'lcodec'"):
        run_chapter.chapter_code("nope", {"PROFILE": "ci"})


@pytest.mark.slow
def test_a_chapter_runs_without_ipython_and_logs_its_glue(mnist, tmp_path):
    log = tmp_path / "log.json"
    script = str(ROOT / "scripts" / "run_chapter.py")
    argv = ["run_chapter", "reproducing", "--profile", "ci", "--device", "cpu", "--log", str(log)]
    blocked = (  # as on a bare GPU machine: no IPython at all
        f"import runpy, sys; sys.modules['IPython'] = None; sys.argv = {argv!r}; "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
    # The timeout guards against a hang: far above what a loaded 2-core machine needs.
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                            timeout=3600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    glued = json.loads(log.read_text())["glue"]
    assert 0.8 <= float(glued["reproducing-accuracy"]) <= 0.95
    assert "| mnist |" in glued["tbl-reproducing-datasets"]  # the table's Markdown text
