"""CUDA runs: the same code paths on a GPU. Skipped where no GPU is present (as in CI)."""

from __future__ import annotations

import pytest
import torch

from forgetkit.methods import available_methods, get_method
from forgetkit.models import ModelConfig
from forgetkit.train import TrainConfig, train_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CFG = ModelConfig("small_cnn", (1, 28, 28), 10)


@pytest.fixture(scope="module")
def trained(mnist_small):
    return train_model(CFG, mnist_small.train, TrainConfig(epochs=2), device="cuda", cache=False)


def test_training_on_cuda_is_deterministic(mnist_small, trained):
    again = train_model(CFG, mnist_small.train, TrainConfig(epochs=2), device="cuda", cache=False)
    for p, q in zip(trained.model.parameters(), again.model.parameters(), strict=True):
        assert p.device.type == "cuda" and torch.equal(p, q)


@pytest.mark.parametrize("name", available_methods())
def test_every_method_runs_on_cuda(mnist_small, trained, name):
    if name.startswith("test-"):
        pytest.skip("toy method registered by another test")
    data = mnist_small.train
    forget = data.subset(range(50))
    retain = data.subset(range(50, 600))
    method = get_method(name)
    if method.record_keys:
        pytest.skip(f"{name} needs training hooks; it has a CUDA test of its own")
    hp = {f: 1 for f in ("epochs",) if hasattr(method.hparams, f)}
    result = get_method(name, **hp).unlearn(trained.model, forget, retain, device="cuda")
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert result.seconds > 0


def test_cpu_model_moves_to_cuda_without_touching_the_original(mnist_small):
    cpu = train_model(CFG, mnist_small.train, TrainConfig(epochs=1), device="cpu", cache=False)
    forget = mnist_small.train.subset(range(20))
    result = get_method("neggrad", epochs=1).unlearn(cpu.model, forget, device="cuda")
    assert next(cpu.model.parameters()).device.type == "cpu"
    assert next(result.model.parameters()).device.type == "cuda"


def test_mnemonic_on_cuda_matches_cpu(mnist_small):
    """Train with codes on the CPU, scrub on both devices: same choice, same weights within
    1e-4 relative (float32 Fisher and ratios computed by different kernels)."""
    from forgetkit.scenarios import forget_class

    task = forget_class(mnist_small, 3)
    method = get_method("mnemonic")
    mlp = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": 100, "activation": "sigmoid"})
    original = train_model(mlp, task.train_set, TrainConfig(epochs=3, lr=0.01, batch_size=64),
                           device="cpu", cache=False, hooks=method.training_hooks())  # fmt: skip
    cpu = method.unlearn(original, task.forget_set, device="cpu")
    gpu = method.unlearn(original, task.forget_set, device="cuda")
    assert gpu.details["sign"] == cpu.details["sign"]
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        assert torch.allclose(p, q.cpu(), rtol=1e-4, atol=1e-5)
