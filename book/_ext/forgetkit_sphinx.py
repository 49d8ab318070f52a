"""Sphinx additions for the book: meaningful alt text for every figure.

myst-nb names a glued figure's image after its content hash, and that hash becomes the
image's alt text; a screen reader then reads out sixty-four hexadecimal digits. Here every
image inside a figure without an explicit ``:alt:`` takes its caption's text instead, so
each chapter's figures are described by what their captions already say.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx

_PLACEHOLDER = re.compile(r"^(.*/)?[0-9a-f]{16,}\.(png|svg|jpe?g)$|^$")


def _caption_text(figure: nodes.figure) -> str:
    for caption in figure.findall(nodes.caption):
        return " ".join(caption.astext().split())
    return ""


def set_figure_alt(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for figure in doctree.findall(nodes.figure):
        text = _caption_text(figure)
        if not text:
            continue
        for image in figure.findall(nodes.image):
            if _PLACEHOLDER.match(image.get("alt", "")):
                image["alt"] = text


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("doctree-resolved", set_figure_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
