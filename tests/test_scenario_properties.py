"""Property tests: any scenario spec either builds disjoint, correctly sized forget / retain /
test / held-out sets, or raises ValueError / TypeError naming the argument that is wrong."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetkit.data import ImageDataset, Samples
from forgetkit.scenarios import (
    ForgetTask,
    forget_class,
    forget_identity,
    forget_indices,
    forget_injected,
    forget_random,
    forget_subclass,
)

SIZES = (13, 10, 9, 8)  # training samples per class: uneven on purpose
N_TRAIN, N_TEST = sum(SIZES), 20
CLASSES = ("a", "b", "c", "d")


def _dataset() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    y_train = torch.repeat_interleave(torch.arange(4), torch.tensor(SIZES))
    y_test = torch.arange(N_TEST) % 4
    return ImageDataset(
        name="tiny", train=Samples(torch.randn(N_TRAIN, 1, 4, 4, generator=g), y_train),
        test=Samples(torch.randn(N_TEST, 1, 4, 4, generator=g), y_test), classes=CLASSES,
        mean=(0.0,), std=(1.0,), exact=True, note="synthetic",
    )  # fmt: skip


DATA = _dataset()
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

anything = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.just("5"),
                     st.lists(st.integers(0, 3), max_size=2))  # fmt: skip
counts = st.one_of(
    st.integers(-3, N_TRAIN + 3),
    st.integers(-3, N_TRAIN + 3).map(np.int64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1).map(np.float32),
    anything,
)
seeds = st.one_of(st.integers(-2, 2**40), st.integers(0, 5).map(np.int64), st.floats(0, 3),
                  anything)  # fmt: skip
fractions = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2),
                      st.floats(0.001, 0.999), anything)  # fmt: skip
classes = st.one_of(st.integers(-2, 6), st.sampled_from([*CLASSES, "nope"]), st.floats(0, 3),
                    st.booleans(), st.none())  # fmt: skip


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_float(v) -> bool:
    return isinstance(v, float | np.floating)


def _bad_seed(seed) -> bool:
    return not (_is_int(seed) and seed >= 0)


def _bad_fraction(h) -> bool:
    return not (_is_float(h) and 0 < h < 1 and 0 < round(float(h) * N_TEST) < N_TEST)


def _expected_count(n, available: int) -> int | None:
    """The forget size ``n`` means against ``available`` samples, or None if invalid."""
    if _is_float(n):
        k = max(1, round(float(n) * available)) if 0 < n <= 1 else None
    elif _is_int(n):
        k = int(n) if n >= 1 else None
    else:
        return None
    return k if k is not None and k < available else None


def _check_task(task: ForgetTask, n_train: int, heldout_fraction: float) -> None:
    f, r = task.forget, task.retain
    assert f.ndim == r.ndim == 1 and f.size and r.size
    assert np.intersect1d(f, r).size == 0
    assert np.array_equal(np.union1d(f, r), np.arange(n_train))
    assert np.intersect1d(task.test, task.heldout).size == 0
    assert np.array_equal(np.union1d(task.test, task.heldout), np.arange(N_TEST))
    assert task.heldout.size == round(float(heldout_fraction) * N_TEST)
    assert len(task.forget_set) == f.size and len(task.train_set) == n_train


def _run(build, bad: dict[str, bool]):
    """Build the task; if it raises, the error must be a ValueError/TypeError naming one of
    the arguments that are wrong, and some argument must indeed be wrong."""
    try:
        task = build()
    except (ValueError, TypeError) as err:
        named = [a for a, wrong in bad.items() if wrong and re.search(rf"\b{a}\b", str(err))]
        assert any(bad.values()), f"valid spec refused: {err}"
        assert named, f"error names none of the wrong arguments {bad}: {err}"
        return None
    assert not any(bad.values()), f"invalid spec accepted: {bad}"
    return task


@SETTINGS
@given(n=counts, seed=seeds, h=fractions)
def test_random_spec(n, seed, h):
    k = _expected_count(n, N_TRAIN)
    task = _run(
        lambda: forget_random(DATA, n, seed=seed, heldout_fraction=h),
        {"n": k is None, "seed": _bad_seed(seed), "heldout_fraction": _bad_fraction(h)},
    )
    if task is not None:
        _check_task(task, N_TRAIN, h)
        assert task.forget.size == k


def _class_of(cls) -> int | None:
    if isinstance(cls, str):
        return CLASSES.index(cls) if cls in CLASSES else None
    return int(cls) if _is_int(cls) and 0 <= cls < 4 else None


@SETTINGS
@given(cls=classes, n=counts, seed=seeds, h=fractions)
def test_subclass_spec(cls, n, seed, h):
    c = _class_of(cls)
    k = None if c is None else _expected_count(n, SIZES[c])
    bad = {"cls": c is None, "n": c is not None and k is None, "seed": _bad_seed(seed),
           "heldout_fraction": _bad_fraction(h)}  # fmt: skip
    task = _run(lambda: forget_subclass(DATA, cls, n, seed=seed, heldout_fraction=h), bad)
    if task is not None:
        _check_task(task, N_TRAIN, h)
        assert task.forget.size == k and set(task.forget_set.y.tolist()) == {c}
        assert (task.retain_set.y == c).sum() == SIZES[c] - k


@SETTINGS
@given(cls=classes, seed=seeds, h=fractions, identity=st.booleans())
def test_class_and_identity_spec(cls, seed, h, identity):
    c = _class_of(cls)
    arg = "person" if identity else "cls"
    make = forget_identity if identity else forget_class
    bad = {arg: c is None, "seed": _bad_seed(seed), "heldout_fraction": _bad_fraction(h)}
    task = _run(lambda: make(DATA, cls, seed=seed, heldout_fraction=h), bad)
    if task is not None:
        _check_task(task, N_TRAIN, h)
        assert task.forget.size == SIZES[c] and task.forget_classes == (c,)
        assert c not in task.retain_set.y.tolist()


index_arrays = st.one_of(
    st.lists(st.integers(-2, N_TRAIN + 2), max_size=N_TRAIN + 2),
    st.lists(st.integers(0, N_TRAIN - 1), min_size=1, max_size=N_TRAIN, unique=True),
    st.lists(st.integers(0, N_TRAIN - 1), min_size=2, max_size=6).map(
        lambda v: np.array(v[: len(v) // 2 * 2]).reshape(-1, 2)),
    st.lists(st.floats(0, N_TRAIN - 1), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=1, max_size=4),
    st.just(np.arange(N_TRAIN)),
    st.integers(0, 5),
    anything,
)  # fmt: skip


def _valid_indices(indices) -> bool:
    if isinstance(indices, str | bytes | dict | set):
        return False
    a = np.asarray(indices)
    return (a.ndim == 1 and 0 < a.size < N_TRAIN and np.issubdtype(a.dtype, np.integer)
            and a.min() >= 0 and a.max() < N_TRAIN and np.unique(a).size == a.size)  # fmt: skip


@SETTINGS
@given(indices=index_arrays, seed=seeds, h=fractions)
def test_indices_spec(indices, seed, h):
    bad = {"indices": not _valid_indices(indices), "seed": _bad_seed(seed),
           "heldout_fraction": _bad_fraction(h)}  # fmt: skip
    task = _run(lambda: forget_indices(DATA, indices, seed=seed, heldout_fraction=h), bad)
    if task is not None:
        _check_task(task, N_TRAIN, h)
        assert np.array_equal(task.forget, np.sort(np.asarray(indices)))


@SETTINGS
@given(n=counts, seed=seeds, h=fractions)
def test_injected_spec(n, seed, h):
    ok_n = _is_int(n) and n >= 1
    bad = {"n": not ok_n, "seed": _bad_seed(seed), "heldout_fraction": _bad_fraction(h)}
    task = _run(lambda: forget_injected(DATA, n, seed=seed, heldout_fraction=h), bad)
    if task is not None:
        _check_task(task, N_TRAIN + int(n), h)
        assert np.array_equal(task.forget, np.arange(N_TRAIN, N_TRAIN + int(n)))


# --------------------------------------------------------------------------- pinned messages


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: forget_random(DATA, 1.0), ValueError,
         r"n=1.0 would forget all 40 samples and leave none to retain; the most is 39"),
        (lambda: forget_random(DATA, N_TRAIN), ValueError, "would forget all 40 samples"),
        (lambda: forget_random(DATA, True), TypeError, r"n must be an int .* got True \(bool\)"),
        (lambda: forget_random(DATA, "5"), TypeError, r"n must be an int .* got '5' \(str\)"),
        (lambda: forget_random(DATA, float("nan")), ValueError, "n=nan as a fraction"),
        (lambda: forget_random(DATA, 3, seed=-1), ValueError, "seed must be >= 0, got -1"),
        (lambda: forget_random(DATA, 3, seed=1.5), TypeError, "seed must be an int, got 1.5"),
        (lambda: forget_random(DATA, 3, heldout_fraction=True), TypeError,
         "heldout_fraction must be a float"),
        (lambda: forget_random(DATA, 3, heldout_fraction=0.01), ValueError,
         "heldout_fraction=0.01 of 20 test samples leaves the test or the held-out set empty"),
        (lambda: forget_subclass(DATA, 0, 13), ValueError, "all of it is forget_class"),
        (lambda: forget_class(DATA, True), TypeError, "cls: a class is an int or a class name"),
        (lambda: forget_identity(DATA, 9), ValueError, "person: class 9 is not in tiny"),
        (lambda: forget_indices(DATA, np.zeros((2, 2), int)), ValueError,
         r"indices must be 1-D, got an array of shape \(2, 2\)"),
        (lambda: forget_indices(DATA, [True, False]), TypeError, "integers, got dtype bool"),
        (lambda: forget_indices(DATA, "12"), TypeError, "indices must be a 1-D sequence"),
        (lambda: forget_indices(DATA, np.arange(N_TRAIN)), ValueError,
         "every training sample: nothing would be left"),
        (lambda: forget_injected(DATA, 2.0), TypeError, "n must be an int"),
        (lambda: forget_injected(DATA, 2, source=3), TypeError, "source must be 'noise' or an"),
        (lambda: forget_random(Samples(torch.randn(3, 2), torch.arange(3)), 1), TypeError,
         "data must be an ImageDataset"),
        (lambda: forget_random(forget_random(DATA, 2), 1), TypeError, "pass task.data"),
        (lambda: ForgetTask(DATA, np.zeros((1, 1), int), np.arange(1, 5), np.arange(10),
                            np.arange(10, 20), "x"), ValueError, "forget indices must be 1-D"),
        (lambda: ForgetTask(DATA, np.array([0.7]), np.arange(1, 5), np.arange(10),
                            np.arange(10, 20), "x"), TypeError, "forget indices must be integers"),
    ],
)  # fmt: skip
def test_bad_specs_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_task_needs_a_dataset():
    with pytest.raises(TypeError, match="data must be an ImageDataset, got Samples"):
        ForgetTask(DATA.train, np.arange(2), np.arange(2, 5), np.arange(10), np.arange(10, 20), "x")
