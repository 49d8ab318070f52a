"""Forsaken: the forgetting rate, the generator's meta-gradient, the stopping rules, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from forgetkit.data import Samples
from forgetkit.methods import get_method
from forgetkit.methods.forsaken import (
    Generator,
    _Editor,
    label_sorted_profile,
    profile_divergence,
)
from forgetkit.metrics import forgetting_rate

pytestmark = pytest.mark.usefixtures("one_thread")


class LabelProbOracle:
    """A hand-built membership oracle: "member" when the label's probability exceeds a
    threshold (what a shadow attack learns on memorised samples, without the shadows)."""

    def __init__(self, threshold: float = 0.6) -> None:
        self.threshold = threshold
        self.calls = 0

    def predict_member_from_probs(self, probs, labels):
        self.calls += 1
        own = torch.as_tensor(probs).gather(1, torch.as_tensor(labels).view(-1, 1)).view(-1)
        return (own > self.threshold).cpu().numpy()


@pytest.fixture(scope="module")
def setting():
    """A small MLP that has memorised 12 random-labelled noise images among 300 easy ones."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 20, generator=g) * 3
    y = torch.randint(0, 3, (300,), generator=g)
    x = centres[y] + torch.randn(300, 20, generator=g)
    xf = torch.randn(12, 20, generator=g) * 3
    yf = torch.randint(0, 3, (12,), generator=g)
    xn = torch.randn(40, 20, generator=g) * 3
    yn = torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xa, ya = torch.cat([x, xf]), torch.cat([y, yf])
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xa), ya).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    return model, Samples(xf, yf), Samples(x, y), Samples(xn, yn)


def test_setting_memorises_the_forget_set(setting):
    model, forget, _, nonmember = setting
    with torch.no_grad():
        assert (model(forget.x).argmax(1) == forget.y).float().mean() == 1.0
        assert (model(nonmember.x).argmax(1) == nonmember.y).float().mean() < 0.7


# --------------------------------------------------------------------------- forgetting rate


def test_forgetting_rate_on_hand_built_oracle_decisions():
    before = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    after = np.array([0, 0, 1, 1, 1, 0], dtype=bool)  # two left, one non-member joined
    assert forgetting_rate(before, after) == pytest.approx(2 / 4)
    assert forgetting_rate(before, after, variant="fractions") == pytest.approx((4 - 3) / 4)
    assert forgetting_rate(before, np.ones(6, dtype=bool), variant="fractions") < 0
    assert forgetting_rate(torch.tensor(before), torch.tensor(after)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="undefined"):
        forgetting_rate(np.zeros(6, bool), after)
    with pytest.raises(ValueError, match="variant"):
        forgetting_rate(before, after, variant="ratio")
    with pytest.raises(ValueError, match="same shape"):
        forgetting_rate(before, after[:3])


def test_label_sorted_profile_puts_the_label_first_and_sums_to_one():
    p = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.3, 0.5]])
    q = label_sorted_profile(p, torch.tensor([0, 2]))
    assert torch.allclose(q, torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.3, 0.2]]))
    assert torch.allclose(q.sum(1), torch.ones(2))
    target = q.mean(0)
    assert profile_divergence(p, torch.tensor([0, 2]), target, "label_sorted") > 0
    same = label_sorted_profile(p[:1], torch.tensor([0]))[0]
    assert profile_divergence(p[:1], torch.tensor([0]), same, "label_sorted") < 1e-6


# --------------------------------------------------------------------------- meta-gradient


@pytest.mark.parametrize("edit", ["mask", "parameters"])
def test_the_generator_receives_nonzero_gradients_through_the_functional_forward(setting, edit):
    model, forget, _, nonmember = setting
    editor = _Editor(model, edit)
    gen = Generator(6, editor.size, 8)
    g = gen(torch.rand(6))
    params = editor.params(editor.initial - 0.01 * g)
    probs = torch.softmax(functional_call(model, (params, editor.buffers), (forget.x,)), 1)
    with torch.no_grad():
        target = label_sorted_profile(torch.softmax(model(nonmember.x), 1), nonmember.y).mean(0)
    profile_divergence(probs, forget.y, target, "label_sorted").backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert all(p.grad is None for p in model.parameters())  # the target is not trained


def test_mask_edit_at_ones_is_the_original_network(setting):
    model, forget, _, _ = setting
    editor = _Editor(model, "mask")
    out = functional_call(model, (editor.params(editor.initial), editor.buffers), (forget.x,))
    assert torch.allclose(out, model(forget.x))
    assert editor.size == 64 + 3  # one mask per neuron of each linear layer


# --------------------------------------------------------------------------- stopping rules


def run(setting, oracle=None, **hp):
    model, forget, retain, nonmember = setting
    oracle = oracle or LabelProbOracle()
    method = get_method("forsaken", **hp)
    return method.unlearn(model, forget, retain, nonmember=nonmember, record={"oracle": oracle})


def test_stops_when_the_oracle_reaches_the_target_rate(setting):
    result = run(setting, target_rate=0.5, steps=400, max_accuracy_drop=1.0, check_every=2)
    d = result.details
    assert d["stop_reason"] == "target_rate", d["stop_reason"]
    assert d["forgetting_rate"] >= 0.5 and d["steps_run"] < 400
    assert d["history"][-1]["forgetting_rate"] == d["forgetting_rate"]


def test_stops_and_reverts_when_utility_falls_past_the_bound(setting):
    result = run(setting, target_rate=1.0, steps=400, max_accuracy_drop=0.0, step_size=0.5,
                 retain_weight=0.0, check_every=1)  # fmt: skip
    d = result.details
    assert d["stop_reason"] == "utility"
    assert d["retain_accuracy_after"] >= d["retain_accuracy_before"]  # the reverted state
    assert d["history"][-1]["retain_accuracy"] < d["retain_accuracy_before"]


def test_stops_after_max_steps_otherwise(setting):
    result = run(setting, target_rate=1.0, steps=3, max_accuracy_drop=1.0, check_every=1)
    assert result.details["stop_reason"] == "max_steps" and result.details["steps_run"] == 3
    assert len(result.details["history"]) == 3


def test_nothing_to_forget_when_the_oracle_sees_no_member(setting):
    """With no forget sample judged a member the method does nothing: no step, and the
    returned network is the original (the book's paper-profile run says so in words)."""
    result = run(setting, oracle=LabelProbOracle(threshold=2.0))
    assert result.details["stop_reason"] == "no_members" and result.details["steps_run"] == 0
    assert result.details["members_before"] == 0 and result.details["history"] == []
    original = setting[0].state_dict()
    assert all(torch.equal(original[k], v) for k, v in result.model.state_dict().items())


# --------------------------------------------------------------------------- contract


def test_callers_model_is_untouched_and_the_result_is_deterministic(setting):
    model = setting[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = run(setting, steps=20, target_rate=1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in a.model.state_dict().items())
    b = run(setting, steps=20, target_rate=1.0)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(),
                                                 strict=True))  # fmt: skip


def test_bad_inputs_get_errors_that_name_them(setting):
    model, forget, retain, nonmember = setting
    method = get_method("forsaken")
    oracle = {"oracle": LabelProbOracle()}
    empty = Samples(forget.x[:0], forget.y[:0])
    with pytest.raises(ValueError, match="forget set is empty"):
        method.unlearn(model, empty, retain, nonmember=nonmember, record=oracle)
    with pytest.raises(ValueError, match="needs nonmember"):
        method.unlearn(model, forget, retain, record=oracle)
    with pytest.raises(ValueError, match="needs retain"):
        method.unlearn(model, forget, nonmember=nonmember, record=oracle)
    with pytest.raises(TypeError, match="record\\['oracle'\\] must be a membership oracle"):
        method.unlearn(model, forget, retain, nonmember=nonmember, record={"oracle": 3})
    with pytest.raises(ValueError, match="target_rate"):
        get_method("forsaken", target_rate=0.0)
    with pytest.raises(TypeError, match="steps must be (an )?int"):
        get_method("forsaken", steps=2.5)


def test_shadow_oracle_accepts_probabilities(mnist_small):
    from forgetkit.metrics import ShadowModelAttack
    from forgetkit.models import ModelConfig
    from forgetkit.train import TrainConfig

    cfg = ModelConfig.for_data("mlp", mnist_small, hidden=(32,))
    attack = ShadowModelAttack.train(cfg, TrainConfig(epochs=2, lr=0.1), mnist_small.train,
                                     n_shadows=1, shadow_size=300, seed=0, cache=False)  # fmt: skip
    model = attack.shadows[0].model
    data = mnist_small.test.subset(range(50))
    probs = torch.softmax(model(data.x), 1)
    assert np.array_equal(attack.predict_member_from_probs(probs, data.y),
                          attack.predict_member(model, data))  # fmt: skip
    with pytest.raises(ValueError, match="outputs"):
        attack.predict_member_from_probs(probs[:, :5], data.y)


def test_without_an_oracle_the_target_is_its_own_shadow(setting):
    model, forget, retain, nonmember = setting
    result = get_method("forsaken", steps=5).unlearn(model, forget, retain, nonmember=nonmember)
    assert result.details["oracle"] == "target as its own shadow"
    record = {"oracle": LabelProbOracle()}
    given = get_method("forsaken", steps=5).unlearn(
        model, forget, retain, nonmember=nonmember, record=record
    )
    assert given.details["oracle"] == "record"
