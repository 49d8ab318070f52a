"""Every course chapter has the shape of a course chapter (issue #29).

The chapters of the parts "Foundations" and "Methods" of ``_toc.yml`` open with learning
objectives and close with key points and exercises, each exercise with a solution that opens
on request (/work/shared/docs/method-chapter.md, item 7). Checked on the MyST sources in
``book/src``, statically:

* a ``Learning objectives`` admonition before the first section heading, with 3 to 5 bullets;
* a ``Key points`` admonition before the exercises, with 3 to 5 bullets;
* at least two ``{exercise}`` directives (sphinx-exercise), each labelled, every label unique
  across the book, and each followed, before the next exercise, by a ``{solution}`` of that
  label with ``:class: dropdown``;
* ``sphinx_exercise`` among the extensions of ``_config.yml``.

The evidence behind a course chapter (fidelity notes, self-checks, ablations, cost tables,
stored-run bookkeeping) lives on its *lab-notes page* ``book/src/<chapter>_lab.md``, listed in
the part "Lab notes" of ``_toc.yml`` and not held to the course shape. Checked here: each lab
page belongs to a course chapter, opens with the label ``(<chapter>-lab)=``, and is linked
from a numbered table of its chapter (the replication table); and a course page that has lab
notes shows no printed self-check (``...: True`` lines) and no printed dict.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "book" / "src"
COURSE_PARTS = ("Foundations", "Methods")
LAB_PART = "Lab notes"
LAB_SUFFIX = "_lab"


def part_pages(captions: tuple[str, ...]) -> list[str]:
    """The page names of the parts of ``_toc.yml`` captioned ``captions``, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = []
    for part in toc.get("parts", []):
        if part.get("caption") in captions:
            names += [Path(entry["file"]).name for entry in part.get("chapters", [])]
    return names


def course_chapters() -> list[str]:
    """The chapter names of the course parts of ``_toc.yml``, in reading order."""
    return part_pages(COURSE_PARTS)


CHAPTERS = course_chapters()
LABS = part_pages((LAB_PART,))

# The opening line of a directive, in backtick or colon fences: ```{name} argument
OPENING = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$", re.M)
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
BULLET = re.compile(r"^[*-] ", re.M)


def directives(text: str) -> list[dict]:
    """Every directive of ``text``: name, argument, options, body and the offsets where it
    opens and closes (the first line that is the opening fence alone)."""
    found = []
    for match in OPENING.finditer(text):
        fence = match.group("fence")
        close = re.compile(rf"^{re.escape(fence)}[ \t]*$", re.M).search(text, match.end())
        end = close.start() if close else len(text)
        lines = text[match.end() : end].lstrip("\n").splitlines()
        options = {}
        while lines and (option := OPTION.match(lines[0])):
            options[option.group("key")] = option.group("value").strip()
            lines.pop(0)
        found.append(
            {
                "name": match.group("name"),
                "arg": match.group("arg").strip(),
                "options": options,
                "body": "\n".join(lines),
                "start": match.start(),
                "end": close.end() if close else len(text),
            }
        )
    return found


def admonition(text: str, title: str) -> dict | None:
    """The first ``{admonition}`` titled ``title`` (case-insensitive), or None."""
    for d in directives(text):
        if d["name"] == "admonition" and d["arg"].lower() == title.lower():
            return d
    return None


def exercise_labels(text: str) -> list[str]:
    return [d["options"].get("label", "") for d in directives(text) if d["name"] == "exercise"]


def shape_problems(text: str) -> list[str]:
    """What keeps ``text`` (a chapter's MyST source) from the shape of a course chapter."""
    problems = []
    first_section = re.search(r"^## ", text, re.M)
    exercises_heading = re.search(r"^## Exercises", text, re.M)
    objectives = admonition(text, "Learning objectives")
    if objectives is None:
        problems.append("no `Learning objectives` admonition")
    else:
        if first_section and objectives["start"] > first_section.start():
            problems.append("the learning objectives come after the first section heading")
        if not 3 <= len(BULLET.findall(objectives["body"])) <= 5:
            problems.append("the learning objectives need 3 to 5 bullet points")
    key_points = admonition(text, "Key points")
    if key_points is None:
        problems.append("no `Key points` admonition")
    else:
        if exercises_heading and key_points["start"] > exercises_heading.start():
            problems.append("the key points come after the exercises heading")
        if not 3 <= len(BULLET.findall(key_points["body"])) <= 5:
            problems.append("the key points need 3 to 5 bullet points")

    items = [d for d in directives(text) if d["name"] in ("exercise", "solution")]
    exercises = [d for d in items if d["name"] == "exercise"]
    if len(exercises) < 2:
        problems.append(f"{len(exercises)} `{{exercise}}` directive(s); at least 2 needed")
    if exercises_heading is None:
        problems.append("no `## Exercises` section")
    for k, item in enumerate(items):
        if item["name"] != "exercise":
            continue
        label = item["options"].get("label")
        if not label:
            problems.append(f"exercise {k}: no `:label:`")
            continue
        if exercises_heading and item["start"] < exercises_heading.start():
            problems.append(f"exercise {label}: before the `## Exercises` heading")
        following = items[k + 1] if k + 1 < len(items) else None
        if following is None or following["name"] != "solution":
            problems.append(f"exercise {label}: not followed by a `{{solution}}`")
        elif following["arg"] != label:
            problems.append(f"exercise {label}: the solution after it is for {following['arg']!r}")
        elif following["options"].get("class") != "dropdown":
            problems.append(f"solution {label}: needs `:class: dropdown` (open on request)")
        elif not following["body"].strip():
            problems.append(f"solution {label}: empty")
    return problems


def test_there_are_course_chapters():
    assert len(CHAPTERS) >= 8, f"the course parts {COURSE_PARTS} of _toc.yml list {CHAPTERS}"
    missing = [name for name in CHAPTERS if not (SRC / f"{name}.md").exists()]
    assert missing == [], f"course chapters without a source in book/src: {missing}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_course_chapter_shape(name):
    problems = shape_problems((SRC / f"{name}.md").read_text())
    assert problems == [], f"book/src/{name}.md: " + "; ".join(problems)


def test_exercise_labels_are_unique_across_the_book():
    labels = Counter(
        label for path in sorted(SRC.glob("*.md")) for label in exercise_labels(path.read_text())
    )
    repeated = sorted(label for label, n in labels.items() if n > 1)
    assert repeated == [], f"exercise labels used more than once: {repeated}"


def test_the_exercise_extension_is_loaded():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = config["sphinx"]["config"]["extensions"]
    assert "sphinx_exercise" in extensions, "_config.yml: add sphinx_exercise to the extensions"
    assert "sphinx_togglebutton" in extensions, "solutions open on request via togglebutton"


GOOD = """# A chapter

Opening words.

:::{admonition} Learning objectives
:class: tip

* one
* two
* three
:::

## First section

:::{admonition} Key points
:class: important

* one
* two
* three
:::

## Exercises

:::{exercise}
:label: ex-a-1

Do this.
:::

:::{solution} ex-a-1
:class: dropdown

Like so, with code:

```python
print(1)
```
:::

```{exercise}
:label: ex-a-2

Do that.
```

```{solution} ex-a-2
:class: dropdown

Like that.
```
"""


def test_a_well_shaped_chapter_passes():
    assert shape_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("Learning objectives", "Objectives"), "no `Learning objectives` admonition"),
        (("Key points", "Summary"), "no `Key points` admonition"),
        (("* three\n:::\n\n## First", "* three\n* 4\n* 5\n* 6\n:::\n\n## First"), "3 to 5"),
        (("{solution} ex-a-2", "{note}"), "ex-a-2: not followed by a `{solution}`"),
        (("{solution} ex-a-1", "{solution} ex-a-2"), "the solution after it is for"),
        (("ex-a-1\n:class: dropdown", "ex-a-1\n:class: tip"), "needs `:class: dropdown`"),
        ((":label: ex-a-2\n", ""), "no `:label:`"),
        (("## Exercises", "## Practice"), "no `## Exercises` section"),
    ],
)
def test_the_shape_check_can_fail(change, problem):
    old, new = change
    assert old in GOOD
    problems = shape_problems(GOOD.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


def test_objectives_below_the_first_section_fail():
    text = GOOD.replace("## First section\n", "").replace("Opening words.", "## Intro\n")
    assert "the learning objectives come after the first section heading" in shape_problems(text)


def test_a_chapter_with_one_exercise_fails():
    one = GOOD[: GOOD.index("```{exercise}")]
    assert any("at least 2 needed" in p for p in shape_problems(one))


# ----------------------------------------------------------------------- lab-notes pages


def test_lab_pages_pair_with_course_chapters():
    in_course = [name for name in CHAPTERS if name.endswith(LAB_SUFFIX)]
    assert in_course == [], f"lab-notes pages listed among the course chapters: {in_course}"
    strays = sorted(
        p.stem for p in SRC.glob(f"*{LAB_SUFFIX}.md") if p.stem not in LABS
    )  # a lab page elsewhere in the toc would be held to nothing
    assert strays == [], f"lab-notes sources not in the part {LAB_PART!r} of _toc.yml: {strays}"
    for name in LABS:
        assert name.endswith(LAB_SUFFIX), f"{LAB_PART}: {name!r} is not named <chapter>_lab"
        chapter = name.removesuffix(LAB_SUFFIX)
        assert chapter in CHAPTERS, f"{name}: no course chapter {chapter!r} in {COURSE_PARTS}"


def lab_problems(chapter_text: str, lab_text: str, chapter: str) -> list[str]:
    """What keeps a lab page and its chapter from being linked as the course expects."""
    problems = []
    label = f"{chapter}-lab"
    opening = re.search(rf"^\({re.escape(label)}\)=\n# ", lab_text, re.M)
    first_heading = re.search(r"^# ", lab_text, re.M)
    if opening is None or (first_heading and opening.end() - 2 != first_heading.start()):
        problems.append(f"the lab page does not open with the label ({label})= above its title")
    link = f"{{ref}}`{label}`"
    if not any(d["name"] == "table" and link in d["arg"] for d in directives(chapter_text)):
        problems.append(f"no table caption of the chapter links its lab notes ({link})")
    return problems


@pytest.mark.parametrize("name", LABS)
def test_lab_page_is_linked_from_its_chapter(name):
    chapter = name.removesuffix(LAB_SUFFIX)
    problems = lab_problems(
        (SRC / f"{chapter}.md").read_text(), (SRC / f"{name}.md").read_text(), chapter
    )
    assert problems == [], f"book/src/{name}.md and {chapter}.md: " + "; ".join(problems)


def test_the_lab_link_check_can_fail():
    chapter = ":::{table} Results; the rest: {ref}`x-lab`.\n:name: tbl-x\n\n| a |\n|---|\n:::\n"
    lab = "(x-lab)=\n# X: lab notes\n"
    assert lab_problems(chapter, lab, "x") == []
    assert "links its lab notes" in lab_problems(chapter.replace("x-lab", "y-lab"), lab, "x")[0]
    assert "does not open" in lab_problems(chapter, "# X: lab notes\n", "x")[0]


HIDDEN_OUTPUT = {"remove-cell", "remove-output"}
# A printed self-check ("claim: True"), a bare boolean, or a dict repr ({'key': ...}).
CHECK_LINE = re.compile(r"(^|:\s)(True|False)\s*$|\{\s*['\"][^'\"]*['\"]\s*:", re.M)


def printed_checks(nb) -> list[str]:
    """The lines a course page would show that are self-checks or dicts: stream and plain-text
    outputs of code cells the page does not hide."""
    found = []
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or HIDDEN_OUTPUT & set(cell.metadata.get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain") or ""
            if "scrapbook" in (output.get("metadata") or {}):
                continue  # a glued value: shown only where the prose quotes it
            text = "".join(text) if isinstance(text, list) else text
            found += [f"cell {k}: {m.group(0).strip()!r}" for m in CHECK_LINE.finditer(text)]
    return found


@pytest.mark.parametrize("name", CHAPTERS)
def test_course_page_prints_no_checks(name):
    """Self-checks stay (they fail the build) but print on the lab page, or run in a cell the
    course page removes (``remove-cell``, still compared by nbval)."""
    nb = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    found = printed_checks(nb)
    assert found == [], f"book/{name}.ipynb shows checks or dicts on the page: {found}"


def test_the_printed_check_rule_can_fail():
    shown = nbformat.v4.new_code_cell("print(...)")
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text="it holds: True\n")]
    removed = nbformat.v4.new_code_cell("print(...)", metadata={"tags": ["remove-cell"]})
    removed.outputs = shown.outputs
    plain = nbformat.v4.new_code_cell("print(...)")
    plain.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="3 SGD steps (accumulate=True)\n")
    ]
    as_dict = nbformat.v4.new_code_cell("print(...)")
    as_dict.outputs = [nbformat.v4.new_output("stream", name="stdout", text="{'steps': 3}\n")]
    nb = nbformat.v4.new_notebook(cells=[shown, removed, plain, as_dict])
    assert printed_checks(nb) == ["cell 0: ': True'", "cell 3: \"{'steps':\""]


READING_BUDGET = 2400  # words of prose before the exercises: about 12 minutes of reading


def prose_words(text: str) -> int:
    """Words of a chapter's prose before its exercises: no front matter, code cells, display
    math, tables, fences and directive lines, option lines, labels or HTML comments."""
    text = text.split("\n## Exercises", 1)[0]
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$|```\{math\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    lines = [line for line in text.splitlines()
             if not re.match(r"\s*(```|:::|:[\w-]+:|\(.+\)=\s*$|\|)", line)]  # fmt: skip
    return len(re.findall(r"\S+", "\n".join(lines)))


@pytest.mark.parametrize("name", CHAPTERS)
def test_course_page_fits_the_reading_budget(name):
    """A course page reads in about 12 minutes; its evidence lives on its lab notes."""
    words = prose_words((SRC / f"{name}.md").read_text())
    assert words <= READING_BUDGET, (
        f"book/src/{name}.md has {words} words of prose before its exercises, over the "
        f"budget of {READING_BUDGET}: condense it, or move evidence to {name}{LAB_SUFFIX}.md"
    )


def test_the_reading_budget_counts_prose_only():
    text = (
        "---\nkernel: x\n---\n# Title\n\n(label)=\nTwo words.\n\n```{code-cell} ipython3\n"
        "many code words here\n```\n\n:::{table} caption\n:name: t\n:::\n\n$$a + b$$\n\n"
        "## Exercises\n\nnot counted at all\n"
    )
    assert prose_words(text) == 4  # "# Title" and "Two words."
