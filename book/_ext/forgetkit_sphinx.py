"""Sphinx additions for the book: meaningful alt text for every figure, and author-year
citations that tell apart two papers by the same authors in the same year.

myst-nb names a glued figure's image after its content hash, and that hash becomes the
image's alt text; a screen reader then reads out sixty-four hexadecimal digits. Here every
image inside a figure without an explicit ``:alt:`` takes its caption's text instead, so
each chapter's figures are described by what their captions already say.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pybtex.plugin
import sphinxcontrib.bibtex.plugin
from docutils import nodes
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting
from pybtex.style.template import join, node
from sphinx.application import Sphinx
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join2, post_text, pre_text, reference

_PLACEHOLDER = re.compile(r"^(.*/)?[0-9a-f]{16,}\.(png|svg|jpe?g)$|^$")


def _caption_text(figure: nodes.figure) -> str:
    for caption in figure.findall(nodes.caption):
        return " ".join(caption.astext().split())
    return ""


def set_figure_alt(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Describe each figure's image by its caption, and make the image a link to itself.

    The link is Sphinx's own "scaled image" link (``html_scaled_image_link``): an image with
    a ``scale`` is wrapped in a link to its file in ``_images``, so a reader on a phone can
    open the full-size SVG. ``scale=100`` changes nothing else on the page.
    """
    for figure in doctree.findall(nodes.figure):
        text = _caption_text(figure)
        for image in figure.findall(nodes.image):
            if text and _PLACEHOLDER.match(image.get("alt", "")):
                image["alt"] = text
            if not any(key in image for key in ("scale", "width", "height")):
                image["scale"] = 100


# --------------------------------------------------------------------------- citations
#
# sphinxcontrib-bibtex's author_year style prints the year field as it is, so two papers by
# the same authors in the same year both read "Golatkar et al., 2020", and its bibliography
# styles number the entries. Here one label style names every entry "Authors, Year" with a
# letter added where two entries would share that text ("2020a", "2020b", in bibliography
# order); the bibliography shows those labels, and the in-text references take their year
# from the label, so text and bibliography always agree.

LABEL_SEP = ", "


def _last_names(persons: list) -> str:
    names = [
        " ".join(Text.from_latex(part).render_as("text") for part in p.prelast_names + p.last_names)
        for p in persons
    ]
    if len(names) > 2:
        return f"{names[0]} et al."
    return " and ".join(names)


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels such as "Golatkar et al., 2020a": the in-text author part and the year, with
    a letter where two entries would otherwise read the same."""

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        who = _last_names(persons) if persons else entry.fields.get("title", entry.key)
        return f"{who}{LABEL_SEP}{entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearSortingStyle(AuthorYearTitleSorting):
    """Author, year, title, ignoring the braces that keep a body's name whole (GDPR)."""

    def person_key(self, person) -> str:
        return super().person_key(person).replace("{", "").replace("}", "")


class AuthorYearStyle(PlainStyle):
    """pybtex's plain entries, sorted by author, year and title, labelled author-year."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearSortingStyle


@node
def label_year(children, data) -> Text:
    """The year as the bibliography labels it ("2020a"), for in-text references."""
    assert not children
    label = data["formatted_entry"].label
    return Text(label.rsplit(LABEL_SEP, 1)[-1])


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name), label_year
                ]
            ],
            post_text,
        ]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text, reference[label_year], post_text
                ],
                self.bracket.right,
            ],
        ]


@dataclass
class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name: str):
        return reference[label_year]


@dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author_year references, with the bibliography label's year."""

    def __post_init__(self):
        super().__post_init__()
        replace = {
            BasicAuthorYearParentheticalReferenceStyle: _Parenthetical(
                bracket=self.bracket_parenthetical,
                person=self.person,
                author_year_sep=self.author_year_sep,
                pre_text_sep=self.pre_text_sep,
                post_text_sep=self.post_text_sep,
            ),
            BasicAuthorYearTextualReferenceStyle: _Textual(
                bracket=self.bracket_textual,
                person=self.person,
                text_reference_sep=self.text_reference_sep,
                pre_text_sep=self.pre_text_sep,
                post_text_sep=self.post_text_sep,
            ),
            ExtraYearReferenceStyle: _Year(bracket=self.bracket_year),
        }
        self.styles = [replace.get(type(style), style) for style in self.styles]
        self.role_style = {name: style for style in self.styles for name in style.role_names()}


def register_citation_styles() -> None:
    """Make ``bibtex_default_style: author_year`` and ``bibtex_reference_style:
    author_year_label`` (in _config.yml) name the styles above."""
    pybtex.plugin.register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing",
        "author_year_label",
        AuthorYearLabelReferenceStyle,
    )


def setup(app: Sphinx) -> dict[str, bool]:
    register_citation_styles()
    app.connect("doctree-resolved", set_figure_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
