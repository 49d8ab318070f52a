"""The benchmark config accepts SSD and SCRUB by name, with their hyperparameters checked."""

from __future__ import annotations

import pytest

from forgetkit import bench
from forgetkit.bench.config import ConfigError
from forgetkit.cli import main

CONFIG = """
[bench]
name = "ssd-scrub"
seeds = [0]
oracle_seeds = [0]

[data]
dataset = "mnist"
train = 300
test = 100

[model]
name = "mlp"

[train]
epochs = 2
lr = 0.05

[[scenario]]
name = "random-20"
kind = "random"
n = 20

[methods.ssd]
alpha = 10.0
lam = 1.0
importance = "sample"

[methods.scrub]
epochs = 2
msteps = 1
lr_decay_epochs = [1]

[methods.ssd-batch]
method = "ssd"
batch_size = 64
"""


def test_a_config_with_ssd_and_scrub_parses_and_plans(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG)
    config = bench.load_config(path)
    assert [(m.label, m.method) for m in config.methods] == [
        ("ssd", "ssd"), ("scrub", "scrub"), ("ssd-batch", "ssd"),
    ]  # fmt: skip
    assert config.hyperparameters("scrub")["lr_decay_epochs"] == [1]
    cells = [c.describe() for c in bench.plan(config)]
    assert "method:random-20:ssd:0" in cells and "method:random-20:scrub:0" in cells
    assert main(["bench", "plan", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "todo  method:random-20:scrub:0" in printed
    assert "todo  method:random-20:ssd-batch:0" in printed


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("alpha = 10.0", "alpha = -1.0"), "methods.ssd: ssd: alpha"),
        (("msteps = 1", "msteps = 'one'"), "methods.scrub: scrub: msteps"),
        (("lr_decay_epochs = [1]", "lr_decay_epochs = [1.5]"), "scrub: lr_decay_epochs"),
    ],
)
def test_bad_ssd_and_scrub_settings_fail_at_load_naming_the_key(tmp_path, edit, match):
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG.replace(*edit))
    with pytest.raises(ConfigError, match=match):
        bench.load_config(path)
