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
    if name == "lcodec":
        pytest.skip("needs its training hook: test_lcodec_on_cuda_matches_cpu")
    if name == "forsaken":
        pytest.skip("needs nonmember data and an oracle: test_forsaken_on_cuda_matches_cpu")
    data = mnist_small.train
    forget = data.subset(range(50))
    retain = data.subset(range(50, 600))
    method = get_method(name)
    if method.record_keys:
        pytest.skip(f"{name} needs training hooks; it has a CUDA test of its own")
    hp = {f: 1 for f in ("epochs",) if hasattr(method.hparams, f)}
    original = trained  # through the training-time contract: hooks, then the TrainedModel
    if method.training_hooks():
        original = train_model(CFG, data, TrainConfig(epochs=2), device="cuda", cache=False,
                               hooks=method.training_hooks())  # fmt: skip
    result = get_method(name, **hp).unlearn(original, forget, retain, device="cuda")
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert result.seconds > 0


def test_cpu_model_moves_to_cuda_without_touching_the_original(mnist_small):
    cpu = train_model(CFG, mnist_small.train, TrainConfig(epochs=1), device="cpu", cache=False)
    forget = mnist_small.train.subset(range(20))
    result = get_method("neggrad", epochs=1).unlearn(cpu.model, forget, device="cuda")
    assert next(cpu.model.parameters()).device.type == "cpu"
    assert next(result.model.parameters()).device.type == "cuda"


def test_lcodec_on_cuda_matches_cpu(mnist_small):
    """Same seed, same selection, same weights up to float32 rounding (atol 1e-5): the
    perturbations and noise are drawn on the CPU and moved, so both devices see one draw."""
    from forgetkit.methods import LCodec

    cfg = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": (100,)})
    method = LCodec(n_perturbations=200, val_gap_skip=1.0)
    runs = {}
    for dev in ("cpu", "cuda"):
        trained = train_model(cfg, mnist_small.train, TrainConfig(epochs=2, batch_size=256),
                              device="cpu", hooks=method.training_hooks(), cache=False)  # fmt: skip
        forget = mnist_small.train.subset(range(3))
        runs[dev] = method.unlearn(trained, forget, validation=mnist_small.test, device=dev)
    cpu, cuda = runs["cpu"], runs["cuda"]
    assert next(cuda.model.parameters()).device.type == "cuda"
    units = [[e["units"] for e in r.details["removals"]] for r in (cpu, cuda)]
    assert units[0] == units[1]
    for p, q in zip(cpu.model.parameters(), cuda.model.parameters(), strict=True):
        torch.testing.assert_close(q.cpu(), p, atol=1e-5, rtol=1e-4)


def test_jit_on_cuda_matches_the_cpu_result():
    """JiT draws its perturbations on the CPU from the seed, so the two devices see the same
    noise and differ only by floating-point rounding: 1e-4 on every weight after one pass."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))  # fmt: skip
    forget = (torch.randn(300, 1, 28, 28), torch.zeros(300, dtype=torch.long))
    for mode in ("official", "corrected"):
        method = get_method("jit", sigma=0.5, lr=1e-3, mode=mode)
        cpu = method.unlearn(model, forget, device="cpu", seed=3).model
        gpu = method.unlearn(model, forget, device="cuda", seed=3).model
        assert all(p.device.type == "cuda" for p in gpu.parameters())
        for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
            torch.testing.assert_close(q.cpu(), p, rtol=0, atol=1e-4)


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


@pytest.mark.parametrize(("name", "hp"), [
    ("ssd", {"importance": "batch", "alpha": 2.0}),
    ("ssd", {"importance": "sample", "alpha": 2.0}),
    ("scrub", {"epochs": 2, "msteps": 1}),
])  # fmt: skip
def test_ssd_and_scrub_on_cuda_match_cpu(mnist_small, name, hp):
    """In float64 the importances (SSD) and the few Adam steps (SCRUB) agree across devices,
    so the same elements are dampened and the weights match closely; batch orders and
    dropout masks come from the seed, not the device."""
    cfg = ModelConfig("mlp", (1, 28, 28), 10, {"hidden": (64,)})
    data = mnist_small.train
    forget, retain = data.subset(range(40)), data.subset(range(40, 600))
    original = train_model(cfg, data.subset(range(600)), TrainConfig(epochs=2, lr=0.1),
                           device="cpu", cache=False).model.double()  # fmt: skip
    runs = {dev: get_method(name, **hp).unlearn(original, forget, retain, device=dev, seed=3)
            for dev in ("cpu", "cuda")}  # fmt: skip
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    if name == "ssd":
        assert cpu.details["selected"] == gpu.details["selected"]
    else:
        assert cpu.details["steps"] == gpu.details["steps"]
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        assert torch.allclose(p, q.cpu(), rtol=1e-6, atol=1e-9), float((p - q.cpu()).abs().max())
