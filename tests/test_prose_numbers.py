"""Every result quoted in a chapter's prose is glued from an output; fidelity rows cite sources.

A number typed into prose goes stale the day the code or the data change, and the reader
cannot tell it from one the page computed. So the prose of ``book/src/*.md`` may hold a
literal decimal, percentage or "pp" difference only where it is a *setting* (a learning
rate, a target, a chance level, announced by a word such as "lr" or "target" just before
it) or a *cited source* (a paragraph with a ``{cite}`` role, or a phrase naming the paper,
its abstract, README or official code). Anything else must come from ``{glue:text}``.

The fidelity tables (``tbl-<chapter>-fidelity``) must say where each row comes from: a file
of the official code with its line (``lipschitz.py:57``), or a cited paper or abstract.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "book" / "src"
CHAPTERS = sorted(p.stem for p in SRC.glob("*.md"))

# A decimal (0.05), a percentage (87.1 %, 5%) or a difference in points (5 pp); not part of
# a name, a version (1.19.6), a label or a glue key.
NUMBER = re.compile(
    r"(?<![\w.{`$\\^/-])(\d+\.\d+(?:\s?(?:%|pp\b))?|\d+\s?(?:%|pp\b))(?![\w.}`]*\w)"
)
# Words that announce a setting, a hyperparameter or a fixed reference level (within the
# few words before the number).
SETTING = re.compile(
    r"\b(lr|learning[- ]rate|momentum|weight decay|batch size|sigma|alpha|lambda\d?|"
    r"t_mix|pull|target( rate)?|threshold|chance( level| is)?|tolerance|jitter|width|"
    r"at most|at least|less than|more than|drop of|aiming at|Python|version|"
    r"val_gap_skip|max_accuracy_drop|target_rate|factor|official rate|below)\b|"
    r"\bforget\W*$|=",
    re.IGNORECASE,
)
# A paragraph that quotes a source says so: a citation role, or the source named.
CITED = re.compile(
    r"\{cite(:[a-z]+)?\}|\babstracts?\b|\bREADME\b|official (code|script|notebook|repo)|"
    r"\bissue #\d+|\bslides?\b|\bpaper'?s?\b",
    re.IGNORECASE,
)
WINDOW = 40  # characters before the number searched for a setting word
# A number whose glued value follows at once ("near 0.5 ({glue:text}`key`)") is backed.
BACKED_AFTER = re.compile(r"^\W{0,3}\{glue|^ (confidence )?interval\b")
# Reference levels that are neither settings nor results, by chapter, with the reason.
REFERENCE = {
    ("measuring", "0.5"): "the chance level of a balanced membership attack",
    ("which_method", "0.5"): "the chance level of a balanced membership attack",
    ("mnemonic", "1.0"): "the top score of a sign on the codes",
    ("forsaken", "100 %"): "what a degenerate oracle would give, a hypothetical",
}


def prose(text: str) -> str:
    """The chapter's prose: no front matter, code cells, math, inline code or roles."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"```\{math\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", "", text)
    # Inline code keeps its names (``target_rate``) but not its digits: a number inside code
    # is a setting or a key, and the name still announces what follows it.
    text = re.sub(r"`([^`\n]*)`", lambda m: re.sub(r"[\d.]+", "", m.group(1)), text)
    return re.sub(r"^:[a-z-]+:.*$", "", text, flags=re.M)  # directive options


def unglued_numbers(text: str, chapter: str = "") -> list[tuple[str, str]]:
    """Literal numbers in ``text``'s prose that are neither settings, reference levels
    (:data:`REFERENCE`) nor cited."""
    found = []
    for paragraph in re.split(r"\n\s*\n", prose(text)):
        if CITED.search(paragraph):
            continue
        for match in NUMBER.finditer(paragraph):
            before = paragraph[max(0, match.start() - WINDOW) : match.start()]
            after = paragraph[match.end() : match.end() + 20]
            if SETTING.search(before) or BACKED_AFTER.search(after):
                continue
            if (chapter, match.group(1)) in REFERENCE:
                continue
            context = paragraph[max(0, match.start() - 60) : match.end() + 30]
            found.append((match.group(1), " ".join(context.split())))
    return found


@pytest.mark.parametrize("name", CHAPTERS)
def test_result_numbers_in_prose_are_glued(name):
    hits = unglued_numbers((SRC / f"{name}.md").read_text(), name)
    assert hits == [], (
        f"book/src/{name}.md quotes numbers in its prose that are neither glued, nor a "
        "setting, nor cited; glue them from an output ({glue:text}`key`), or name the "
        "setting or the source: " + "; ".join(f"{n!r} in '...{c}...'" for n, c in hits)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The scrub left accuracy at 87.1 % on the retain set.", ["87.1 %"]),
        ("Forsaken lost 6.5 pp here.", ["6.5 pp"]),
        ("The ratio fell to 0.60 on forgotten images.", ["0.60"]),
        ("Accuracy on the forget set of the mean model fell to 87.1 %.", ["87.1 %"]),
        ("SGD at learning rate 0.01 with momentum 0.9.", []),
        ("Chance is 10 %.", []),
        ("The README reports AR 95.9.", []),
        ("The ratio was {glue:text}`jit-ratio` (`version 1.19.6`).", []),
        ("```{code-cell} ipython3\nprint(0.731)\n```", []),
        ("An epsilon of $0.25$ here.", []),
        ("Raise `target_rate` to 1.0.", []),
        ("The score sits near 0.5 ({glue:text}`key`).", []),
        ("The score sits near 0.5 on the forget set.", ["0.5"]),
    ],
)
def test_the_rule_catches_typed_results_and_lets_settings_through(text, expected):
    assert [n for n, _ in unglued_numbers(text)] == expected


# ----------------------------------------------------------------------- fidelity tables

SOURCE = re.compile(
    r"[\w./-]+\.(py|ipynb|txt|sh|yaml|yml|cfg|json|md)(:\d+(-\d+)?|` cells? \d+| L\d+)|"
    r"\{cite(:[a-z]+)?\}|\babstracts?\b|\bv[123]\b|\bREADME\b|\bslides?\b",
    re.IGNORECASE,
)


def fidelity_rows(text: str) -> list[str]:
    """The body rows of the chapter's ``tbl-*-fidelity`` table (empty if it has none)."""
    block = re.search(r":name: tbl-[\w-]*fidelity\n(.*?)\n:::", text, flags=re.S)
    if block is None:
        return []
    rows = [line for line in block.group(1).splitlines() if line.startswith("|")]
    return rows[2:]  # header and rule


def test_fidelity_rows_are_found():
    text = ":name: tbl-x-fidelity\n\n| a | b |\n|---|---|\n| one | `x.py:3` |\n| two | y |\n:::"
    assert fidelity_rows(text) == ["| one | `x.py:3` |", "| two | y |"]


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_fidelity_row_names_its_source(name):
    rows = fidelity_rows((SRC / f"{name}.md").read_text())
    missing = [row.split("|")[1].strip() for row in rows if not SOURCE.search(row)]
    assert missing == [], (
        f"book/src/{name}.md: fidelity rows without a source (an official file and line at "
        f"the pinned commit, e.g. `lipschitz.py:57`, or a cited paper or abstract): {missing}"
    )
