"""The package stands on its own: it imports without the book toolchain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BOOK_ONLY = ("jupyter_book", "myst_nb", "papermill", "nbval", "sphinx", "jupytext", "IPython")


def test_forgetkit_imports_without_the_book_toolchain():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BOOK_ONLY!r}:\n"
        "            raise ImportError(f'book toolchain module {name} imported')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import forgetkit, forgetkit.metrics, forgetkit.methods, forgetkit.fisher\n"
        "import forgetkit.provenance\n"
        "print(sorted(forgetkit.available_methods()))\n"
    )
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fisher" in out.stdout and "retrain" in out.stdout


def test_the_package_says_it_is_typed():
    """PEP 561: ``py.typed`` marks the inline hints as meant for type checkers; it must be
    package data so the wheel carries it (tests/test_wheel.py checks the built wheel)."""
    assert (ROOT / "forgetkit" / "py.typed").is_file()
    assert '"forgetkit" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()
