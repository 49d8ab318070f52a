"""A user's own model and data, as a new user brings them: a plain PyTorch CNN (batch norm,
dropout) trained in a plain loop on data forgetkit does not ship, passed as ``DataLoader`` s.

What must hold for them: every method's result is checked for utility whether or not the
method reads the retain set; results do not depend on the global random state; the
interface tells the truth (device, seed, describe, signatures); and a bench config that
cannot run says where and why before anything trains.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from forgetkit.bench.config import ConfigError, parse_config
from forgetkit.cli import main
from forgetkit.methods import UnlearningMethod, UtilityWarning, get_method
from forgetkit.validation import utility_report

CLASSES, SHAPE = 3, (1, 8, 8)


def _blobs(n: int, seed: int) -> TensorDataset:
    """Three noisy 8x8 class templates: separable, but not trivially."""
    centres = torch.randn(CLASSES, *SHAPE, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    return TensorDataset(centres[y] + 0.8 * torch.randn(n, *SHAPE, generator=g), y)


class Net(nn.Module):
    """The kind of model a user writes: convolution, batch norm, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 16, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def own(one_thread):
    """A trained user model and its forget (class 0) and retain loaders (shuffled)."""
    train = _blobs(600, seed=1)
    x, y = train.tensors
    forget, retain = TensorDataset(x[y == 0], y[y == 0]), TensorDataset(x[y != 0], y[y != 0])
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(8):
        for xb, yb in DataLoader(train, batch_size=32, shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()
    return model, forget, retain


def _loaders(forget: Dataset, retain: Dataset, shuffle: bool = True):
    return (DataLoader(forget, batch_size=16, shuffle=shuffle),
            DataLoader(retain, batch_size=16, shuffle=shuffle))  # fmt: skip


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Nothing(UnlearningMethod):
    """Takes no step (unregistered: a user's method, or a method whose every change was
    reverted)."""

    name = "test-nothing"

    def _unlearn(self, model, data, device, gen):
        return {"steps": 0}


# --------------------------------------------------------------------------- utility


@pytest.mark.parametrize(("name", "hp"), [
    ("jit", {"sigma": 5.0, "lr": 1.0}),  # reads the forget set alone
    ("neggrad", {"epochs": 20, "lr": 0.5, "stop_accuracy": 0.0}),
])  # fmt: skip
def test_a_method_that_never_reads_the_retain_set_is_still_checked_on_it(own, name, hp):
    model, forget, retain = own
    method = get_method(name, **hp)
    assert "retain" not in method.needs | method.uses
    f, r = _loaders(forget, retain)
    with pytest.warns(UtilityWarning, match=rf"{name}: the unlearned model's utility"):
        result = method.unlearn(model, f, r, seed=0)
    report = result.details["utility"]
    assert report["probe"] == "retain set" and report["probe_size"] == len(retain)
    assert report["degraded"]
    assert report["accuracy_before"] - report["accuracy_after"] > 0.10
    # the numbers are in the message
    numbers = f"{report['accuracy_before']:.3f} to {report['accuracy_after']:.3f}"
    assert any(numbers in reason for reason in report["reasons"])


def test_a_healthy_run_does_not_warn(own):
    model, forget, retain = own
    f, r = _loaders(forget, retain)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UtilityWarning)
        result = get_method("finetune", epochs=1, lr=0.01).unlearn(model, f, r)
    report = result.details["utility"]
    assert not (report["degraded"] or report["collapsed"] or report["unchanged"])
    assert report["accuracy_before"] > 0.9  # the check means something on this model


def test_the_threshold_is_ten_points_below_the_input_model():
    probe = {"x": torch.zeros(100, 1), "y": torch.arange(100) % 2, "name": "retain set"}
    norm = {"weight_norm": 1.0}

    def report(before: float, after: float) -> dict:
        return utility_report({**norm, "accuracy": before}, {**norm, "accuracy": after}, probe)

    assert not report(0.996, 0.90)["degraded"]  # 9.6 points
    fell = report(0.996, 0.551)  # SSD's drop from the issue: above the majority level
    assert fell["degraded"] and not fell["collapsed"]
    assert report(0.996, 0.5)["collapsed"]  # the majority-class level (0.5 here)
    grown = utility_report(norm, {"weight_norm": 10.5}, {})
    assert grown["collapsed"] and "grew" in grown["reasons"][0]


@pytest.mark.parametrize("inplace", [False, True])
def test_a_method_that_changed_nothing_says_so_and_warns(own, inplace):
    model, forget, retain = own
    mine = copy.deepcopy(model) if inplace else model
    with pytest.warns(UtilityWarning, match="test-nothing changed nothing: .*bit-identical"):
        result = Nothing().unlearn(mine, forget, inplace=inplace)
    assert result.details["unchanged"] and result.details["utility"]["unchanged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UtilityWarning)
        moved = get_method("finetune", epochs=1, lr=0.01).unlearn(model, forget, retain)
    assert not moved.details["unchanged"]


class Counting(Dataset):
    """A lazy dataset that counts the samples read."""

    def __init__(self, base: TensorDataset) -> None:
        self.base, self.reads = base, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.base[i]


def test_the_probe_is_bounded_and_drawn_with_the_seed(own):
    model, forget, _ = own
    big = _blobs(1500, seed=3)
    x, y = big.tensors
    lazy = Counting(TensorDataset(x[y != 0], y[y != 0]))
    runs = []
    for seed in (4, 4, 5):
        lazy.reads = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UtilityWarning)
            loader = DataLoader(lazy, batch_size=64, shuffle=True)
            result = get_method("jit").unlearn(model, forget, loader, seed=seed)
        report = result.details["utility"]
        assert lazy.reads == report["probe_size"] == 512 < len(lazy)  # JiT reads no more
        runs.append(report["accuracy_before"])
    assert runs[0] == runs[1]  # same seed, same probe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UtilityWarning)
        pair = get_method("jit").unlearn(model, forget, (x, y), seed=4)  # tensors in memory
    assert pair.details["utility"]["probe_size"] == 512 < len(y)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(("name", "hp"), [
    ("ssd", {}), ("finetune", {"epochs": 1}), ("jit", {}), ("neggrad", {"epochs": 1}),
])  # fmt: skip
def test_shuffled_loaders_give_the_same_model_whatever_the_global_seed(own, name, hp):
    model, forget, retain = own
    method = get_method(name, **hp)
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UtilityWarning)
        for global_seed in (0, 1, 2):
            torch.manual_seed(global_seed)
            f, r = _loaders(forget, retain, shuffle=True)
            models.append(method.unlearn(model, f, r, seed=3).model)
        plain = method.unlearn(model, *_loaders(forget, retain, shuffle=False), seed=3).model
    assert _same(models[0], models[1]) and _same(models[0], models[2])
    assert _same(models[0], plain)  # a shuffled loader is read as the dataset is


def test_reading_a_loader_leaves_the_global_random_state_alone(own):
    model, forget, retain = own
    torch.manual_seed(11)
    state = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UtilityWarning)
        get_method("ssd").unlearn(model, *_loaders(forget, retain), seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)


# --------------------------------------------------------------------------- interface


def test_device_none_means_the_models_own_device(own, monkeypatch):
    model, forget, retain = own
    # a machine "with CUDA": resolving None would pick it, and any use of it would fail here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    result = get_method("finetune", epochs=1).unlearn(model, forget, retain)
    assert {p.device.type for p in result.model.parameters()} == {"cpu"}


@pytest.mark.parametrize("seed", [2**64, 2**63, -1])
def test_a_seed_out_of_range_is_named(own, seed):
    model, forget, _ = own
    with pytest.raises(
        ValueError, match=rf"jit: seed must be an int in \[0, 2\*\*63\), got {seed}"
    ):
        get_method("jit").unlearn(model, forget, seed=seed)


def test_a_retain_set_that_does_not_fit_the_model_is_refused_even_if_unread(own):
    model, forget, _ = own
    wrong = TensorDataset(torch.randn(20, 1, 6, 6), torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"jit: retain set labels span 7\.\.7 but the model has 3"):
        get_method("jit").unlearn(model, forget, TensorDataset(
            torch.randn(20, 1, 8, 8), torch.full((20,), 7)))  # fmt: skip
    with pytest.raises(ValueError, match=r"jit: retain set inputs have shape \(1, 6, 6\)"):
        get_method("jit").unlearn(model, forget, wrong)


def test_version_from_the_command_line(capsys):
    assert main(["--version"]) == 0
    import forgetkit

    assert capsys.readouterr().out.strip() == f"forgetkit {forgetkit.__version__}"
    out = subprocess.run([sys.executable, "-m", "forgetkit", "--version"], capture_output=True,
                         text=True, check=True, timeout=3600)  # fmt: skip  # a hang guard
    assert out.stdout.strip() == f"forgetkit {forgetkit.__version__}"


# --------------------------------------------------------------------------- bench config


def _config(**changes) -> dict:
    raw = {
        "bench": {"name": "mine"},
        "data": {"dataset": "mnist", "train": 200, "test": 100},
        "model": {"name": "mlp"},
        "train": {"epochs": 1},
        "scenario": [{"name": "class-3", "kind": "class", "cls": 3}],
        "methods": {"finetune": {"epochs": 1}},
    }
    for section, value in changes.items():
        raw[section] = value
    return raw


@pytest.mark.parametrize(("changes", "message"), [
    ({"train": {"epoch": 1}},
     r"my\.toml: unknown key\(s\) \['epoch'\] in \[train\]; allowed: \[.*'epochs'"),
    ({"train": {"epochs": -1}}, r"my\.toml: \[train\]: .*epochs.*; allowed keys: \["),
    ({"model": {"name": "mlp", "options": {"hiden": 8}}},
     r"my\.toml: unknown key\(s\) \['hiden'\] in \[model\.options\] of model 'mlp'; allowed: "
     r"\['activation', 'hidden'\]"),
    ({"model": {"name": "mlp", "options": {"activation": "swish"}}},
     r"my\.toml: \[model\.options\] of model 'mlp': unknown activation"),
    ({"scenario": [{"name": "class-12", "kind": "class", "cls": 12}]},
     r"my\.toml: scenario 'class-12' \(class\): cls must be an integer in 0\.\.9"),
    ({"scenario": [{"name": "random-big", "kind": "random", "n": 500}]},
     r"my\.toml: scenario 'random-big' \(random\): n must be an integer >= 1 below "
     r"data\.train \(200\)"),
    ({"scenario": [{"name": "a", "kind": "class", "cls": 1}] * 2},
     r"my\.toml: scenario names must be unique; given more than once: \['a'\]"),
    ({"scenario": [{"kind": "class", "cls": 1}]},
     r"my\.toml: \[\[scenario\]\] number 1 needs a name"),
    ({"data": {"dataset": "mnist", "train": 0}}, r"my\.toml: data\.train must be an integer"),
])  # fmt: skip
def test_config_errors_name_the_file_the_section_and_the_allowed_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(**changes), "my.toml")


def test_a_failed_run_leaves_no_empty_results_folder(tmp_path, monkeypatch, capsys):
    import forgetkit.bench.engine as engine

    def broken(*args, **kwargs):
        raise RuntimeError("the data could not be read")

    monkeypatch.setattr(engine, "execute_and_store", broken)
    path = tmp_path / "my.toml"
    path.write_text(
        '[data]\ndataset = "mnist"\ntrain = 200\ntest = 100\n[model]\nname = "mlp"\n'
        '[[scenario]]\nname = "class-3"\nkind = "class"\ncls = 3\n[methods.finetune]\n'
    )
    out = tmp_path / "results" / "mine"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "the data could not be read" in capsys.readouterr().err
    assert not out.exists()
    # a folder that was there before (a resumed run) is left as it was
    out.mkdir(parents=True)
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 2
    assert out.is_dir()
