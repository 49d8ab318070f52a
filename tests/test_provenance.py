"""Stored results: round trip, atomic writes, and clear errors for damaged files."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import forgetkit
from forgetkit import provenance as prov
from forgetkit.provenance import (
    DirtyResultsError,
    Provenance,
    git_commit,
    load_results,
    save_results,
)


@pytest.fixture
def record() -> Provenance:
    """A record as from a clean checkout (this one may be dirty while tests run)."""
    made = Provenance.collect("paper", "cpu", [0, 1, 2], 12.7, note="unit test")
    return dataclasses.replace(made, git_commit="0123abc")


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["retrain", "fisher", "finetune"],
        "forget_accuracy": [0.0, 0.0123456789012345678, float("nan")],
        "epochs": np.array([10, 0, 3], dtype=np.int64),
        "converged": [True, False, True],
    })  # fmt: skip


def test_collect_records_this_environment(record):
    import torch

    assert record.profile == "paper" and record.device == "cpu"
    assert record.seeds == (0, 1, 2) and record.seconds == 12.7
    assert record.forgetkit_version == forgetkit.__version__
    assert record.torch_version == torch.__version__
    assert record.threads == torch.get_num_threads() and record.accelerator is None
    assert record.date.endswith("+00:00") and record.extra == {"note": "unit test"}
    text = record.describe()
    assert "profile paper" in text and "seeds 0, 1, 2" in text and "13 s" in text


def test_collect_accepts_one_seed_and_numpy_values():
    record = Provenance.collect("ci", "cpu", np.int64(3), np.float32(1.5), lr=np.float64(0.1))
    assert record.seeds == (3,) and record.extra == {"lr": 0.1}
    json.dumps(record.as_dict())  # plain JSON values only


def test_round_trip_keeps_values_dtypes_and_provenance(tmp_path, frame, record):
    path = save_results(tmp_path / "nested" / "chapter.json", frame, record)
    loaded, back = load_results(path)
    pd.testing.assert_frame_equal(loaded, frame)
    assert back == record
    assert loaded["forget_accuracy"][1] == frame["forget_accuracy"][1]  # floats bit-exact
    assert math.isnan(loaded["forget_accuracy"][2])


def test_round_trip_keeps_a_named_index(tmp_path, frame, record):
    indexed = frame.set_index("method")
    loaded, _ = load_results(save_results(tmp_path / "r.json", indexed, record))
    pd.testing.assert_frame_equal(loaded, indexed)
    multi = frame.set_index(["method", "epochs"])
    loaded, _ = load_results(save_results(tmp_path / "m.json", multi, record))
    pd.testing.assert_frame_equal(loaded, multi)


def test_overwrite_replaces_whole_file(tmp_path, frame, record):
    path = tmp_path / "r.json"
    save_results(path, frame, record)
    save_results(path, frame.head(1), record)
    assert len(load_results(path)[0]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failed_write_leaves_old_file_and_no_debris(tmp_path, frame, record, monkeypatch):
    path = tmp_path / "r.json"
    save_results(path, frame, record)
    before = path.read_bytes()

    bad = frame.assign(method=[object(), "x", "y"])  # not storable as JSON
    with pytest.raises(TypeError, match="cannot store"):
        save_results(path, bad, record)
    assert path.read_bytes() == before

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(prov.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_results(path, frame.head(1), record)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # the temporary file is gone


def test_failed_first_write_leaves_nothing(tmp_path, frame, record):
    with pytest.raises(TypeError):
        save_results(tmp_path / "r.json", frame.assign(epochs=[{1}, {2}, {3}]), record)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_wrong_arguments(tmp_path, frame, record):
    with pytest.raises(TypeError, match="DataFrame"):
        save_results(tmp_path / "r.json", frame.to_dict(), record)
    with pytest.raises(TypeError, match="Provenance"):
        save_results(tmp_path / "r.json", frame, record.as_dict())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a forgetkit results file"),
        ('{"format": "something-else"}', "not a forgetkit results file"),
        ('{"format": "forgetkit-results", "version": 99}', "format version 99"),
        ('{"format": "forgetkit-results", "version": 1}', "lacks provenance"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_results(path)


def test_damaged_content_gives_clear_errors(tmp_path, frame, record):
    path = save_results(tmp_path / "r.json", frame, record)
    payload = json.loads(path.read_text())

    truncated = path.read_text()[: len(path.read_text()) // 2]
    path.write_text(truncated)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(path)

    short_row = {**payload, "data": [row[:-1] for row in payload["data"]]}
    path.write_text(json.dumps(short_row))
    with pytest.raises(ValueError, match="disagree in length"):
        load_results(path)

    extra_field = {**payload, "provenance": {**payload["provenance"], "gpu_count": 8}}
    path.write_text(json.dumps(extra_field))
    with pytest.raises(ValueError, match="unknown provenance fields"):
        load_results(path)

    no_seeds = {**payload, "provenance": {k: v for k, v in payload["provenance"].items()
                                          if k != "seeds"}}  # fmt: skip
    path.write_text(json.dumps(no_seeds))
    with pytest.raises(ValueError, match="missing"):
        load_results(path)

    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not"):
        load_results(path)


def test_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="PROFILE='paper'"):
        load_results(tmp_path / "absent.json")


def test_git_commit_outside_a_checkout_is_none(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGETKIT_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) is None


def test_git_commit_outside_a_checkout_is_the_launchers(tmp_path, monkeypatch):
    """A copy sent to a GPU machine has no .git: the commit comes with it, by name."""
    monkeypatch.setenv("FORGETKIT_GIT_COMMIT", "0123abc")
    assert git_commit(tmp_path) == "0123abc"


def test_git_commit_marks_a_dirty_tree(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "a")
    clean = git_commit(tmp_path)
    assert clean is not None and len(clean) >= 7 and not clean.endswith("-dirty")
    (tmp_path / "a.txt").write_text("two")
    assert git_commit(tmp_path) == clean + "-dirty"
    (tmp_path / "sub").mkdir()
    assert git_commit(tmp_path / "sub") is None  # only a checkout's root names its commit


def test_stored_results_do_not_make_the_code_dirty(tmp_path):
    """Paper runs write book/results/; a parallel run's file there is data, not code."""

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    results = tmp_path / "book" / "results"
    results.mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1")
    (results / "other.json").write_text("{}")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "a")
    clean = git_commit(tmp_path)
    (results / "other.json").write_text('{"a": 1}')
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2")
    assert git_commit(tmp_path) == clean + "-dirty"


def test_commit_of_this_checkout_matches_git():
    root = Path(forgetkit.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("forgetkit is not installed from a git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert git_commit().removesuffix("-dirty") == head


def test_a_dirty_result_is_refused_unless_the_caller_opts_in(tmp_path, frame, record):
    dirty = dataclasses.replace(record, git_commit="0123abc-dirty")
    path = save_results(tmp_path / "dirty.json", frame, dirty)
    with pytest.raises(DirtyResultsError, match="0123abc-dirty.*uncommitted changes"):
        load_results(path)
    loaded, back = load_results(path, allow_dirty=True)
    pd.testing.assert_frame_equal(loaded, frame)
    assert back.dirty and "UNCOMMITTED CHANGES" in back.describe()
    assert not record.dirty and "UNCOMMITTED" not in record.describe()
    no_checkout = dataclasses.replace(record, git_commit=None)
    assert not no_checkout.dirty


def test_every_stored_book_result_is_clean_or_shown_as_dirty():
    """A stored result in book/results from a dirty commit must be loaded with allow_dirty
    by a chapter that says so; list them here so a new one cannot slip in unnoticed."""
    root = Path(__file__).resolve().parent.parent / "book" / "results"
    stored = {p.name: load_results(p, allow_dirty=True)[1] for p in root.glob("*.json")}
    dirty = sorted(name for name, provenance in stored.items() if provenance.dirty)
    # the first ES recipe's run, kept to show why the recipe changed; its paragraph says so
    assert set(dirty) <= {"eternal_sunshine_recipe26.json"}, dirty
