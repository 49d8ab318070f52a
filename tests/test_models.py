"""Architectures build for every input shape; seeds fix weights; re-initialisation is total."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.models import MODELS, ModelConfig, build_model, reinitialize
from forgetkit.train import TrainConfig, fit


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_every_model_maps_images_to_logits(name, shape):
    options = {"width": 0.25} if name in ("allcnn", "resnet18", "vgg_small") else {}
    model = build_model(ModelConfig(name, shape, 7, options), seed=0)
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_seed_fixes_the_initial_weights():
    cfg = ModelConfig("small_cnn", (1, 28, 28), 10)
    a, b, c = build_model(cfg, seed=1), build_model(cfg, seed=1), build_model(cfg, seed=2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        ModelConfig("transformer", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="num_classes"):
        ModelConfig("mlp", (1, 28, 28), 1)
    with pytest.raises(ValueError, match="unknown activation"):
        build_model(ModelConfig("mlp", (1, 28, 28), 10, {"activation": "swish"}))


def test_for_data_says_what_it_needs_when_given_samples():
    samples = Samples(torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TypeError, match=r"ModelConfig.for_data: data must be an ImageDataset "
                       r"or a ForgetTask .*got Samples; for your own data use "
                       r"ModelConfig\('mlp', in_shape="):  # fmt: skip
        ModelConfig.for_data("mlp", samples)


def test_reinitialize_leaves_no_trained_weight_in_any_nested_layer():
    """The retrain oracle starts from scratch: every parameter and BN statistic is reset."""
    cfg = ModelConfig("resnet18", (3, 32, 32), 4, {"width": 0.125, "stem": 8})
    model = build_model(cfg, seed=0)
    data = Samples(torch.randn(64, 3, 32, 32), torch.randint(0, 4, (64,)))
    fit(model, data, TrainConfig(epochs=1, lr=0.1, batch_size=16), device="cpu")
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    reinitialize(model, seed=5)
    fresh = build_model(cfg, seed=5).state_dict()
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert int(value) == 0
            continue
        if value.dtype.is_floating_point and value.numel() > 1:
            assert not torch.equal(value, trained[name]), f"{name} kept its trained value"
        if name.endswith(("running_mean", "running_var")):
            assert torch.equal(value, fresh[name])


def test_reinitialize_refuses_modules_it_cannot_reset():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.gain

    with pytest.raises(TypeError, match="no reset_parameters"):
        reinitialize(nn.Sequential(nn.Linear(3, 3), Scale()), seed=0)


def test_with_fresh_head_keeps_the_body_and_reseeds_only_the_logit_layer():
    from forgetkit.models import with_fresh_head

    config = ModelConfig("small_cnn", (1, 28, 28), 5, {"width": 0.25})
    pretrained = build_model(config, seed=1)
    model = with_fresh_head(pretrained, config, seed=2)
    fresh = build_model(config, seed=2)
    changed = {n for n, t in model.state_dict().items()
               if not torch.equal(t, pretrained.state_dict()[n])}  # fmt: skip
    assert changed and all(torch.equal(model.state_dict()[n], fresh.state_dict()[n])
                           for n in changed)  # fmt: skip
    head = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert changed == {f"{head}.weight", f"{head}.bias"}
    assert model is not pretrained


def test_with_weights_copies_and_leaves_the_model_alone():
    from forgetkit.models import with_weights

    model = build_model(ModelConfig("logistic", (1, 4, 4), 3), seed=0).train()
    before = {n: p.clone() for n, p in model.named_parameters()}
    weights = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    out = with_weights(model, weights)
    assert not out.training and all((p == 0.5).all() for p in out.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="weights lack"):
        with_weights(model, {})
