"""JiT (Lipschitz smoothing): the estimate, batched perturbations, the two modes, the contract."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.methods import JiT, get_method, jit
from forgetkit.methods.base import ForgetData
from forgetkit.methods.jit import (
    DegeneratePerturbationWarning,
    choose_memory_format,
    choose_path,
    lipschitz_ratios,
    lipschitz_ratios_loop,
    perturb,
)
from forgetkit.models import ModelConfig, build_model
from forgetkit.scenarios import forget_class
from forgetkit.train import TrainConfig, train_original


class Untouchable:
    """A stand-in for retain data that fails the moment anything reads it."""

    def __getattr__(self, name):
        raise AssertionError(f"the retain data were read (attribute {name!r})")

    def __len__(self):
        raise AssertionError("the retain data were read (len)")

    def __iter__(self):
        raise AssertionError("the retain data were read (iteration)")


def _mlp(seed=0, dropout=False):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(12, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.Linear(16, 3))


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 3, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(48, 8), nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip


def _official_loop(model, x_all, *, sigma, lr, n_samples, batch_size, seed, batched=False):
    """An independent JiT with the structure of the official ``Lipschitz.modify_weight``
    (jwf40/Information-Theoretic-Unlearning c967614, src/lipschitz.py:278-319): training
    mode, gradients zeroed once, per batch one clean pass then one pass per perturbation,
    clamp to the batch's range, the ratios summed over the batch and averaged over the
    perturbations. The noise is drawn as forgetkit draws it (one ``(N, B, ...)`` tensor per
    batch from a CPU generator seeded with ``seed``). ``batched=True`` sends all perturbed
    images through one pass instead: the computation forgetkit used to make."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size]
        noise = sigma * torch.randn((n_samples, *x.shape), generator=gen)
        out = model(x)
        moved = [torch.clamp(x + noise[j], min=x.min(), max=x.max()) for j in range(n_samples)]
        with torch.no_grad():
            outs = model(torch.cat(moved)).split(len(x)) if batched else [model(m) for m in moved]
        loss = torch.tensor(0.0)
        for m, out2 in zip(moved, outs, strict=True):
            in_norm = torch.linalg.vector_norm((x - m).reshape(len(x), -1), dim=1)
            loss = loss + (torch.linalg.vector_norm(out - out2, dim=1) / in_norm).sum()
        (loss / n_samples).backward()
        opt.step()
    return model


def _close_states(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=2e-5, atol=1e-6, msg=key)


def _largest_gap(a, b):
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max(float((p - q).detach().abs().max()) for p, q in pairs)


@pytest.mark.parametrize("net", ["bn_net", "vgg_small", "mlp"])
def test_official_mode_equals_the_official_loop_on_batch_norm_networks(net):
    if net == "bn_net":
        model, (x, _) = _bn_net(), _data(40)
    elif net == "mlp":  # no batch norm: the naive batching is the same computation there
        model, (x, _) = _mlp(), _data(40)
    else:
        model = build_model(ModelConfig("vgg_small", (3, 16, 16), 10, {"width": 0.25}), seed=0)
        x = torch.randn(20, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    settings = {"sigma": 0.3, "lr": 0.05, "n_samples": 6, "batch_size": 16}
    official = _official_loop(model, x, seed=3, **settings)
    naive = _official_loop(model, x, seed=3, batched=True, **settings)
    # the test can fail: with batch norm, one pass over all N*B perturbed images is a
    # different computation
    if net == "mlp":
        _close_states(naive, official)
    else:
        assert _largest_gap(official, naive) > 1e-3
    assert _largest_gap(official, model) > 1e-2  # and the weights did move
    for path in ("batched", "loop"):
        result = get_method("jit", path=path, **settings).unlearn(model, (x, torch.zeros(len(x))
                                                                    .long()), seed=3)  # fmt: skip
        assert result.details["path"] == path
        _close_states(result.model, official)  # weights and running statistics


def test_batched_path_in_uneven_chunks_equals_the_loop(monkeypatch):
    monkeypatch.setattr(jit, "_CHUNK_ELEMENTS", 4 * 16 * 12)  # 4 perturbations a pass: 4 + 2
    model, (x, _) = _bn_net(), _data(40)
    settings = {"sigma": 0.3, "lr": 0.05, "n_samples": 6, "batch_size": 16}
    official = _official_loop(model, x, seed=3, **settings)
    result = get_method("jit", path="batched", **settings).unlearn(model, _data(40), seed=3)
    _close_states(result.model, official)


class _OwnBatchNorm(nn.BatchNorm1d):
    def forward(self, inp):
        return super().forward(inp)


def test_auto_path_picks_by_network_and_keeps_the_result():
    conv = build_model(ModelConfig("small_cnn", (1, 8, 8), 3, {}), seed=0)
    assert choose_path(_mlp()) == "batched" and choose_path(conv) == "loop"
    own = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), _OwnBatchNorm(8), nn.Linear(8, 3))
    assert choose_path(own) == "loop" and choose_path(own.eval()) == "batched"
    model, data = _bn_net(), _data(40)
    auto = get_method("jit", lr=0.05, sigma=0.3, batch_size=16).unlearn(model, data, seed=1)
    loop = get_method("jit", lr=0.05, sigma=0.3, batch_size=16, path="loop").unlearn(
        model, data, seed=1
    )
    assert auto.details["path"] == choose_path(model)
    _close_states(auto.model, loop.model)


def test_layout_is_channels_last_only_for_convolutions_without_batch_norm(monkeypatch):
    cpu = torch.device("cpu")
    cnn = build_model(ModelConfig("small_cnn", (1, 8, 8), 3, {}), seed=0)
    vgg = build_model(ModelConfig("vgg_small", (3, 32, 32), 3, {"width": 0.25}), seed=0)
    assert choose_memory_format(cnn, cpu) == torch.channels_last
    assert choose_memory_format(vgg, cpu) == torch.contiguous_format
    assert choose_memory_format(_mlp(), cpu) == torch.contiguous_format
    # channels-last changes the time, not the computation: the same step as the default
    # layout up to rounding, and the returned weights are back in the default layout
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(24, 1, 8, 8, generator=g), torch.zeros(24, dtype=torch.long))
    method = get_method("jit", lr=0.05, sigma=0.3, batch_size=8, n_samples=4)
    fast = method.unlearn(cnn, data, seed=1)
    monkeypatch.setattr(jit, "choose_memory_format", lambda *_: torch.contiguous_format)
    plain = method.unlearn(cnn, data, seed=1)
    assert fast.details["layout"] == "channels_last" and plain.details["layout"] != "channels_last"
    _close_states(fast.model, plain.model)
    assert _largest_gap(plain.model, cnn) > 1e-3  # the weights did move
    assert all(p.is_contiguous() for p in fast.model.parameters())
    assert all(p.is_contiguous() for p in cnn.parameters())  # the caller's model untouched


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.BatchNorm2d(4), (12, 4, 5, 5)),
        (nn.BatchNorm2d(4, momentum=None), (12, 4, 5, 5)),
        (nn.BatchNorm2d(4, affine=False), (12, 4, 5, 5)),
        (nn.BatchNorm2d(4, track_running_stats=False), (12, 4, 5, 5)),
        (nn.BatchNorm1d(4), (12, 4)),
        (nn.BatchNorm1d(4, momentum=None), (12, 4, 3)),
        (_OwnBatchNorm(4), (12, 4)),  # its own forward: run part by part
        (nn.BatchNorm1d(4), (3, 4)),  # one value per channel and group: refused, as a pass
    ],
)
def test_grouped_batch_norm_equals_separate_passes_bit_for_bit(layer, shape):
    """Each group of a grouped pass is normalised as its own pass would be, and the running
    statistics and the count end as after the passes in order (after a first pass, as
    after JiT's clean pass)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(0.5, 1.5)
    first, inp = torch.randn(*shape), 3 * torch.randn(*shape) + 1
    grouped, separate = copy.deepcopy(layer).train(), copy.deepcopy(layer).train()
    if shape[0] == 3:
        refused = pytest.raises(ValueError, match="more than 1 value per channel")
        with refused, torch.no_grad(), jit._batch_norm_per_group(grouped, 3):
            grouped(inp)
        return
    with torch.no_grad():
        grouped(first), separate(first)
        with jit._batch_norm_per_group(grouped, 3):
            out = grouped(inp)
        expected = torch.cat([separate(part) for part in inp.split(4)])
    assert "forward" not in grouped.__dict__  # the layer's own forward is back
    assert torch.equal(out, expected)
    for (name, a), b in zip(grouped.state_dict().items(), separate.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name


def test_a_degenerate_perturbation_contributes_nothing_and_warns():
    x, y = _data(8)
    x[0] = 0.7  # a constant image: the per-image clamp leaves it where it is
    noise = 0.3 * torch.randn(5, *x.shape, generator=torch.Generator().manual_seed(0))
    dropped = _mlp(dropout=True).train()  # the outputs change even though the input does not
    ratios = lipschitz_ratios(dropped, x, noise, clamp="image").detach()
    assert float(ratios[0]) == 0.0 and bool((ratios[1:] > 0).all())
    assert float(ratios.max()) < 1e3  # without the guard: out_norm / 1e-12, about 1e12
    method = get_method("jit", lr=0.01, mode="official", clamp="image")
    with pytest.warns(DegeneratePerturbationWarning, match="^jit: 25 of 200 perturbations left"):
        result = method.unlearn(dropped, (x, y), seed=0)
    assert result.details["degenerate"] == 25  # N = 25 for the constant image
    assert _largest_gap(result.model, dropped) < 1.0
    with warnings.catch_warnings():  # no constant image, no warning
        warnings.simplefilter("error", DegeneratePerturbationWarning)
        method.unlearn(dropped, (x[1:], y[1:]), seed=0)


def test_default_order_is_the_given_order_as_in_the_official_loaders():
    model, (x, y) = _mlp(), _data(40)
    assert JiT.Hyperparameters().shuffle is False
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    given = get_method("jit", lr=0.01, batch_size=16).unlearn(model, (x, y), seed=0)
    again = get_method("jit", lr=0.01, batch_size=16).unlearn(model, (x, y), seed=0)
    permuted = get_method("jit", lr=0.01, batch_size=16).unlearn(model, (x[perm], y[perm]), seed=0)
    assert _same(given.model, again.model) and not _same(given.model, permuted.model)


@pytest.fixture(scope="module")
def trained(mnist_small, one_thread):
    task = forget_class(mnist_small, 3)
    cfg = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 64})
    original = train_original(task, cfg, TrainConfig(epochs=3, lr=0.05, batch_size=64),
                              device="cpu", cache=False)  # fmt: skip
    return task, original


def test_zero_shot_needs_and_reads_only_the_forget_images():
    assert JiT.needs == frozenset({"forget"}) and JiT.uses == frozenset()
    model, (x, y) = _mlp(), _data()
    alone = get_method("jit", lr=0.01).unlearn(model, (x, y))
    with_retain = get_method("jit", lr=0.01).unlearn(model, (x, y), _data(30, seed=9))
    relabelled = get_method("jit", lr=0.01).unlearn(model, (x, (y + 1) % 3))
    assert _same(alone.model, with_retain.model) and _same(alone.model, relabelled.model)
    assert not _same(alone.model, model)
    # the update itself never touches the retain set (the base class's utility check may
    # read a probe of it, so the stand-in goes straight to the method's step)
    work = copy.deepcopy(model)
    data = ForgetData(forget=Samples(x, y), retain=Untouchable(), seed=0)
    JiT(lr=0.01)._unlearn(work, data, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert _same(work, alone.model)


def test_estimate_is_zero_for_a_constant_function():
    x, _ = _data(8)
    constant = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    noise = 0.3 * torch.randn(5, *x.shape)
    for clamp in ("batch", "image", "none"):
        assert torch.equal(lipschitz_ratios(constant, x, noise, clamp=clamp), torch.zeros(8))


def test_estimate_matches_a_hand_computation_on_a_linear_model():
    x, _ = _data(6)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    noise = 0.5 * torch.randn(7, *x.shape, generator=torch.Generator().manual_seed(3))
    w = linear[1].weight.detach().double().numpy()
    xs, ns = x.double().numpy().reshape(6, 12), noise.double().numpy().reshape(7, 6, 12)
    moved = np.clip(xs[None] + ns, xs.min(), xs.max())  # the official batch-wide clamp
    delta = moved - xs[None]  # (N, B, D); f(x) - f(x') = -W delta, the bias cancels
    by_hand = (np.linalg.norm(delta @ w.T, axis=2) / np.linalg.norm(delta, axis=2)).mean(0)
    got = lipschitz_ratios(linear, x, noise, clamp="batch").detach().double().numpy()
    np.testing.assert_allclose(got, by_hand, rtol=1e-5)
    # without the clamp the ratio is ||W u|| for a unit direction u: bounded by the spectral norm
    free = lipschitz_ratios(linear, x, noise, clamp="none").detach()
    spectral = torch.linalg.matrix_norm(linear[1].weight.detach(), 2)
    assert float(free.max()) <= float(spectral) + 1e-5


def test_per_image_clamp_keeps_each_image_in_its_own_range():
    x = torch.stack([torch.zeros(1, 3, 4), torch.linspace(-5, 5, 12).reshape(1, 3, 4)])
    noise = 2.0 * torch.randn(4, *x.shape)
    per_image = perturb(x, noise, "image")
    assert torch.equal(per_image[:, 0], torch.zeros(4, 1, 3, 4))  # a constant image stays put
    assert float(perturb(x, noise, "batch")[:, 0].abs().max()) > 0  # the batch range lets it move
    assert float(per_image[:, 1].min()) >= -5 and float(per_image[:, 1].max()) <= 5
    # a constant image has ||x - x'|| = 0: the estimate is 0, not NaN
    assert torch.equal(lipschitz_ratios(_mlp(), x, noise, clamp="image")[0], torch.tensor(0.0))


def test_batched_perturbations_equal_the_loop_values_and_gradients():
    model, (x, _) = _mlp(), _data(10)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3))
    noise = 0.2 * torch.randn(25, *x.shape)
    for net in (model, conv):
        batched = lipschitz_ratios(net, x, noise)
        grads_b = torch.autograd.grad(batched.sum(), list(net.parameters()))
        looped = lipschitz_ratios_loop(net, x, noise)
        grads_l = torch.autograd.grad(looped.sum(), list(net.parameters()))
        torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_b, grads_l, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_modes_are_exactly_the_four_switches():
    official = JiT.Hyperparameters(mode="official").behaviour()
    corrected = JiT.Hyperparameters(mode="corrected").behaviour()
    assert official == {"accumulate": True, "reduction": "sum", "train_mode": True,
                        "clamp": "batch"}  # fmt: skip
    assert {k for k in official if official[k] != corrected[k]} == set(official)
    model, data = _mlp(dropout=True), _data(40)
    a = get_method("jit", lr=0.01, batch_size=16, mode="official").unlearn(model, data, seed=4)
    b = get_method("jit", lr=0.01, batch_size=16, mode="corrected", **official).unlearn(
        model, data, seed=4
    )
    assert _same(a.model, b.model) and a.details["behaviour"] == official


def test_each_switch_matters_exactly_where_it_should():
    plain, data = _mlp(), _data(40)
    x, y = data

    def run(model, samples=data, **kw):
        return (
            get_method("jit", lr=0.01, batch_size=16, mode="corrected", **kw)
            .unlearn(model, samples, seed=2)
            .model
        )

    # accumulation: no difference with one batch, a difference with several
    one = (x[:16], y[:16])
    assert _same(run(plain, one, accumulate=True), run(plain, one, accumulate=False))
    assert not _same(run(plain, accumulate=True), run(plain, accumulate=False))
    # reduction: summing over a batch of B is the mean with a B times larger step
    summed = run(plain, one, reduction="sum")
    mean = (
        get_method("jit", lr=0.01 * 16, batch_size=16, mode="corrected")
        .unlearn(plain, one, seed=2)
        .model
    )
    for p, q in zip(summed.parameters(), mean.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # training mode: matters only for a network with dropout (or batch norm)
    assert _same(run(plain, train_mode=True), run(plain, train_mode=False))
    dropped = _mlp(dropout=True)
    assert not _same(run(dropped, train_mode=True), run(dropped, train_mode=False))
    # clamp: no difference when every image spans the batch's range, one otherwise
    span = x.clone()
    span.view(40, -1)[:, 0], span.view(40, -1)[:, 1] = x.min(), x.max()
    spanning = (span, y)
    assert _same(run(plain, spanning, clamp="batch"), run(plain, spanning, clamp="image"))
    assert not _same(run(plain, clamp="batch"), run(plain, clamp="image"))


def test_callers_model_untouched_and_same_seed_same_result():
    model, data = _mlp(dropout=True), _data()
    model.eval()
    before = copy.deepcopy(model.state_dict())
    a = get_method("jit", lr=0.01).unlearn(model, data, seed=1)
    b = get_method("jit", lr=0.01).unlearn(model, data, seed=1)
    c = get_method("jit", lr=0.01).unlearn(model, data, seed=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and a.model is not model and not a.model.training
    assert _same(a.model, b.model) and not _same(a.model, c.model)
    assert a.details["steps"] == 1 and a.seconds > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma must be a positive finite number, got 0.0"),
        ({"sigma": -0.5}, "sigma must be a positive finite number, got -0.5"),
        ({"sigma": float("nan")}, "sigma must be a positive finite number, got nan"),
        ({"lr": 0}, "lr must be a positive finite number, got 0"),
        ({"lr": float("inf")}, "lr must be a positive finite number, got inf"),
        ({"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
        ({"mode": "fast"}, "mode must be one of .* got 'fast'"),
        ({"clamp": "pixel"}, "clamp must be one of .* got 'pixel'"),
        ({"reduction": "max"}, "reduction must be one of .* got 'max'"),
        ({"path": "fast"}, "path must be one of .* got 'fast'"),
    ],
)
def test_bad_hyperparameters_are_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_method("jit", **kwargs)


def test_non_integer_sample_count_is_a_type_error():
    with pytest.raises(TypeError, match="n_samples must be int"):
        get_method("jit", n_samples=2.5)


def test_smoothing_lowers_the_estimate_at_the_forget_points(trained):
    task, original = trained
    forget = task.forget_set
    x = forget.x[:64]
    noise = 0.5 * torch.randn(25, *x.shape, generator=torch.Generator().manual_seed(0))
    method = get_method("jit", sigma=0.5, lr=0.05, mode="corrected")
    result = method.unlearn(original, forget, seed=0)
    with torch.no_grad():
        before = lipschitz_ratios(original.model, x, noise).mean()
        after = lipschitz_ratios(result.model, x, noise).mean()
        acc = float((result.model(task.retain_set.x).argmax(1) == task.retain_set.y).float().mean())
    assert float(after) < 0.9 * float(before)
    assert acc > 0.5  # smoothing at the forget points leaves the rest of the network working


@pytest.mark.parametrize("shape", [(128, 1, 28, 28), (83, 3, 32, 32), (100, 3, 64, 64)])
def test_perturbations_drawn_one_at_a_time_equal_one_draw_of_all(shape):
    """JiT draws its N perturbations one after the other (the official loop's order); on the
    book's image shapes that gives the very noise of one draw of all N, so stored results
    made with the earlier all-at-once draw still hold."""
    from forgetkit.methods.jit import _draw

    x = torch.zeros(shape)
    at_once = 0.01 * torch.randn((5, *shape), generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    one_by_one = torch.stack([_draw(x, 0.01, gen) for _ in range(5)])
    assert torch.equal(at_once, one_by_one)
