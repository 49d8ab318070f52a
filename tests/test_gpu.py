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
    if name == "forsaken":
        pytest.skip("needs nonmember data and an oracle: test_forsaken_on_cuda_matches_cpu")
    data = mnist_small.train
    forget = data.subset(range(50))
    retain = data.subset(range(50, 600))
    method = get_method(name)
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


def test_forsaken_on_cuda_matches_cpu(mnist_small):
    """Forsaken on CUDA against the same run on the CPU. Tolerance: the edited weights agree
    to 1e-3 (absolute) and the stop (reason and step) is the same; the float32 kernels differ
    between devices, and the small differences compound over the generator's steps."""
    from forgetkit.metrics import ShadowModelAttack

    cfg = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": (64,)})
    tc = TrainConfig(epochs=3, lr=0.1)
    data = mnist_small.train
    forget, retain = data.subset(range(40)), data.subset(range(40, 1000))
    nonmember = mnist_small.test.subset(range(100))
    original = train_model(cfg, data.subset(range(1000)), tc, device="cpu", cache=False)
    oracle = ShadowModelAttack.train(cfg, tc, data.subset(range(1000, 2000)), n_shadows=1,
                                     device="cpu", cache=False)  # fmt: skip
    runs = {}
    for dev in ("cpu", "cuda"):
        method = get_method("forsaken", steps=20, target_rate=1.0, max_accuracy_drop=1.0)
        runs[dev] = method.unlearn(original.model, forget, retain, nonmember=nonmember,
                                   record={"oracle": oracle}, device=dev)  # fmt: skip
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    assert cpu.details["stop_reason"] == gpu.details["stop_reason"]
    assert cpu.details["steps_run"] == gpu.details["steps_run"]
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        assert torch.allclose(p, q.cpu(), atol=1e-3), float((p - q.cpu()).abs().max())
