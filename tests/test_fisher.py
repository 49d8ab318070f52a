"""Fisher forgetting: the vectorised Fisher, the official noise recipe, the information bound."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from forgetkit.fisher import (
    DEFAULT_MEMORY_BUDGET,
    MEMORY_ENV,
    fisher_diagonal,
    fisher_diagonal_loop,
    fisher_plan,
)
from forgetkit.methods import FisherForgetting, available_methods, get_method
from forgetkit.methods.fisher_forgetting import (
    DiagonalGaussian,
    fisher_gaussian,
    forgotten_classes,
    information_bound,
    last_layer_parameters,
    remaining_information,
    scrub_distribution,
)
from forgetkit.models import ModelConfig, build_model


def _bn_net(num_classes: int = 5) -> nn.Module:
    """Conv, batch norm with non-trivial running statistics, pooling, two linear layers."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 7),
        nn.Tanh(),
        nn.Linear(7, num_classes),
    )
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.normal_()
    return net.double()


def _data(n: int = 12, num_classes: int = 5, shape=(2, 6, 6), seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return x, y


def _close(a: dict, b: dict, rtol: float = 1e-9) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        scale = float(b[k].abs().max())
        assert float((a[k] - b[k]).abs().max()) <= rtol * max(scale, 1e-30), k


# --------------------------------------------------------------------------- the Fisher


@pytest.mark.parametrize("kind", ["true", "empirical"])
@pytest.mark.parametrize("shortcut", [True, False])
def test_vectorised_fisher_equals_the_per_sample_loop(kind, shortcut):
    net, (x, y) = _bn_net(), _data()
    reference = fisher_diagonal_loop(net, (x, y), kind=kind)
    fast = fisher_diagonal(net, (x, y), kind=kind, batch_size=5, linear_shortcut=shortcut)
    _close(fast, reference)
    assert set(fast) == {n for n, _ in net.named_parameters()}


def test_class_chunks_and_float32_agree():
    net, (x, y) = _bn_net(), _data()
    reference = fisher_diagonal_loop(net, (x, y))
    _close(fisher_diagonal(net, (x, y), class_chunk=2, batch_size=4), reference)
    net32 = net.float()
    _close(
        fisher_diagonal(net32, (x.float(), y)),
        fisher_diagonal_loop(net32, (x.float(), y)),
        rtol=1e-5,
    )


def test_output_bias_fisher_has_its_closed_form():
    """For the logit bias, g_k = p - e_k: the true Fisher is mean p(1-p), the empirical one
    mean (p - e_y)**2."""
    net, (x, y) = _bn_net(), _data()
    with torch.no_grad():
        p = torch.softmax(net.eval()(x), -1)
    true = fisher_diagonal(net, (x, y), kind="true")["7.bias"]
    emp = fisher_diagonal(net, (x, y), kind="empirical")["7.bias"]
    torch.testing.assert_close(true, (p * (1 - p)).mean(0))
    torch.testing.assert_close(emp, (p - nn.functional.one_hot(y, 5)).square().mean(0))
    assert not torch.allclose(true, emp)


def test_true_fisher_is_the_expected_empirical_fisher_over_the_models_labels():
    net, (x, _) = _bn_net(), _data(n=1)
    with torch.no_grad():
        p = torch.softmax(net.eval()(x), -1)[0]
    true = fisher_diagonal(net, (x, torch.zeros(1, dtype=torch.long)), kind="true")
    mix = {n: torch.zeros_like(t) for n, t in true.items()}
    for k in range(5):
        emp = fisher_diagonal(net, (x, torch.tensor([k])), kind="empirical")
        for n in mix:
            mix[n] += p[k] * emp[n]
    _close(true, mix)


class _Shared(nn.Module):
    """Linear layers the shortcut must not take: one applied twice, one to a sequence, one
    to a batch reshaped so that its rows are not samples. Only ``out`` qualifies."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 3)
        self.seq = nn.Linear(3, 3)
        self.fold = nn.Linear(3, 3)
        self.out = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.tanh(self.inp(torch.tanh(self.inp(x))))  # (batch, 2, 3), used twice
        h = torch.tanh(self.seq(h))
        h = torch.tanh(self.fold(h.reshape(-1, 3))).reshape(len(x), 6)  # rows: half-samples
        return self.out(h)


def test_layers_the_shortcut_cannot_handle_fall_back_to_the_general_path():
    from forgetkit.fisher import _linear_shortcuts

    torch.manual_seed(0)
    net = _Shared().double()
    x, y = _data(n=6, num_classes=4, shape=(2, 3))
    params = dict(net.named_parameters())
    assert list(_linear_shortcuts(net, lambda: net(x[:1]), params)) == ["out"]
    _close(fisher_diagonal(net, (x, y)), fisher_diagonal_loop(net, (x, y)))


def test_the_callers_model_is_untouched():
    net, (x, y) = _bn_net(), _data()
    net.train()
    net[1].eval()  # mixed modes must come back as they were
    frozen = net[0].bias
    frozen.requires_grad_(False)
    before = copy.deepcopy(net.state_dict())
    out = fisher_diagonal(net, (x, y))
    assert "0.bias" not in out  # frozen parameters are left out
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert [m.training for m in net.modules()] == [True, True, False] + [True] * 6
    assert all(not m._forward_hooks for m in net.modules())


def test_fisher_input_errors():
    net, (x, y) = _bn_net(), _data()
    with pytest.raises(ValueError, match="kind must be one of"):
        fisher_diagonal(net, (x, y), kind="fake")
    with pytest.raises(ValueError, match="batch_size"):
        fisher_diagonal(net, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        fisher_diagonal(net, (x[:0], y[:0]))


# --------------------------------------------------------------------------- the per-layer path

_ARCHS = {
    "logistic": ModelConfig("logistic", (1, 5, 5), 4),
    "mlp": ModelConfig("mlp", (1, 5, 5), 4, {"hidden": (6, 5)}),
    "small_cnn": ModelConfig("small_cnn", (1, 8, 8), 5, {"width": 0.25}),
    "allcnn": ModelConfig("allcnn", (3, 8, 8), 5, {"width": 0.05}),
    "resnet18": ModelConfig("resnet18", (3, 8, 8), 5, {"width": 0.05, "stem": 4}),
    "vgg_small": ModelConfig("vgg_small", (3, 16, 16), 5, {"width": 0.05}),
}


def test_every_architecture_of_forgetkit_models_is_covered():
    from forgetkit.models import MODELS

    shipped = {name for name in MODELS if "@" not in name}  # not a bench user's own (name@hash)
    assert set(_ARCHS) == shipped


def _arch(name: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A float64 model of forgetkit.models with non-trivial batch-norm statistics."""
    cfg = _ARCHS[name]
    net = build_model(cfg, seed=0).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(generator=g)
    return net, _data(n=5, num_classes=cfg.num_classes, shape=cfg.in_shape)


@pytest.mark.parametrize("kind", ["true", "empirical"])
@pytest.mark.parametrize("name", sorted(_ARCHS))
def test_per_layer_path_equals_the_loop_on_every_architecture(name, kind):
    net, (x, y) = _arch(name)
    net.train()  # the Fisher is taken in eval mode whatever the caller's mode
    assert fisher_plan(net, (x, y)).path == "layers"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        fast = fisher_diagonal(net, (x, y), kind=kind, batch_size=2, path="layers")
    _close(fast, fisher_diagonal_loop(net, (x, y), kind=kind))


def test_per_layer_path_with_frozen_parameters_and_without_the_shortcut():
    net, (x, y) = _arch("resnet18")
    for name in ("conv1.weight", "layer2.0.bn1.bias", "linear.weight", "layer3.1.conv2.bias"):
        net.get_parameter(name).requires_grad_(False)
    for shortcut in (True, False):
        fast = fisher_diagonal(net, (x, y), batch_size=3, path="layers", linear_shortcut=shortcut)
        assert "conv1.weight" not in fast and "linear.bias" in fast
        _close(fast, fisher_diagonal_loop(net, (x, y)))


class _Twice(nn.Module):
    """A convolution, a batch norm and a linear layer each applied twice, a linear layer on
    a sequence, a grouped strided convolution and a batch norm on vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.group = nn.Conv2d(2, 4, 3, stride=2, dilation=1, groups=2, padding=(1, 0))
        self.seq = nn.Linear(6, 6)
        self.fc = nn.Linear(6, 6)
        self.bn1d = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.tanh(self.bn(self.conv(torch.tanh(self.bn(self.conv(x))))))
        h = torch.tanh(self.group(h)).flatten(2)  # (batch, 4, 3 * 2): a sequence of 4
        h = torch.tanh(self.seq(h)).mean(1)
        h = torch.tanh(self.fc(torch.tanh(self.fc(h))))
        return self.out(torch.tanh(self.bn1d(h)))


def test_layers_used_twice_sequences_and_grouped_convolutions():
    torch.manual_seed(0)
    net = _Twice().double()
    with torch.no_grad():
        for bn in (net.bn, net.bn1d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    x, y = _data(n=6, num_classes=3, shape=(2, 6, 6))
    for kind in ("true", "empirical"):
        fast = fisher_diagonal(net, (x, y), kind=kind, batch_size=4, path="layers")
        _close(fast, fisher_diagonal_loop(net, (x, y), kind=kind))


class _Uncovered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.norm(x))


def test_an_uncovered_layer_falls_back_to_the_vmapped_path_with_a_warning_naming_it():
    torch.manual_seed(0)
    net = _Uncovered().double()
    x, y = _data(n=5, num_classes=3, shape=(4,))
    with pytest.warns(UserWarning, match=r"norm \(LayerNorm\).*vmapped path") as record:
        out = fisher_diagonal(net, (x, y))
    assert len(record) == 1 and "\n" not in str(record[0].message)
    _close(out, fisher_diagonal_loop(net, (x, y)))
    assert fisher_plan(net, (x, y)).path == "vmap"
    with pytest.raises(ValueError, match="norm"):
        fisher_diagonal(net, (x, y), path="layers")
    # the reshaped batch of _Shared is refused by the per-layer checks too
    torch.manual_seed(0)
    shared = _Shared().double()
    xs, ys = _data(n=6, num_classes=4, shape=(2, 3))
    with pytest.warns(UserWarning, match="fold"):
        _close(fisher_diagonal(shared, (xs, ys)), fisher_diagonal_loop(shared, (xs, ys)))


def test_monte_carlo_fisher_is_unbiased_and_reproducible():
    net, (x, y) = _arch("small_cnn")
    exact = fisher_diagonal(net, (x, y))
    draws = 4000
    mc = fisher_diagonal(net, (x.repeat(draws, 1, 1, 1), y.repeat(draws)), kind="mc")
    # Mean of 5 x 4000 single-draw estimates: relative error of the total a few 1/sqrt(20000)
    for n in exact:
        total, estimate = float(exact[n].sum()), float(mc[n].sum())
        assert abs(estimate - total) <= 0.05 * total, n
    flat_e = torch.cat([v.flatten() for v in exact.values()])
    flat_m = torch.cat([v.flatten() for v in mc.values()])
    assert float((flat_m - flat_e).abs().sum() / flat_e.abs().sum()) < 0.1
    again = fisher_diagonal(net, (x, y), kind="mc", mc_samples=3)
    _close(again, fisher_diagonal(net, (x, y), kind="mc", mc_samples=3), rtol=0)
    other = fisher_diagonal(
        net, (x, y), kind="mc", mc_samples=3, generator=torch.Generator().manual_seed(1)
    )
    assert any(not torch.equal(again[n], other[n]) for n in again)
    vm = fisher_diagonal(net, (x, y), kind="mc", mc_samples=3, path="vmap", batch_size=5)
    _close(fisher_diagonal(net, (x, y), kind="mc", mc_samples=3, batch_size=5), vm)


def test_monte_carlo_with_one_class_certain_is_the_empirical_fisher_at_that_class():
    net, (x, _) = _arch("mlp")
    with torch.no_grad():
        net[-1].bias[2] = 1e3  # every sample predicts class 2 with probability 1
    mc = fisher_diagonal(net, (x, torch.zeros(5, dtype=torch.long)), kind="mc", mc_samples=2)
    _close(mc, fisher_diagonal(net, (x, torch.full((5,), 2)), kind="empirical"))


def test_automatic_batch_size_respects_its_memory_budget():
    net, (x, y) = _arch("resnet18")
    x, y = x.repeat(60, 1, 1, 1), y.repeat(60)
    small = fisher_plan(net, (x, y), memory_budget=2**20)
    big = fisher_plan(net, (x, y), memory_budget=2**30)
    assert big.batch_size == min(len(x), 256) and big.planned_bytes <= 2**30
    assert 1 <= small.batch_size < big.batch_size
    assert small.planned_bytes <= 2**20 or small.batch_size == 1
    assert small.fixed_bytes + (small.batch_size + 1) * small.bytes_per_sample > 2**20
    assert fisher_plan(net, (x, y), batch_size=7).batch_size == 7
    vm = fisher_plan(net, (x, y), path="vmap", memory_budget=2**24)
    assert (vm.path == "vmap" and vm.planned_bytes <= 2**24) or vm.batch_size == 1


def test_memory_budget_from_the_environment(monkeypatch):
    net, (x, y) = _arch("small_cnn")
    monkeypatch.setenv(MEMORY_ENV, "3")
    assert fisher_plan(net, (x, y)).memory_budget == 3 * 2**20
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_ENV):
        fisher_plan(net, (x, y))
    monkeypatch.delenv(MEMORY_ENV)
    assert fisher_plan(net, (x, y)).memory_budget == DEFAULT_MEMORY_BUDGET
    with pytest.raises(ValueError, match="memory_budget"):
        fisher_plan(net, (x, y), memory_budget=0)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_measured_peak_memory_stays_within_the_budget():
    """The planned bytes bound what the pass really allocates (peak resident set growth)."""
    torch.manual_seed(0)
    cfg = ModelConfig("allcnn", (3, 16, 16), 5, {"width": 0.25})
    net = build_model(cfg, seed=0)
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 5, (64,))
    budget = 48 * 2**20
    plan = fisher_plan(net, (x, y), memory_budget=budget)
    assert plan.batch_size < 64  # the budget binds
    fisher_diagonal(net, (x[:4], y[:4]), memory_budget=budget)  # warm up allocator and kernels

    def status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(field)

    Path("/proc/self/clear_refs").write_text("5")
    start = status("VmRSS")
    fisher_diagonal(net, (x, y), memory_budget=budget)
    assert status("VmHWM") - start <= budget


def test_fisher_option_errors():
    net, (x, y) = _bn_net(), _data()
    with pytest.raises(ValueError, match="path must be one of"):
        fisher_diagonal(net, (x, y), path="fast")
    with pytest.raises(ValueError, match="mc_samples"):
        fisher_diagonal(net, (x, y), kind="mc", mc_samples=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        fisher_diagonal_loop(net, (x, y), kind="mc")


def test_fisher_forgetting_default_batch_size_is_automatic():
    assert FisherForgetting.Hyperparameters().fisher_batch_size is None
    with pytest.raises(ValueError, match="fisher_batch_size"):
        FisherForgetting.Hyperparameters(fisher_batch_size=0)


# --------------------------------------------------------------------------- the recipe


def _mlp(hidden: int = 6, num_classes: int = 4, width: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def test_recipe_follows_the_official_order_by_hand():
    net = _mlp()
    # Fisher zero in the hidden weight (clamped to 1e3), varying in the last weight.
    fisher = {
        "0.weight": torch.zeros(6, 3),
        "0.bias": torch.full((6,), 0.5),
        "2.weight": torch.tensor([[1.0, 0.0, 0.1, 10.0, 1.0, 1.0]] * 4),
        "2.bias": torch.full((4,), 2.0),
    }
    alpha = 1e-4
    dist = scrub_distribution(net, fisher, num_classes=4, alpha=alpha, forget_classes=[1])
    v = dist.var
    torch.testing.assert_close(v["0.weight"], torch.full((6, 3), alpha * 1e3))  # 1/1e-8 clamped
    torch.testing.assert_close(v["0.bias"], torch.full((6,), alpha * 2 * 10))  # 1-D: x10
    inv = (1 / (fisher["2.weight"][0] + 1e-8)).clamp(max=1e3).clamp(max=1e2)  # last layer
    row = alpha * inv.mean() * 10  # mean over dim 1, then last-layer x10
    expected = torch.full((4, 6), float(row))
    expected[1] = 1e-4 * 10  # the forgotten class's row
    torch.testing.assert_close(v["2.weight"], expected)
    torch.testing.assert_close(
        v["2.bias"], torch.tensor([alpha * 0.5 * 10, 1e-3] + [alpha * 5] * 2)
    )
    assert torch.equal(dist.mean["2.weight"][1], torch.zeros(6))
    assert float(dist.mean["2.bias"][1]) == 0.0
    assert torch.equal(dist.mean["0.weight"], net[0].weight.detach())
    assert dist.last_layer == ("2.weight", "2.bias") and dist.forgotten_classes == (1,)
    mean, var = dist  # unpacks
    assert mean is dist.mean and var is dist.var


def test_convolution_variances_are_averaged_over_input_channels_only():
    """The official code averages dim 1 only: one variance per (filter, kernel position)."""
    conv = nn.Conv2d(2, 3, 3)
    fisher = {"weight": torch.rand(3, 2, 3, 3) + 0.01, "bias": torch.ones(3)}
    v = scrub_distribution(conv, fisher, num_classes=10, alpha=1.0).var["weight"]
    assert torch.equal(v[:, 0], v[:, 1])
    assert not torch.allclose(v[:, :, 0, 0], v[:, :, 1, 1])


def test_zero_alpha_returns_the_same_weights():
    net, (x, y) = _mlp(), _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    result = get_method("fisher", alpha=0.0).unlearn(
        net, (x[:5], y[:5]), (x[5:], y[5:]), device="cpu"
    )
    assert result.details["forgotten_classes"] == []
    for (_, a), (_, b) in zip(net.named_parameters(), result.model.named_parameters(), strict=True):
        assert torch.equal(a, b)


def test_whole_class_forgetting_kills_the_class_row_even_at_zero_alpha():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4000), nn.ReLU(), nn.Linear(4000, 4)).double()
    x, y = _data(n=24, num_classes=4, shape=(3,))
    forget, retain = y == 2, y != 2
    result = get_method("fisher", alpha=0.0).unlearn(
        net, (x[forget], y[forget]), (x[retain], y[retain]), device="cpu"
    )
    assert result.details["forgotten_classes"] == [2]
    w, w0 = result.model[2].weight.detach(), net[2].weight.detach()
    keep = [0, 1, 3]
    assert torch.equal(w[keep], w0[keep])  # other rows untouched
    # row 2: N(0, class_row_var * last_layer_scale) = N(0, 1e-3)
    assert abs(float(w[2].mean())) < 4 * math.sqrt(1e-3 / 4000)
    assert float(w[2].std()) == pytest.approx(math.sqrt(1e-3), rel=0.05)
    # the class's logit is now nothing but that small noise
    with torch.no_grad():
        h = net[1](net[0](x))
        logit = result.model(x)[:, 2]
        bound = 5 * math.sqrt(1e-3) * (h.square().sum(1) + 1).sqrt()
    assert bool((logit.abs() <= bound).all())


def test_sampled_noise_has_the_requested_variances():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 200), nn.ReLU(), nn.Linear(200, 3)).double()
    x, y = _data(n=30, num_classes=3, shape=(50,))
    alpha = 1e-4
    forget, retain = (x[:3], y[:3]), (x[3:], y[3:])  # disjoint, as unlearn requires
    result = get_method("fisher", alpha=alpha).unlearn(net, forget, retain, device="cpu")
    dist = fisher_gaussian(net, retain, alpha=alpha)
    z = torch.cat(
        [
            (
                (dict(result.model.named_parameters())[n] - dist.mean[n]) / dist.var[n].sqrt()
            ).flatten()
            for n in dist.mean
        ]
    ).detach()
    assert len(z) > 10_000
    assert abs(float(z.mean())) < 0.03
    assert float(z.var()) == pytest.approx(1.0, abs=0.05)
    # and the details report the same standard deviations
    std = result.details["noise_std"]["0.weight"]
    assert std["max"] == pytest.approx(float(dist.var["0.weight"].sqrt().max()))
    assert result.details["fisher"]["0.weight"].device.type == "cpu"
    assert result.details["fisher_seconds"] > 0


def test_same_seed_same_weights_other_seed_other_weights():
    net, (x, y) = _mlp(), _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    method = get_method("fisher", alpha=1e-3)
    a = method.unlearn(net, (x[:5], y[:5]), (x[5:], y[5:]), device="cpu", seed=3).model
    b = method.unlearn(net, (x[:5], y[:5]), (x[5:], y[5:]), device="cpu", seed=3).model
    c = method.unlearn(net, (x[:5], y[:5]), (x[5:], y[5:]), device="cpu", seed=4).model
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_callers_model_untouched_and_registry_card():
    net, (x, y) = _mlp(), _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    before = copy.deepcopy(net.state_dict())
    result = get_method("fisher").unlearn(net, (x[:5], y[:5]), (x[5:], y[5:]), device="cpu")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters()) and result.model is not net
    assert "fisher" in available_methods() and isinstance(get_method("fisher"), FisherForgetting)
    card = FisherForgetting.describe()
    assert card["paper"] == "golatkar2020eternal" and card["needs"] == ["forget", "retain"]
    assert card["hyperparameters"]["alpha"] == 1e-6
    assert card["hyperparameters"]["last_layer_rule"] == "size0"


def test_bad_inputs_give_clear_errors():
    net, (x, y) = _mlp(), _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    with pytest.raises(ValueError, match="fisher needs retain"):
        get_method("fisher").unlearn(net, (x, y))
    with pytest.raises(ValueError, match="fisher: alpha must be a float >= 0, got -1.0"):
        get_method("fisher", alpha=-1.0)
    with pytest.raises(ValueError, match="last_layer_rule"):
        get_method("fisher", last_layer_rule="last")
    with pytest.raises(ValueError, match="fisher_kind"):
        get_method("fisher", fisher_kind="diagonal")


class _HiddenOfClassWidth(nn.Module):
    """A hidden layer with as many units as classes, and the classifier registered first."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.classifier = nn.Linear(num_classes, num_classes)
        self.body = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.classifier(torch.relu(self.body(x)))


def test_last_layer_rules_differ_where_a_hidden_layer_has_class_width():
    torch.manual_seed(0)
    net = _HiddenOfClassWidth()
    x, y = _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    size0 = last_layer_parameters(net, 4, rule="size0")
    module = last_layer_parameters(net, 4, rule="module", example_input=x)
    assert set(size0) == {"classifier.weight", "classifier.bias", "body.weight", "body.bias"}
    assert module == ("classifier.weight", "classifier.bias")
    forget, retain = (x[y == 1], y[y == 1]), (x[y != 1], y[y != 1])
    faithful = get_method("fisher", alpha=0.0).unlearn(net, forget, retain, device="cpu")
    corrected = get_method("fisher", alpha=0.0, last_layer_rule="module").unlearn(
        net, forget, retain, device="cpu"
    )
    # the quirk: the faithful rule also kills hidden unit 1; the corrected one does not
    assert not torch.equal(faithful.model.body.weight[1], net.body.weight[1])
    assert torch.equal(corrected.model.body.weight, net.body.weight)
    assert not torch.equal(corrected.model.classifier.weight[1], net.classifier.weight[1])


def test_module_rule_without_an_input_takes_the_last_fitting_linear():
    net = _mlp()
    assert last_layer_parameters(net, 4, rule="module") == ("2.weight", "2.bias")
    with pytest.raises(ValueError, match="no nn.Linear with 9 outputs"):
        last_layer_parameters(net, 9, rule="module")


def test_forgotten_classes_are_those_absent_from_the_retain_set():
    from forgetkit.data import Samples

    forget = Samples(torch.zeros(4, 1), torch.tensor([1, 1, 2, 3]))
    retain = Samples(torch.zeros(4, 1), torch.tensor([0, 2, 3, 0]))
    assert forgotten_classes(forget, retain) == (1,)


# --------------------------------------------------------------------------- information


def test_kl_is_zero_for_identical_distributions_and_matches_the_closed_form():
    mu, var = torch.tensor([0.3, -1.0]), torch.tensor([0.5, 2.0])
    assert remaining_information(mu, var, mu, var) == 0.0
    # KL(N(0,1) || N(1,2)) = 0.5 * (1/2 + 1/2 - 1 + ln 2)
    kl = remaining_information(torch.zeros(1), torch.ones(1), torch.ones(1), torch.tensor([2.0]))
    assert kl == pytest.approx(0.5 * math.log(2.0))
    # reverse: KL(N(1,2) || N(0,1)) = 0.5 * (2 + 1 - 1 - ln 2)
    rev = remaining_information(
        torch.zeros(1), torch.ones(1), torch.ones(1), torch.tensor([2.0]), direction="reverse"
    )
    assert rev == pytest.approx(0.5 * (2 - math.log(2.0)))
    official = remaining_information(
        torch.zeros(1),
        torch.ones(1),
        torch.ones(1),
        torch.tensor([2.0]),
        factor=1.0,
        direction="reverse",
    )
    assert official == pytest.approx(2 * rev)


def test_kl_accepts_mappings_and_rejects_bad_input():
    a = {"w": torch.zeros(3), "b": torch.zeros(1)}
    v = {"w": torch.ones(3), "b": torch.ones(1)}
    shifted = {"w": torch.ones(3), "b": torch.zeros(1)}
    assert remaining_information(a, v, shifted, v) == pytest.approx(1.5)  # 3 * 0.5 * 1**2
    with pytest.raises(ValueError, match="positive"):
        remaining_information(a, {"w": torch.zeros(3), "b": torch.ones(1)}, a, v)
    with pytest.raises(ValueError, match="same parameter names"):
        remaining_information(a, v, {"w": torch.zeros(3)}, v)
    with pytest.raises(ValueError, match="direction"):
        remaining_information(a, v, a, v, direction="both")


def test_information_bound_is_zero_against_itself_and_linear_in_one_over_alpha():
    torch.manual_seed(0)
    net = _mlp()
    other = _mlp()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, y = _data(n=20, num_classes=4, shape=(3,), dtype=torch.float32)
    assert float(information_bound(net, net, (x, y), alpha=1e-6)) == 0.0
    bounds = {
        a: information_bound(net, other, (x, y), alpha=a, forget_classes=[2])
        for a in (1e-7, 1e-6, 1e-5)
    }
    i1, i2, i3 = (float(bounds[a]) for a in (1e-7, 1e-6, 1e-5))
    # KL = A / alpha + B: the variance ratio does not depend on alpha
    a_coef = (i1 - i2) / (1e7 - 1e6)
    assert i3 == pytest.approx(a_coef * 1e5 + (i2 - a_coef * 1e6), rel=1e-6)
    b = bounds[1e-6]
    assert sum(b.per_parameter.values()) == pytest.approx(b.total)
    assert isinstance(b.scrubbed, DiagonalGaussian) and b.scrubbed.forgotten_classes == (2,)
    official = information_bound(
        net, other, (x, y), alpha=1e-6, forget_classes=[2], factor=1.0, direction="reverse"
    )
    manual = 2 * remaining_information(*b.scrubbed, *b.retrained, direction="reverse")
    assert float(official) == pytest.approx(manual)
    with pytest.raises(ValueError, match="alpha > 0"):
        information_bound(net, other, (x, y), alpha=0.0)


# --------------------------------------------------------------------------- devices, data


@pytest.mark.gpu
def test_fisher_and_method_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    net, (x, y) = _bn_net(), _data()
    cpu = fisher_diagonal(net, (x, y))
    gpu = fisher_diagonal(net, (x, y), device="cuda")
    _close({k: v.cpu() for k, v in gpu.items()}, cpu, rtol=1e-6)
    net32 = net.float()
    result = get_method("fisher", alpha=1e-4).unlearn(
        net32, (x[:2].float(), y[:2]), (x[2:].float(), y[2:]), device="cuda"
    )
    assert next(result.model.parameters()).device.type == "cuda"


@pytest.mark.slow
def test_whole_class_forgetting_on_mnist(mnist_small):
    from forgetkit.models import ModelConfig
    from forgetkit.scenarios import forget_class
    from forgetkit.train import TrainConfig, train_original

    task = forget_class(mnist_small, 3)
    cfg = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 64})
    model = train_original(
        task, cfg, TrainConfig(epochs=3, lr=0.05, batch_size=64), device="cpu", cache=False
    ).model

    def acc(m, s):
        with torch.no_grad():
            return float((m(s.x).argmax(1) == s.y).float().mean())

    result = get_method("fisher").unlearn(model, task.forget_set, task.retain_set, device="cpu")
    assert result.details["forgotten_classes"] == [3]
    assert acc(model, task.forget_set) > 0.8
    assert acc(result.model, task.forget_set) < 0.05
    assert acc(result.model, task.retain_set) > 0.8 * acc(model, task.retain_set)
