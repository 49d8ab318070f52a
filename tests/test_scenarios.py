"""Forget scenarios: disjoint, reproducible index sets, and clear errors for impossible requests."""

from __future__ import annotations

import numpy as np
import pytest

from forgetkit.scenarios import (
    forget_class,
    forget_identity,
    forget_indices,
    forget_injected,
    forget_random,
    forget_subclass,
)


def _check_partition(task):
    n_train, n_test = len(task.data.train), len(task.data.test)
    assert np.intersect1d(task.forget, task.retain).size == 0
    assert np.union1d(task.forget, task.retain).size == n_train
    assert np.intersect1d(task.test, task.heldout).size == 0
    assert np.union1d(task.test, task.heldout).size == n_test


def test_class_scenario(mnist_small):
    task = forget_class(mnist_small, 3, seed=0)
    _check_partition(task)
    assert set(task.forget_set.y.tolist()) == {3}
    assert 3 not in set(task.retain_set.y.tolist())
    assert task.forget_classes == (3,)
    assert forget_class(mnist_small, "3").forget.tolist() == task.forget.tolist()


def test_every_scenario_is_reproducible_from_its_seed(mnist_small):
    makers = [
        lambda s: forget_subclass(mnist_small, 0, 25, seed=s),
        lambda s: forget_random(mnist_small, 100, seed=s),
        lambda s: forget_injected(mnist_small, 10, seed=s),
        lambda s: forget_class(mnist_small, 1, seed=s),
    ]
    for make in makers:
        a, b, c = make(0), make(0), make(1)
        _check_partition(a)
        assert a.forget.tolist() == b.forget.tolist() and a.test.tolist() == b.test.tolist()
        assert a.fingerprint == b.fingerprint
        assert a.fingerprint != c.fingerprint


def test_subclass_keeps_the_rest_of_the_class(mnist_small):
    task = forget_subclass(mnist_small, 0, 25, seed=0)
    assert task.forget.size == 25 and set(task.forget_set.y.tolist()) == {0}
    assert 0 in set(task.retain_set.y.tolist()) and task.forget_classes == ()
    assert forget_subclass(mnist_small, 0, 0.1).forget.size == round(
        0.1 * (mnist_small.train.y == 0).sum().item()
    )


def test_identity_forgets_one_person(olivetti):
    task = forget_identity(olivetti, 7)
    assert task.kind == "identity" and task.forget.size == 7
    assert set(task.forget_set.y.tolist()) == {7}


def test_injected_samples_are_appended_and_forgotten(mnist_small, olivetti):
    task = forget_injected(mnist_small, 20, seed=0)
    assert len(task.data.train) == len(mnist_small.train) + 20
    assert task.forget.tolist() == list(range(len(mnist_small.train), len(task.data.train)))
    assert task.forget_set.x.shape[1:] == mnist_small.image_shape
    faces = forget_injected(mnist_small, 5, source=olivetti, seed=0)
    assert faces.forget_set.x.shape[1:] == (1, 28, 28) and "olivetti" in faces.data.name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: forget_class(d, 10), "class 10 is not in"),
        (lambda d: forget_class(d, "cat"), "unknown class 'cat'"),
        (lambda d: forget_subclass(d, 0, 10_000), "only .* exist"),
        (lambda d: forget_subclass(d, 0, 0), "empty"),
        (lambda d: forget_random(d, 0), "empty"),
        (lambda d: forget_random(d, 1.5), "fraction must lie in"),
        (lambda d: forget_indices(d, []), "forget set is empty"),
        (lambda d: forget_indices(d, [0, 99_999]), "forget index 99999 is out of range"),
        (lambda d: forget_indices(d, [-1]), "out of range"),
        (lambda d: forget_indices(d, [4, 4]), "duplicates"),
        (lambda d: forget_random(d, 10, heldout_fraction=1.0), "heldout_fraction"),
        (lambda d: forget_injected(d, 0), "empty"),
        (lambda d: forget_injected(d, 3, source="faces"), "source must be"),
    ],
)
def test_impossible_requests_raise_clear_errors(mnist_small, make, message):
    with pytest.raises(ValueError, match=message):
        make(mnist_small)


def test_forget_indices_rejects_non_integers(mnist_small):
    with pytest.raises(TypeError, match="integers"):
        forget_indices(mnist_small, [0.5, 1.5])


def test_scenarios_state_the_split_they_draw_and_their_line_is_unchanged(mnist_small):
    """The book prints ``task.describe()``: a scenario's line keeps its form (only a task of
    one's own splits with a drawn held-out set says more)."""
    task = forget_class(mnist_small, 3, seed=0, heldout_fraction=0.5)
    assert task.describe() == (
        f"class forgetting on {mnist_small.name}: forget {task.forget.size}, retain "
        f"{task.retain.size}, test {task.test.size}, held-out {task.heldout.size}"
    )
    assert task.heldout.size == round(0.5 * len(mnist_small.test))
    with pytest.raises(TypeError, match="heldout_fraction must be a float"):
        forget_class(mnist_small, 3, heldout_fraction=True)


def test_own_splits_become_a_task_like_any_other(mnist_small):
    from torch.utils.data import DataLoader, TensorDataset

    from forgetkit.scenarios import ForgetTask

    ref = forget_class(mnist_small, 3, seed=0)
    loader = DataLoader(TensorDataset(ref.retain_set.x, ref.retain_set.y), batch_size=256,
                        shuffle=True)  # fmt: skip
    own = ForgetTask.from_splits(forget=ref.forget_set, retain=loader, test=ref.test_set,
                                 heldout=ref.heldout_set, classes=mnist_small.classes,
                                 forget_classes=(3,), name="my digits")  # fmt: skip
    _check_partition(own)
    for part in ("forget_set", "retain_set", "test_set", "heldout_set"):
        assert np.array_equal(getattr(own, part).x.numpy(), getattr(ref, part).x.numpy()), part
    assert own.num_classes == 10 and own.kind == "class" and own.data.name == "my digits"
    assert own.describe().startswith("class forgetting on my digits: forget ")
