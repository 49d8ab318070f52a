"""L-CODEC: the training hook, the selected slices, the step, the noise, the revert check."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from forgetkit.data import Samples
from forgetkit.methods import LCodec, get_method
from forgetkit.methods.lcodec import (
    KEYS,
    OFFICIAL_CODE,
    SaveEpochGradients,
    newton_direction,
    perturbation_features,
    slice_indices,
    unit_layers,
)
from forgetkit.models import ModelConfig, build_model
from forgetkit.train import TrainConfig, TrainHook, train_model

CFG = ModelConfig("mlp", (1, 4, 4), 3, {"hidden": (12,)})
TRAIN = TrainConfig(epochs=4, lr=0.1, momentum=0.0, weight_decay=0.01, batch_size=32)
FAST = {"n_perturbations": 40, "val_gap_skip": 1.0}


def _blobs(n: int, seed: int) -> Samples:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    centres = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(99))
    x = centres[y] + 0.8 * torch.randn(n, 1, 4, 4, generator=gen)
    return Samples(x, y)


@pytest.fixture(scope="module")
def data():
    return {"train": _blobs(300, 0), "val": _blobs(200, 1)}


@pytest.fixture(scope="module")
def trained(data):
    return train_model(CFG, data["train"], TRAIN, hooks=LCodec().training_hooks(), cache=False)


def _forget(data, k=1):
    return data["train"].subset(range(k))


def _flat(model):
    return parameters_to_vector(model.parameters()).detach().clone()


class _Recorder(TrainHook):
    name = "recorder"

    def __init__(self):
        self.grads = {}

    def after_backward(self, model, epoch, n_epochs):
        flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone()
        self.grads.setdefault(epoch, []).append(flat)


def test_hook_saves_copies_of_the_last_two_epochs_gradients(data):
    recorder, saver = _Recorder(), SaveEpochGradients()
    out = train_model(CFG, data["train"], TRAIN, hooks=[recorder, saver], cache=False)
    art = out.artifacts
    torch.testing.assert_close(art["lcodec.grad_prev"], torch.stack(recorder.grads[2]).sum(0))
    torch.testing.assert_close(art["lcodec.grad_last"], torch.stack(recorder.grads[3]).sum(0))
    assert art["lcodec.batches"].tolist() == [10, 10]
    assert art["lcodec.samples"].tolist() == [300, 300]
    for slot, epoch in enumerate((2, 3)):  # each epoch's first and last batch, kept apart
        assert torch.equal(art["lcodec.grad_ends"][slot, 0], recorder.grads[epoch][0])
        assert torch.equal(art["lcodec.grad_ends"][slot, 1], recorder.grads[epoch][-1])
    assert torch.equal(art["lcodec.param_last"], _flat(out.model))
    assert not torch.equal(art["lcodec.param_prev"], art["lcodec.param_last"])
    pointers = {p.grad.data_ptr() for p in out.model.parameters() if p.grad is not None}
    assert all(art[k].data_ptr() not in pointers for k in art)


def test_parameters_outside_the_selected_slices_are_bit_identical(data, trained):
    result = LCodec(**FAST).unlearn(trained, _forget(data), validation=data["val"])
    entry = result.details["removals"][0]
    assert 1 <= entry["n_units"] < 15 and not entry["reverted"]
    layers = unit_layers(trained.model)
    names = {f"{layer.path}[{k}]": layer.offset + k for layer in layers for k in range(layer.units)}
    index = slice_indices(trained.model, layers, [names[u] for u in entry["units"]])
    before, after = _flat(trained.model), _flat(result.model)
    outside = torch.ones(len(before), dtype=torch.bool)
    outside[index] = False
    assert torch.equal(before[outside], after[outside])
    assert not torch.equal(before[index], after[index])
    assert entry["n_params"] == len(index)


def test_slices_are_weight_rows_and_bias_entries():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    layers = unit_layers(model)
    assert [(layer.path, layer.units, layer.offset) for layer in layers] == [
        ("1", 3, 0),
        ("3", 2, 3),
    ]
    index = slice_indices(model, layers, [1, 4]).tolist()
    # layer "1": weight (3, 4) at 0..11, bias 12..14; layer "3": weight (2, 3) 15..20, bias 21..22
    assert index == [4, 5, 6, 7, 13, 18, 19, 20, 22]


def test_noise_scale_follows_the_formula(data, trained):
    hp = {"n_perturbations": 40, "val_gap_skip": 1.0, "selection": "full", "l2_reg": 0.2}
    noisy = LCodec(**hp).unlearn(trained, _forget(data), validation=data["val"], seed=3)
    clean = LCodec(**hp, noise=False).unlearn(trained, _forget(data), validation=data["val"],
                                              seed=3)  # fmt: skip
    n = trained.train_size
    gamma = 2 * 0.25 * 1.0**2 * 1**2 / (n**2 * 0.2**3)
    sigma = gamma / 0.1 * math.sqrt(2 * math.log(1.25 / 0.01))
    assert noisy.details["removals"][0]["noise_std"] == pytest.approx(sigma, rel=1e-12)
    diff = _flat(noisy.model) - _flat(clean.model)
    assert diff.std().item() == pytest.approx(sigma, rel=0.08)
    assert abs(diff.mean().item()) < 4 * sigma / math.sqrt(len(diff))


def test_the_revert_check_reverts(data, trained):
    hp = {"n_perturbations": 40, "l2_reg": 1e-3}  # noise of about 2e4: the network breaks
    result = LCodec(**hp).unlearn(trained, _forget(data, 3), validation=data["val"])
    d = result.details
    assert d["reverted"] == [0, 1, 2] and d["removed"] == []
    assert all(e["reverted"] and e["val_acc_after"] < 0.6 for e in d["removals"])
    assert torch.equal(_flat(result.model), _flat(trained.model))
    kept = LCodec(**hp, val_gap_skip=1.0).unlearn(trained, _forget(data, 3), validation=data["val"])
    assert kept.details["removed"] == [0, 1, 2]


def test_a_sequence_of_removals_is_reproducible_from_its_seed(data, trained):
    method = LCodec(**FAST, selection="random")
    a = method.unlearn(trained, _forget(data, 4), validation=data["val"], seed=5)
    b = method.unlearn(trained, _forget(data, 4), validation=data["val"], seed=5)
    c = method.unlearn(trained, _forget(data, 4), validation=data["val"], seed=6)
    assert torch.equal(_flat(a.model), _flat(b.model))
    assert [e["units"] for e in a.details["removals"]] == [
        e["units"] for e in b.details["removals"]
    ]
    assert not torch.equal(_flat(a.model), _flat(c.model))
    ns = [e["n"] for e in a.details["removals"]]
    assert ns == [300, 299, 298, 297]  # n shrinks with every accepted removal
    fixed = LCodec(**FAST, shrink_n=False).unlearn(
        trained, _forget(data, 2), validation=data["val"]
    )
    assert [e["n"] for e in fixed.details["removals"]] == [300, 300]


def test_the_callers_model_is_untouched(data, trained):
    state = copy.deepcopy(trained.model.state_dict())
    LCodec(**FAST, selection="full").unlearn(trained, _forget(data, 2), validation=data["val"])
    for k, v in trained.model.state_dict().items():
        assert torch.equal(v, state[k])


def test_ablations_select_what_they_promise(data, trained):
    args = (trained, _forget(data))
    kw = {"validation": data["val"], "seed": 2}
    sizes = {s: LCodec(**FAST, selection=s).unlearn(*args, **kw).details["removals"][0]["n_units"]
             for s in ("foci", "random", "one", "full")}  # fmt: skip
    assert sizes["full"] == 15 and sizes["one"] == 1 and sizes["random"] == sizes["foci"]


def test_woodbury_matches_the_dense_solve():
    gen = torch.Generator().manual_seed(0)
    g, u, v = (torch.randn(30, generator=gen, dtype=torch.float64) for _ in range(3))
    terms = [(u, 2.5), (v, -0.3)]
    dense = 0.1 * torch.eye(30) + 2.5 * torch.outer(u, u) - 0.3 * torch.outer(v, v)
    torch.testing.assert_close(newton_direction(g, terms, 0.1), torch.linalg.solve(dense, g))
    torch.testing.assert_close(newton_direction(g, [(u, 0.0)], 0.1), g / 0.1)


def test_the_torch2_official_sample_hessian_makes_cr_a_scaled_gradient_step(data, trained):
    hp = {**FAST, "selection": "full", "update": "cr", "sample_hessian": "official",
          "grad_semantics": "torch2"}  # fmt: skip
    result = LCodec(**hp).unlearn(trained, _forget(data), validation=data["val"])
    model = copy.deepcopy(trained.model).eval()
    x, y = _forget(data).x, _forget(data).y
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    torch.testing.assert_close(_flat(result.model) - _flat(trained.model), g / 0.01)
    intent = LCodec(**{**hp, "sample_hessian": "finite_difference"}).unlearn(
        trained, _forget(data), validation=data["val"]
    )
    assert not torch.allclose(_flat(intent.model), _flat(result.model))


def test_works_on_a_convolutional_network_by_module_path(data):
    cfg = ModelConfig("small_cnn", (1, 8, 8), 3, {"width": 0.25})
    x = torch.nn.functional.interpolate(data["train"].x, size=8)
    train = Samples(x, data["train"].y)
    val = Samples(torch.nn.functional.interpolate(data["val"].x, size=8), data["val"].y)
    hooks = [SaveEpochGradients()]
    out = train_model(cfg, train, TrainConfig(epochs=2, batch_size=64), hooks=hooks, cache=False)
    result = LCodec(**FAST).unlearn(out, train.subset(range(2)), validation=val)
    paths = [layer.path for layer in unit_layers(out.model)]
    assert any(isinstance(m, nn.Conv2d) for m in out.model.modules())
    assert all(u.rsplit("[", 1)[0] in paths for e in result.details["removals"] for u in e["units"])
    assert result.details["removed"] == [0, 1]


def test_a_label_the_model_does_not_have_is_refused(data, trained):
    bad = Samples(data["train"].x[:1], torch.tensor([3]))
    with pytest.raises(ValueError, match="forget set labels span 3..3 but the model has 3 outputs"):
        LCodec(**FAST).unlearn(trained, bad, validation=data["val"])


def test_a_model_without_linear_or_convolution_layers_is_refused(data):
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(16, 3))

        def forward(self, x):
            return x.flatten(1) @ self.w

    model = Bare()
    record = {k: torch.zeros(48) for k in KEYS[:4]}
    record |= {"lcodec.batches": torch.tensor([1, 1]), "lcodec.samples": torch.tensor([9, 9]),
               "lcodec.grad_ends": torch.zeros(2, 2, 48), "train_size": 10}  # fmt: skip
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv1d/2d/3d layer"):
        LCodec(**FAST).unlearn(model, _forget(data), validation=data["val"], record=record)


def test_missing_or_foreign_saved_gradients_are_refused(data, trained):
    with pytest.raises(ValueError, match=r"record lacks \[.*lcodec.grad_last.*hooks=method"):
        LCodec(**FAST).unlearn(trained.model, _forget(data), validation=data["val"])
    with pytest.raises(ValueError, match=r"lcodec-gradients.*at least 2 epochs"):
        train_model(CFG, data["train"], TrainConfig(epochs=1), hooks=[SaveEpochGradients()],
                    cache=False)  # fmt: skip
    other = ModelConfig("mlp", (1, 4, 4), 3, {"hidden": (5,)})
    foreign = train_model(other, data["train"], TRAIN, hooks=[SaveEpochGradients()], cache=False)
    with pytest.raises(ValueError, match="from another architecture"):
        LCodec(**FAST).unlearn(trained.model, _forget(data), validation=data["val"],
                               record=LCodec().record_from(foreign))  # fmt: skip
    with pytest.raises(ValueError, match="lcodec needs validation at forget time"):
        LCodec(**FAST).unlearn(trained, _forget(data))


def test_bad_hyperparameters_name_the_choice():
    with pytest.raises(ValueError, match="selection must be one of"):
        get_method("lcodec", selection="best")
    with pytest.raises(ValueError, match="delta must be in"):
        LCodec(delta=1.5)
    with pytest.raises(ValueError, match="grad_semantics must be one of"):
        LCodec(grad_semantics="torch1.9")


BAD = [("lipschitz", -1.0), ("hessian_lipschitz", -0.25), ("lipschitz", 0.0),
       ("foci_jitter", -1e-6)]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD)
def test_bad_noise_constants_and_jitter_are_refused_by_name(key, value):
    msg = _message(lambda: LCodec(**{key: value}))
    assert msg.startswith(f"lcodec: {key} must be >") and msg.endswith(f"got {value}")


def _message(call) -> str:
    with pytest.raises(ValueError) as err:
        call()
    return str(err.value)


def test_a_missing_train_size_says_how_to_record_it(data, trained):
    record = {k: v for k, v in LCodec().record_from(trained).items() if k != "train_size"}
    method = LCodec(**FAST)
    msg = _message(lambda: method.unlearn(trained.model, _forget(data), validation=data["val"],
                                          record=record))  # fmt: skip
    assert "lcodec: the record lacks 'train_size'" in msg
    assert "TrainingRecorder" in msg and "train_size=len(train_set)" in msg


def test_all_removals_reverted_is_said_and_warned(data, trained):
    with pytest.warns(UserWarning, match="all 2 removal requests were reverted") as caught:
        result = LCodec(n_perturbations=40, l2_reg=1e-3).unlearn(
            trained, _forget(data, 2), validation=data["val"]
        )
    assert len([w for w in caught if "changed nothing" in str(w.message)]) == 1  # said once
    assert result.details["unchanged"] is True
    assert torch.equal(_flat(result.model), _flat(trained.model))
    kept = LCodec(**FAST).unlearn(trained, _forget(data), validation=data["val"])
    assert kept.details["unchanged"] is False


def test_perturbation_features_are_unit_outputs_and_channel_means():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(48, 2))  # fmt: skip
    layers = unit_layers(model)
    x, y = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1])
    gen = torch.Generator().manual_seed(2)
    feats, losses = perturbation_features(
        model, x, y, layers, n_perturbations=5, std=0.1, generator=gen, chunk=2
    )
    noise = torch.randn((5, 2, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    batch = (x[None] + 0.1 * noise).reshape(10, 1, 4, 4)
    with torch.no_grad():
        conv = model[0](batch)
        out = model(batch)
    expected = torch.cat([conv.mean((2, 3)).view(5, 2, 3).mean(1),
                          out.view(5, 2, 2).mean(1)], 1)  # fmt: skip
    loss = nn.functional.cross_entropy(out, y.repeat(5), reduction="none").view(5, 2).mean(1)
    torch.testing.assert_close(feats, expected)
    torch.testing.assert_close(losses, loss)
    assert feats.shape == (5, 5)


def test_noise_on_the_complement_leaves_only_the_step_on_the_slices(data, trained):
    hp = {**FAST, "l2_reg": 0.2}
    args = (trained, _forget(data))
    kw = {"validation": data["val"], "seed": 4}
    clean = LCodec(**hp, noise=False).unlearn(*args, **kw)
    other = LCodec(**hp, noise_placement="complement").unlearn(*args, **kw)
    entry = clean.details["removals"][0]
    layers = unit_layers(trained.model)
    names = {f"{layer.path}[{k}]": layer.offset + k for layer in layers for k in range(layer.units)}
    index = slice_indices(trained.model, layers, [names[u] for u in entry["units"]])
    a, b, w = _flat(clean.model), _flat(other.model), _flat(trained.model)
    assert torch.equal(a[index], b[index])  # the step alone on the selected slices
    outside = torch.ones(len(w), dtype=torch.bool)
    outside[index] = False
    assert torch.equal(a[outside], w[outside]) and not torch.equal(b[outside], w[outside])


def test_batched_requests_use_m_and_the_official_rule_uses_one(data, trained):
    kw = {"validation": data["val"], "seed": 1}
    sek = LCodec(**FAST, removal_batch=2).unlearn(trained, _forget(data, 4), **kw).details
    off = (
        LCodec(**FAST, removal_batch=2, batch_rule="official")
        .unlearn(trained, _forget(data, 4), **kw)
        .details
    )
    assert [e["samples"] for e in sek["removals"]] == [[0, 1], [2, 3]]
    assert [e["n"] for e in sek["removals"]] == [300, 298]
    assert [e["n"] for e in off["removals"]] == [300, 299]
    gamma = 2 * 0.25 * 2**2 / (300**2 * 0.01**3)
    assert sek["removals"][0]["noise_std"] == pytest.approx(
        gamma / 0.1 * math.sqrt(2 * math.log(125)), rel=1e-12
    )
    assert off["removals"][0]["noise_std"] == pytest.approx(
        sek["removals"][0]["noise_std"] / 4, rel=1e-12
    )


# ----------------------------------------------------------------- the pinned torch 1.8 semantics
# An independent emulation of the official code's data flow (scrub/nn_utils.py do_epoch,
# scrub/scrub_tools.py inp_perturb, scrub/grad_utils.py, commit 1d4873e): dictionaries that
# hold references to p.grad, built over model.modules(), and zero_grad with set_to_none=False
# (PyTorch 1.8's in-place zeroing) or True (PyTorch 2). Run in today's torch, so the aliasing
# is real, not modelled.


def _grad_objs(model):
    grads = {(str(m), k): p.grad for m in model.modules() for k, p in m.named_parameters()}
    params = {(str(m), k): p.data for m in model.modules() for k, p in m.named_parameters()}
    return grads, params


def _vector(bank, model):
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.cat([bank[(str(layer), k)].reshape(-1) for layer in layers
                      for k, _ in layer.named_parameters()]).double()  # fmt: skip


def _official_training(data, set_to_none, epochs=3, batch=32):
    """The official training loop with forgetkit's hook driven by hand (one's own loop)."""
    model = build_model(CFG, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    hook, saved = SaveEpochGradients(), {}
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    for epoch in range(epochs):
        bank, nsamps = None, 0
        for start in range(0, len(data), batch):
            x, y = hook.transform(data.x[order[start:start + batch]],
                                  data.y[order[start:start + batch]], None)  # fmt: skip
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=set_to_none)
            loss.backward()
            hook.after_backward(model, epoch, epochs)
            opt.step()
            if epoch >= epochs - 2:
                batch_bank, params = _grad_objs(model)
                if bank is None:
                    bank = batch_bank
                else:
                    for key in bank:
                        bank[key] += batch_bank[key]  # in place, as the official code
            nsamps += len(y)
        if epoch >= epochs - 2:
            saved[epoch] = ({k: v / nsamps for k, v in bank.items()},
                            {k: v.clone() for k, v in params.items()})  # fmt: skip
    return model, hook.artifacts(), saved


def _official_step(model, x, y, saved, n, l2, set_to_none):
    """inp_perturb with every unit selected, order 'Hessian', approx 'FD', 'Sekhari', no noise."""
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=set_to_none)
    nn.functional.cross_entropy(model(x), y).backward()
    samp, params = _grad_objs(model)
    g1, w1 = _vector(samp, model), _vector(params, model)
    model.zero_grad(set_to_none=set_to_none)
    # the copy's SGD step is never read: the second gradient comes from samp, the weights
    # from the (unchanged) model
    g2, w2 = _vector(samp, model), _vector(params, model)
    pdist = nn.PairwiseDistance(p=1)
    (grad_a, par_a), (grad_b, par_b) = (saved[e] for e in sorted(saved))
    dg = _vector(grad_a, model) - _vector(grad_b, model)
    dw = pdist(_vector(par_a, model).float()[None], _vector(par_b, model).float()[None])
    h_old = torch.outer(dg, dg) / dw.double()
    h_samp = torch.outer(g1 - g2, g1 - g2) / pdist(w1.float()[None], w2.float()[None]).double()
    combined = (n * h_old - h_samp) / (n - 1) + l2 * torch.eye(len(g1), dtype=torch.float64)
    return w1 + torch.linalg.solve(combined, g1) / (n - 1)


@pytest.mark.parametrize("semantics", ["torch1.8", "torch2"])
def test_official_modes_reproduce_the_official_code_under_each_torch(data, semantics):
    set_to_none = semantics == "torch2"
    model, artifacts, saved = _official_training(data["train"], set_to_none)
    record = {**artifacts, "train_size": 300}
    x, y = _forget(data).x, _forget(data).y
    expected = _official_step(model.eval(), x, y, saved, 300, 0.01, set_to_none)
    hp = {**FAST, **OFFICIAL_CODE, "selection": "full", "noise": False}
    result = LCodec(**hp, grad_semantics=semantics).unlearn(
        model, _forget(data), validation=data["val"], record=record
    )
    got = _flat(result.model).double()
    before = _flat(model).double()
    torch.testing.assert_close(got - before, expected - before, rtol=2e-3, atol=1e-6)
    other = "torch2" if semantics == "torch1.8" else "torch1.8"
    result_other = LCodec(**hp, grad_semantics=other).unlearn(
        model, _forget(data), validation=data["val"], record=record
    )
    assert not torch.allclose(_flat(result_other.model).double() - before, expected - before,
                              rtol=0.05)  # fmt: skip


def test_the_pinned_torch_semantics_is_the_default():
    assert LCodec().hparams.grad_semantics == "torch1.8"
    assert LCodec(**OFFICIAL_CODE).hparams.grad_semantics == "torch1.8"


def test_the_pinned_sample_hessian_shrinks_the_cr_step_to_a_sliver(data, trained):
    """Under torch 1.8 the official sample Hessian is g g^T / (d * 1e-6): by Sherman-Morrison
    the CR step on g is g / (lambda + |g|^2 / (d * 1e-6)), a tiny step along +g."""
    hp = {**FAST, "selection": "full", "update": "cr", "sample_hessian": "official"}
    result = LCodec(**hp).unlearn(trained, _forget(data), validation=data["val"])
    model = copy.deepcopy(trained.model).eval()
    x, y = _forget(data).x, _forget(data).y
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    c = 1.0 / (len(g) * 1e-6)
    expected = g.double() / (0.01 + c * float(g.double() @ g.double()))
    step = (_flat(result.model) - _flat(trained.model)).double()
    # compared through the float32 weights it was added to: a direction and a length
    assert float(step @ expected) / float(step.norm() * expected.norm()) > 0.999
    assert float(step.norm() / expected.norm()) == pytest.approx(1.0, rel=0.01)
    assert float(expected.norm()) < 1e-3 * float(g.norm()) / 0.01  # far below torch 2's g / lambda
