"""Benchmark JiT: its time against the forget-set size and the number of perturbations N,
the batched perturbations against the per-perturbation loop, and the speed-up over
retraining from scratch on the ``ci`` tasks of the JiT chapter (target: at least 100x).

Usage::

    FORGETKIT_DATA=/path/to/data python scripts/bench_jit.py [--device cpu] [--threads 1]

The ``ci`` setting is the chapter's: 3,000 MNIST training images (stratified, seed 0), a
784-128-10 perceptron trained 10 epochs, and three tasks (100 random images, 75 images of
digit 0, all of digit 0). Every time is the best of ``--repeats`` runs; the retraining time
is that of :class:`~forgetkit.methods.Retrain` with the original's recipe, measured once per
task (it is seconds, not milliseconds). Ratios are printed with "met" or "not met".
"""

from __future__ import annotations

import argparse

import torch

import forgetkit as fk
from forgetkit.methods.jit import lipschitz_ratios, lipschitz_ratios_loop
from forgetkit.runtime import best_of, resolve_device

TARGET_SPEEDUP = 100.0
# The chapter's ci setting (book/src/jit.md).
N_TRAIN, N_TEST = 3000, 1000
MODEL_OPTIONS = {"hidden": (128,)}
TRAIN = fk.TrainConfig(epochs=10, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128)
# Per task: the chapter's JiT settings (the official ones for a whole class and random samples).
JIT = {"random": {"sigma": 0.01, "lr": 3e-4}, "subclass": {"sigma": 0.01, "lr": 3e-4},
       "class": {"sigma": 0.5, "lr": 3e-4}}  # fmt: skip


def tasks(data):
    return {
        "random": fk.forget_random(data, 100, seed=0),
        "subclass": fk.forget_subclass(data, 0, 75, seed=0),
        "class": fk.forget_class(data, 0, seed=0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = fk.load_dataset("mnist").subsample(N_TRAIN, N_TEST, seed=0)
    config = fk.ModelConfig.for_data("mlp", data, **MODEL_OPTIONS)
    jobs = tasks(data)
    original = fk.train_original(jobs["class"], config, TRAIN, seed=0, device=device)
    model = original.model
    print(f"device {device.type}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"data: {data.name}; model: mlp {MODEL_OPTIONS['hidden']}; best of {args.repeats}\n")

    print("1. JiT time against the forget-set size (N = 25, sigma 0.5, official mode)")
    pool = data.train
    base = None
    for n in (32, 128, 512, 2048):
        forget = pool.subset(range(n))
        method = fk.get_method("jit", sigma=0.5)
        t = best_of(lambda f=forget, m=method: m.unlearn(model, f, device=device), args.repeats,
                    device)  # fmt: skip
        base = base or t / n
        print(f"   {n:>5} samples: {t * 1e3:8.1f} ms  ({t / n * 1e6:6.1f} us/sample, "
              f"{t / n / base:4.2f}x the per-sample cost at 32)")  # fmt: skip

    print("\n2. JiT time against N (512 samples)")
    forget = pool.subset(range(512))
    base = None
    for n_samples in (1, 5, 25, 100):
        method = fk.get_method("jit", sigma=0.5, n_samples=n_samples)
        t = best_of(lambda m=method: m.unlearn(model, forget, device=device), args.repeats, device)
        base = base or t
        print(f"   N = {n_samples:>3}: {t * 1e3:8.1f} ms  ({t / base:5.1f}x the time at N = 1)")

    print("\n3. Batched perturbations against the loop (one batch of 128, N = 25, value and "
          "gradient)")  # fmt: skip
    cnn = fk.build_model(fk.ModelConfig.for_data("small_cnn", data), seed=0).to(device)
    x = pool.subset(range(128)).x.to(device)
    noise = 0.5 * torch.randn(25, *x.shape, generator=torch.Generator().manual_seed(0))
    noise = noise.to(device)
    for label, net in (("mlp 784-128-10", model), ("small_cnn", cnn)):
        net.eval()

        def step(fn, net=net):
            ratios = fn(net, x, noise)
            ratios.sum().backward()
            net.zero_grad(set_to_none=True)
            return ratios

        batched = best_of(lambda: step(lipschitz_ratios), args.repeats, device)
        looped = best_of(lambda: step(lipschitz_ratios_loop), args.repeats, device)
        gap = float((step(lipschitz_ratios) - step(lipschitz_ratios_loop)).detach().abs().max())
        print(
            f"   {label:>15}: batched {batched * 1e3:7.1f} ms, loop {looped * 1e3:7.1f} ms: "
            f"loop / batched = {looped / batched:5.2f} (largest difference {gap:.1e})"
        )

    print(f"\n4. Speed-up over retraining from scratch (target >= {TARGET_SPEEDUP:.0f}x)")
    scratch = fk.get_method("retrain", train_config=TRAIN, model_config=config)
    met_all = True
    for name, task in jobs.items():
        retrain = scratch.unlearn(model, task.forget_set, task.retain_set, device=device).seconds
        method = fk.get_method("jit", **JIT[name])
        t = best_of(lambda m=method, f=task.forget_set: m.unlearn(model, f, device=device),
                    args.repeats, device)  # fmt: skip
        ratio = retrain / t
        met = ratio >= TARGET_SPEEDUP
        met_all &= met
        print(f"   {name:>8} ({len(task.forget):>4} forgotten): JiT {t * 1e3:7.1f} ms, retrain "
              f"{retrain:6.2f} s: {ratio:7.1f}x  {'met' if met else 'not met'}")  # fmt: skip
    print(f"   target >= {TARGET_SPEEDUP:.0f}x on every ci task: {'met' if met_all else 'not met'}")


if __name__ == "__main__":
    main()
