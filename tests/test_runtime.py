"""The runtime helpers every module and benchmark agree on: devices, seeds, timers."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from forgetkit.runtime import Stopwatch, best_of, generator, resolve_device, seeded


def test_resolve_device_names_the_bad_value():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises((ValueError, RuntimeError), match="nonsense"):
        resolve_device("nonsense")


def test_seeded_restores_the_global_generators():
    random.seed(5)
    np.random.seed(5)  # noqa: NPY002 (the global state is what is being tested)
    before = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(5)
    np.random.seed(5)  # noqa: NPY002
    with seeded(123):
        inside = (random.random(), np.random.random())  # noqa: NPY002
    assert (random.random(), np.random.random()) == before  # noqa: NPY002
    with seeded(123):
        assert (random.random(), np.random.random()) == inside  # noqa: NPY002


def test_seeded_fixes_and_restores_torchs_generator():
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    with seeded(123, "cpu"):
        inside = torch.rand(3)
    assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(123)))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_generator_is_seeded():
    a = torch.randn(3, generator=generator(7))
    assert torch.equal(a, torch.randn(3, generator=generator(7)))


def test_stopwatch_measures_the_block():
    with Stopwatch(torch.device("cpu")) as watch:
        time.sleep(0.02)
    assert watch.seconds >= 0.02


def test_best_of_takes_the_fastest_call():
    delays = iter([0.06, 0.01, 0.04])
    calls = []

    def work():
        calls.append(1)
        time.sleep(next(delays))

    best = best_of(work, 3, "cpu")
    assert len(calls) == 3
    assert 0.01 <= best < 0.04  # the fastest call, not the first or the mean


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_best_of_rejects_a_bad_repeat_count(repeats):
    with pytest.raises(ValueError, match=f"repeats must be a positive int, got {repeats!r}"):
        best_of(lambda: None, repeats)
