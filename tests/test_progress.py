"""Progress bars: shown on long operations, silenced everywhere by one switch.

Bars go to stderr (tqdm's text bar outside a notebook kernel), so each test forces the
switch on or off and reads what reached stderr.
"""

from __future__ import annotations

import pytest
import torch

import forgetkit.runtime as runtime
from forgetkit.data import Samples
from forgetkit.metrics import evaluate, relearn_curve, relearn_time
from forgetkit.models import ModelConfig
from forgetkit.runtime import PROGRESS_ENV, progress, progress_enabled, set_progress
from forgetkit.scenarios import ForgetTask
from forgetkit.train import TrainConfig, TrainingRecorder, retrain, train_model

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = ModelConfig("mlp", (1, 4, 4), 3, {"hidden": (8,)})
QUICK = TrainConfig(epochs=2, lr=0.1, batch_size=32)


@pytest.fixture(autouse=True)
def _switch(monkeypatch):
    """Every test starts from the default switch, with the environment variable unset."""
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setattr(runtime, "_progress_setting", None)


def _blobs(n: int, seed: int) -> Samples:
    centres = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(99))
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return Samples(centres[y] + 0.8 * torch.randn(n, 1, 4, 4, generator=gen), y)


def test_the_switch_and_the_environment_variable_decide(monkeypatch):
    assert progress_enabled(True) and not progress_enabled(False)  # a call's own choice
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert progress_enabled()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not progress_enabled() and not progress_enabled(True)  # 0 silences everything
    monkeypatch.setenv(PROGRESS_ENV, "maybe")
    with pytest.raises(ValueError, match=r"FORGETKIT_PROGRESS='maybe': expected 0"):
        progress_enabled()
    monkeypatch.delenv(PROGRESS_ENV)
    set_progress(False)
    assert not progress_enabled(True)
    set_progress(True)
    assert progress_enabled()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert progress_enabled()  # the call in the code overrules the environment
    with pytest.raises(TypeError, match="True, False or None"):
        set_progress("off")


def test_set_progress_false_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    set_progress(False)
    assert not progress_enabled() and not progress_enabled(True)


def test_off_the_helper_is_a_silent_stand_in(capsys):
    set_progress(False)
    bar = progress(range(3), desc="work")
    assert list(bar) == [0, 1, 2] and len(bar) == 3
    with progress(desc="by hand", total=5) as manual:
        manual.update(2)
        manual.set_postfix(loss="0.1")
    assert manual.n == 2
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="desc must be a string"):
        progress(range(2), desc=None)


def test_on_the_helper_draws_a_bar(capsys):
    set_progress(True)
    assert list(progress(range(4), desc="counting", leave=True)) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "counting" in err and "4/4" in err


def test_training_retraining_evaluation_and_relearn_show_bars_and_one_switch_silences_them(
    capsys,
):
    data = _blobs(90, 0)
    forget, retain = data.subset(range(9)), data.subset(range(9, 90))
    task = ForgetTask.from_splits(forget=forget, retain=retain, test=_blobs(30, 1),
                                  heldout=_blobs(30, 2), num_classes=3)  # fmt: skip

    def run() -> str:
        capsys.readouterr()
        original = train_model(CFG, task.train_set, QUICK, cache=False, desc="original")
        oracle = retrain(task, CFG, QUICK, seeds=(0, 1), cache=False)
        evaluate({"original": original}, task, oracle, metrics=["accuracy"])
        relearn_time(original.model, forget, data, threshold=-1.0, max_epochs=3)
        relearn_curve(original.model, forget, data, max_epochs=2)
        for _ in TrainingRecorder((), epochs=2):
            pass
        return capsys.readouterr().err

    set_progress(True)
    shown = run()
    for label in ("original", "retrain (2 seeds)", "evaluate", "relearn time", "relearn curve",
                  "train (own loop)"):  # fmt: skip
        assert label in shown, label
    set_progress(False)
    assert run() == ""
    set_progress(None)
    assert run() == ""  # stderr captured by pytest is no terminal: no bars by default


def test_a_calls_own_progress_false_is_respected(capsys):
    set_progress(True)
    train_model(CFG, _blobs(60, 0), QUICK, cache=False, progress=False, desc="quiet")
    assert "quiet" not in capsys.readouterr().err


def test_the_bar_class_is_the_text_bar_outside_a_notebook():
    from tqdm.std import tqdm

    assert runtime._bar_class() is tqdm
    assert not runtime._in_notebook()


def test_in_a_notebook_bars_show_by_default_and_the_variable_silences_them(monkeypatch):
    """Without ipywidgets, the text bar, and no tqdm warning in the cell's output."""
    import sys
    import warnings

    from tqdm.std import tqdm

    monkeypatch.setattr(runtime, "_in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime._bar_class() is tqdm
    assert progress_enabled()
    monkeypatch.setenv(PROGRESS_ENV, "0")  # what the book's build and nbval set
    assert not progress_enabled()
