"""SSD: importances against direct references, the dampening rule by hand, inputs refused."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import forgetkit as fk
from forgetkit.data import Samples
from forgetkit.methods.ssd import dampen, ssd_importance


def _tiny(seed: int = 0) -> tuple[nn.Module, Samples, Samples]:
    """A 4-5-3 MLP (float64) and two small labelled sets: every number checkable by hand."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed)
    retain = Samples(torch.randn(23, 4, generator=g, dtype=torch.float64),
                     torch.randint(0, 3, (23,), generator=g))  # fmt: skip
    forget = Samples(torch.randn(7, 4, generator=g, dtype=torch.float64) + 2.0,
                     torch.full((7,), 2))  # fmt: skip
    return model, forget, retain


def _per_sample_reference(model: nn.Module, s: Samples) -> dict[str, torch.Tensor]:
    """1/N sum_x grad CE(f(x), y)**2, one backward pass per sample (a reference only)."""
    named = list(model.named_parameters())
    acc = {n: torch.zeros_like(p) for n, p in named}
    for i in range(len(s)):
        loss = F.cross_entropy(model(s.x[i : i + 1]), s.y[i : i + 1])
        for (n, _), g in zip(named, torch.autograd.grad(loss, [p for _, p in named]), strict=True):
            acc[n] += g.square()
    return {n: a / len(s) for n, a in acc.items()}


def _batch_reference(model: nn.Module, s: Samples, batch_size: int) -> dict[str, torch.Tensor]:
    """The official calc_importance's structure: .backward() on each batch-mean loss, .grad
    squared and summed, divided by the number of batches."""
    model = copy.deepcopy(model).eval()
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    starts = range(0, len(s), batch_size)
    for start in starts:
        model.zero_grad()
        loss = F.cross_entropy(model(s.x[start : start + batch_size]),
                               s.y[start : start + batch_size])  # fmt: skip
        loss.backward()
        for n, p in model.named_parameters():
            acc[n] += p.grad.square()
    return {n: a / len(starts) for n, a in acc.items()}


def test_per_sample_importance_equals_a_per_sample_loop():
    model, forget, _ = _tiny()
    got = ssd_importance(model, forget, importance="sample")
    want = _per_sample_reference(model, forget)
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch_size", [1, 3, 128])
def test_batch_importance_equals_the_official_structure(batch_size):
    model, _, retain = _tiny()
    got = ssd_importance(model, retain, importance="batch", batch_size=batch_size)
    want = _batch_reference(model, retain, batch_size)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-14)
    # batch size 1 is the per-sample Fisher; a larger batch is not (the pitfall)
    per_sample = _per_sample_reference(model, retain)
    same = all(torch.allclose(got[n], per_sample[n]) for n in got)
    assert same == (batch_size == 1)


def test_dampening_by_hand():
    """w = [2, -4, 1, 3], I_f = [3, 1, 8, 0], I_D = [0.1, 1, 0.5, 0]: with alpha = 2 the
    first and third are selected (3 > 0.2, 8 > 1), the second is not (1 < 2), nor the
    fourth (I_f = 0 selects nothing)."""
    layer = nn.Linear(4, 1, bias=False).double()
    w = torch.tensor([[2.0, -4.0, 1.0, 3.0]], dtype=torch.float64)
    i_f = {"weight": torch.tensor([[3.0, 1.0, 8.0, 0.0]], dtype=torch.float64)}
    i_d = {"weight": torch.tensor([[0.1, 1.0, 0.5, 0.0]], dtype=torch.float64)}
    cases = {  # lam: expected weights; min(lam * I_D / I_f, 1) on the selected ones
        1.0: [2.0 * 0.1 / 3.0, -4.0, 1.0 * 0.5 / 8.0, 3.0],
        10.0: [2.0 * 1.0 / 3.0, -4.0, 1.0 * 5.0 / 8.0, 3.0],
        100.0: [2.0, -4.0, 1.0, 3.0],  # the cap binds (lam > alpha): nothing grows
    }
    for lam, expected in cases.items():
        with torch.no_grad():
            layer.weight.copy_(w)
        selected = dampen(layer, i_f, i_d, alpha=2.0, lam=lam)
        assert selected == {"weight": 2}
        torch.testing.assert_close(layer.weight, torch.tensor([expected], dtype=torch.float64),
                                   rtol=1e-15, atol=0)  # fmt: skip
        assert layer.weight[0, 1].item() == -4.0 and layer.weight[0, 3].item() == 3.0


@pytest.mark.parametrize("importance", ["batch", "sample"])
def test_unlearn_dampens_exactly_the_selected_parameters(importance):
    """Through the method: I_f on the forget set, I_D on retain + forget, both from the
    direct references; unselected elements keep their bits, selected ones follow the
    formula; the caller's model is untouched."""
    model, forget, retain = _tiny()
    before = copy.deepcopy(model.state_dict())
    full = Samples.concat([retain, forget])
    if importance == "batch":
        i_f, i_d = _batch_reference(model, forget, 4), _batch_reference(model, full, 4)
    else:
        i_f, i_d = _per_sample_reference(model, forget), _per_sample_reference(model, full)
    alpha, lam = 1.5, 0.5
    result = fk.get_method("ssd", alpha=alpha, lam=lam, importance=importance,
                           batch_size=4).unlearn(model, forget, retain)  # fmt: skip
    for n, p in model.state_dict().items():
        assert torch.equal(p, before[n])  # the caller's model
    chosen_total = 0
    for n, new in result.model.named_parameters():
        old = before[n]
        chosen = i_f[n] > alpha * i_d[n]
        chosen_total += int(chosen.sum())
        assert torch.equal(new[~chosen], old[~chosen])  # bit for bit
        beta = torch.clamp(lam * i_d[n][chosen] / i_f[n][chosen], max=1.0)
        torch.testing.assert_close(new[chosen], old[chosen] * beta, rtol=1e-9, atol=1e-12)
        assert bool((new[chosen].abs() <= old[chosen].abs()).all())
    assert 0 < chosen_total < sum(p.numel() for p in model.parameters())
    assert result.details["selected_fraction"] == pytest.approx(
        chosen_total / sum(p.numel() for p in model.parameters())
    )
    assert sum(result.details["selected"].values()) == chosen_total


def test_no_gradient_is_left_on_the_model():
    model, forget, _ = _tiny()
    ssd_importance(model, forget, importance="batch", batch_size=3)
    ssd_importance(model, forget, importance="sample")
    assert all(p.grad is None for p in model.parameters())


def test_ssd_is_deterministic_and_needs_the_retain_set():
    model, forget, retain = _tiny()
    a = fk.get_method("ssd", alpha=1.5).unlearn(model, forget, retain, seed=0).model
    b = fk.get_method("ssd", alpha=1.5).unlearn(model, forget, retain, seed=5).model
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="ssd needs retain"):
        fk.get_method("ssd").unlearn(model, forget)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"alpha": float("nan")}, ValueError, "alpha"),
        ({"lam": 0}, ValueError, "lam"),
        ({"lam": "1"}, TypeError, "lam"),
        ({"importance": "mean"}, ValueError, "importance"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"selection_weighting": 10}, TypeError, "selection_weighting"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=f"ssd: .*{argument}"):
        fk.get_method("ssd", **kwargs)


def test_nothing_is_selected_once_the_forget_set_is_a_fraction_one_over_alpha():
    """I_D >= (n_f / n) I_f per sample, so with n_f / n = 7/30 >= 1/alpha (alpha >= 4.3)
    nothing moves, while a smaller alpha does select (the bound, not an empty signal)."""
    model, forget, retain = _tiny()
    for alpha, expect_any in ((4.5, False), (10.0, False), (1.5, True)):
        result = fk.get_method("ssd", alpha=alpha, importance="sample").unlearn(
            model, forget, retain
        )
        assert (sum(result.details["selected"].values()) > 0) == expect_any, alpha
