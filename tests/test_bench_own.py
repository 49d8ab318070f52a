"""``forgetkit bench`` on one's own dataset and model: named in the config as
``"module:function"`` and ``"module:Class"``, checked before anything trains; the original
model is a row of the results; every metric of the results has a card."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from forgetkit import bench
from forgetkit.bench.config import ConfigError, load_config
from forgetkit.bench.report import comparison_table, draw
from forgetkit.metrics import METRIC_CARDS

USER_MODULE = """
import torch
from torch import nn

BUILT = []  # (hidden, num_classes) of every model built, so the test can see it was used


def make_splits():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 1, 6, 6, generator=g) * 2

    def draw(n):
        y = torch.arange(n) % 3
        return centres[y] + 0.5 * torch.randn(n, 1, 6, 6, generator=g), y

    return {"train": draw(90), "test": draw(60), "classes": ["a", "b", "c"]}


def wrong_thing():
    return [1, 2, 3]


def broken():
    raise RuntimeError("cannot read my files")


class TinyNet(nn.Module):
    def __init__(self, num_classes, hidden=16):
        super().__init__()
        BUILT.append((hidden, num_classes))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def five_outputs(hidden=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 5))
"""

CONFIG = """
[bench]
name = "own"
seeds = [0]
oracle_seeds = [0, 1]

[data]
dataset = "{module}:{dataset}"

[model]
name = "{module}:{model}"
[model.options]
hidden = 8

[train]
epochs = 3
lr = 0.1
batch_size = 32

[[scenario]]
name = "class-b"
kind = "class"
cls = "b"

[methods.finetune]
epochs = 1
"""


@pytest.fixture
def user(tmp_path):
    """A user's module (a fresh name per test) beside the config file that names it."""
    name = f"own_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)

    def write(dataset: str = "make_splits", model: str = "TinyNet", extra: str = "") -> Path:
        path = tmp_path / f"{uuid.uuid4().hex[:6]}.toml"
        path.write_text(CONFIG.format(module=name, dataset=dataset, model=model) + extra)
        return path

    yield name, write
    sys.modules.pop(name, None)


def test_bench_runs_a_users_dataset_and_model_with_the_original_as_a_row(user, tmp_path):
    name, write = user
    config = load_config(write())
    assert config.root == str(tmp_path.resolve())
    module = sys.modules[name]
    module.BUILT.clear()
    df = bench.run(config, tmp_path / "out", progress=False)
    assert module.BUILT and {b for b in module.BUILT} == {(8, 3)}  # the user's class, options
    assert set(df["method"]) == {"retrain", "original", "finetune"}
    original = df[(df["method"] == "original") & (df["metric"] == "accuracy")]
    assert set(original["split"]) >= {"forget", "retain", "test"}
    assert original["value"].between(0, 1).all()
    # The original was trained on the forgotten class; the oracle never saw it.
    forget = df[(df["split"] == "forget") & (df["metric"] == "accuracy")]
    assert forget[forget.method == "original"].value.mean() > forget[
        forget.method == "retrain"].value.mean()  # fmt: skip
    assert "seconds" not in set(original["metric"])  # nothing unlearned, nothing timed
    missing = sorted(set(df["metric"]) - set(METRIC_CARDS))
    assert not missing, f"results metrics without a card in METRIC_CARDS: {missing}"
    table = comparison_table(df, "class-b", {"forget": ("forget", "accuracy")})
    assert list(table.index)[:3] == ["retrain (oracle)", "original (before)", "finetune"]
    assert {p.name for p in draw(tmp_path / "out")} == {"class-b.svg", "class-b.png"}
    # The cell keys follow the module's code: an edit to the model's file changes them.
    keys = [bench.engine.cell_key(config, c) for c in bench.plan(config)]
    source = tmp_path / f"{name}.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert not set(keys) & {bench.engine.cell_key(config, c) for c in bench.plan(config)}


def test_gold_metrics_have_cards():
    from forgetkit.bench import gold
    from forgetkit.bench.engine import Cell
    from forgetkit.metrics.gold import forget_quality

    cell = Cell("gold", "s", "m")
    rng = np.random.default_rng(0)
    fq = forget_quality(rng.normal(size=(8, 5)), rng.normal(size=(8, 5)))
    rows = gold._epsilon_rows(cell, fq) + gold._summary_rows(cell, "forget", "klom", np.ones(4))
    names = {r["metric"] for r in rows} | {"forget_quality", "forget_score", "ulira_accuracy",
                                           "ulira_auc", "ulira_tpr_at_0.1pct_fpr", "loss",
                                           "loss_median", "utility_collapsed", "peak_mib",
                                           "not_applicable", "seconds"}  # fmt: skip
    assert not sorted(names - set(METRIC_CARDS))
    for card in METRIC_CARDS.values():
        assert set(card) == {"definition", "direction", "source"}


@pytest.mark.parametrize(
    ("dataset", "model", "extra", "match"),
    [
        ("make_splits", "TinyNet", "", None),
        ("nothere", "TinyNet", "", r"\[data\] dataset = '.*:nothere'.*no attribute"),
        ("wrong_thing", "TinyNet", "", r"\[data\] dataset = '.*:wrong_thing'.*returned list"),
        ("broken", "TinyNet", "", r"\[data\] dataset = '.*:broken'.*cannot read my files"),
        ("make_splits", "Missing", "", r"\[model\] name = '.*:Missing'.*no attribute"),
        (
            "make_splits",
            "five_outputs",
            "",
            r"\[model\] name = '.*:five_outputs'.*returns \(2, 5\); expected \(2, 3\)",
        ),
        (
            "make_splits",
            "TinyNet",
            "width = 2\n",
            r"unknown key\(s\) \['width'\] in \[model.options\].*allowed: \['hidden'\]",
        ),
    ],
)
def test_own_dataset_and_model_are_checked_before_anything_trains(user, dataset, model, extra,
                                                                   match):  # fmt: skip
    _, write = user
    path = write(dataset, model)  # extra: more [model.options]
    if extra:
        path.write_text(path.read_text().replace("hidden = 8\n", "hidden = 8\n" + extra))
    if match is None:
        assert load_config(path).data["dataset"].endswith(":make_splits")
        return
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_unimportable_module_names_the_file_section_and_value(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(module="no_such_module_xyz", dataset="f", model="M"))
    with pytest.raises(ConfigError, match=r"c.toml: \[data\] dataset = 'no_such_module_xyz:f'"
                       r".*ModuleNotFoundError"):  # fmt: skip
        load_config(path)


def test_reserved_labels_are_refused(user):
    _, write = user
    path = write()
    path.write_text(path.read_text().replace("[methods.finetune]", "[methods.original]\n"
                                             "method = \"finetune\""))  # fmt: skip
    with pytest.raises(ConfigError, match=r"\[methods.original\].*reserved"):
        load_config(path)


def test_torchvision_model_is_built_untrained_and_checked(user):
    pytest.importorskip("torchvision")
    name, write = user
    path = write(model="TinyNet")
    text = path.read_text().replace(f'name = "{name}:TinyNet"', 'name = "torchvision:resnet18"')
    path.write_text(text.replace("hidden = 8\n", ""))
    # one input channel: resnet18's first convolution takes three
    with pytest.raises(ConfigError, match=r"\[model\] name = 'torchvision:resnet18'.*channels"):
        load_config(path)
    path.write_text(text.replace("hidden = 8\n", 'weights = "DEFAULT"\n'))
    with pytest.raises(ConfigError, match="never downloads"):
        load_config(path)
    path.write_text(text.replace('"torchvision:resnet18"', '"torchvision:nonet"'))
    with pytest.raises(ConfigError, match="no model 'nonet'"):
        load_config(path)
