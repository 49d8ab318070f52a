"""The API reference documents what each parameter means.

Every callable in ``forgetkit.__all__``, the public methods of its classes, and every
registered unlearning method (whose parameters are its hyperparameters) carries a
docstring with a numpydoc ``Parameters`` section (or Google ``Args:``) naming each
parameter of its signature; sphinx.ext.napoleon renders them on book/api.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import forgetkit
from forgetkit.methods.base import UnlearningMethod

_SECTION = re.compile(r"^(Parameters|Args|Arguments|Attributes)\s*:?\s*\n(?:-+\n)?", re.M)
_OTHER = re.compile(r"^(Returns|Yields|Raises|Notes|Examples|See Also|References)\s*:?\s*$", re.M)


def documented(doc: str) -> set[str]:
    """Names listed in the docstring's Parameters/Args/Attributes sections."""
    names: set[str] = set()
    for match in _SECTION.finditer(doc):
        body = doc[match.end() :]
        end = _OTHER.search(body)
        body = body[: end.start()] if end else body
        for line in body.splitlines():
            entry = re.match(r"^(?:    )?(\*{0,2}[A-Za-z_]\w*)\s*(?::|\(|$)", line)
            if entry and not line.startswith("        "):
                names.add(entry.group(1).lstrip("*"))
    return names


def parameters(obj) -> list[str]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [name for name in signature.parameters if name not in ("self", "cls")]


def _public_callables():
    for name in forgetkit.__all__:
        obj = getattr(forgetkit, name)
        if not callable(obj):
            continue
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    yield f"{name}.{attr}", member


PUBLIC = dict(_public_callables())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_callable_documents_its_parameters(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    missing = [p for p in parameters(obj) if p not in documented(doc)]
    assert missing == [], f"{name}: parameters missing from its Parameters section: {missing}"


@pytest.mark.parametrize("method", forgetkit.available_methods())
def test_method_documents_its_hyperparameters(method):
    cls = type(forgetkit.get_method(method))
    docs = documented(inspect.getdoc(cls) or "")
    docs |= documented(inspect.getdoc(cls.Hyperparameters) or "")
    fields = [f.name for f in dataclasses.fields(cls.Hyperparameters)]
    missing = [f for f in fields if f not in docs]
    assert missing == [], f"{method} ({cls.__name__}): hyperparameters left unexplained: {missing}"


def test_available_methods_is_documented_and_listed():
    assert inspect.getdoc(forgetkit.available_methods)
    assert "available_methods" in forgetkit.methods.__all__ or not hasattr(
        forgetkit.methods, "__all__"
    )
    assert issubclass(type(forgetkit.get_method("retrain")), UnlearningMethod)


def test_the_check_catches_an_undocumented_parameter():
    def documented_fn(a, b, *, c=1, **kwargs):
        """Do it.

        Parameters
        ----------
        a
            First.
        b : int
            Second.
        c
            Third.
        **kwargs
            Passed on.

        Returns
        -------
        c
            Not a parameter entry: the Returns section is skipped.
        """

    assert [
        p for p in parameters(documented_fn) if p not in documented(inspect.getdoc(documented_fn))
    ] == []
    doc = inspect.getdoc(documented_fn)
    assert documented(doc) == {"a", "b", "c", "kwargs"}
    lacking = doc.replace("c\n    Third.\n", "")
    assert [p for p in parameters(documented_fn) if p not in documented(lacking)] == ["c"]
    google = "Do it.\n\nArgs:\n    a: first.\n    b (int): second.\n"
    assert documented(google) == {"a", "b"}
