"""Benchmark L-CODEC: CODEC/FOCI against the direct implementation, the cost of selection
and of the update against model size and perturbations, and a removal against retraining.

1. **CODEC, vectorised vs direct.** The coefficients of the same candidate units, at the
   same number of perturbations (samples), by :func:`forgetkit.codec.codec_all` (batched
   over candidates and samples), by a loop over candidates calling the torch
   :func:`~forgetkit.codec.codec` once each (the official code's structure), and by
   :func:`~forgetkit.codec.codec_reference` (the definition, in plain Python). The direct
   implementation is so slow that it is timed on ``--direct-candidates`` candidates only;
   the ratio compares the same candidates. Both the unconditional coefficient (FOCI's first
   step) and the conditional one given two units (a later step) are timed. Target: at least
   20 times faster than the direct implementation at 1,000 perturbations.
2. **Selection and update time** per removal, for MNIST networks of growing size and for
   several numbers of perturbations (FOCI selection; one removal request each).
3. **A removal against retraining** from scratch on the remaining data, same recipe.

Usage::

    FORGETKIT_DATA=/path/to/data OMP_NUM_THREADS=1 python scripts/bench_lcodec.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from forgetkit.codec import codec, codec_all, codec_reference
from forgetkit.data import Samples, data_dir, load_dataset
from forgetkit.methods import LCodec
from forgetkit.models import ModelConfig
from forgetkit.runtime import best_of
from forgetkit.train import TrainConfig, train_model

MODELS = {
    "logistic (7,850 params)": ModelConfig("logistic", (1, 28, 28), 10),
    "2-layer 784-100-10 (79,510)": ModelConfig("mlp", (1, 28, 28), 10, {"hidden": (100,)}),
    "784-400-400-10 (478,410)": ModelConfig("mlp", (1, 28, 28), 10, {"hidden": (400, 400)}),
    "small_cnn": ModelConfig("small_cnn", (1, 28, 28), 10),
}


def bench_codec(n: int, units: int, direct_k: int, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, units, generator=gen)
    y = z[:, 0] + z[:, 1] ** 2 + 0.5 * torch.randn(n, generator=gen)
    x = z[:, :2]
    print(f"\n== CODEC at {n} perturbations, {units} candidate units "
          f"(direct: {direct_k} candidates) ==")  # fmt: skip
    for label, given in (("unconditional T_n(Y, Z_j)", None), ("conditional T_n(Y, Z_j | 2)", x)):
        sub = z[:, 2 : 2 + direct_k]
        t_all = best_of(lambda g=given: codec_all(y, z, g, jitter=0), repeats)
        t_vec = best_of(lambda g=given, s=sub: codec_all(y, s, g, jitter=0), repeats)
        t_loop = best_of(lambda g=given, s=sub: [codec(y, s[:, j], g, jitter=0)
                                               for j in range(s.shape[1])], repeats)  # fmt: skip
        start = time.perf_counter()
        ref = [codec_reference(y.numpy(), sub[:, j].numpy(), None if given is None
                               else given.numpy()) for j in range(sub.shape[1])]  # fmt: skip
        t_ref = time.perf_counter() - start
        fast = codec_all(y, sub, given, jitter=0).tolist()
        err = max(abs(a - b) for a, b in zip(fast, ref, strict=True))
        ratio = t_ref / t_vec
        print(f"{label}: vectorised {t_vec * 1e3:.1f} ms, per-candidate torch loop "
              f"{t_loop * 1e3:.1f} ms, direct {t_ref:.2f} s for {direct_k} candidates "
              f"(max difference {err:.1e}); all {units} candidates vectorised "
              f"{t_all * 1e3:.0f} ms")  # fmt: skip
        met = "met" if ratio >= 20 else "NOT met"
        print(f"  speed-up vs direct: {ratio:.0f}x (target >= 20x: {met}); "
              f"vs the per-candidate loop: {t_loop / t_vec:.1f}x")  # fmt: skip


def _mnist(n_train: int) -> tuple[Samples, Samples]:
    if data_dir() is not None:
        data = load_dataset("mnist").subsample(n_train, 1000, seed=0)
        return data.train, data.test
    gen = torch.Generator().manual_seed(0)
    make = lambda n: Samples(torch.randn(n, 1, 28, 28, generator=gen),  # noqa: E731
                             torch.randint(0, 10, (n,), generator=gen))  # fmt: skip
    return make(n_train), make(1000)


def bench_method(models: list[str], perturbations: list[int], n_train: int, epochs: int) -> None:
    train, val = _mnist(n_train)
    recipe = TrainConfig(epochs=epochs, lr=0.1, momentum=0.0, weight_decay=0.01, batch_size=256)
    print(f"\n== one removal (FOCI), MNIST {n_train} training images, {epochs} epochs ==")
    print(f"{'model':30s} {'perturb.':>8s} {'units':>6s} {'chosen':>6s} {'select s':>9s} "
          f"{'update s':>9s} {'retrain s':>9s} {'retrain/removal':>16s}")  # fmt: skip
    for name in models:
        cfg = MODELS[name]
        trained = train_model(cfg, train, recipe, hooks=LCodec().training_hooks(), cache=False)
        start = time.perf_counter()
        train_model(cfg, train.subset(range(1, n_train)), recipe, cache=False, seed=1)
        retrain_s = time.perf_counter() - start
        for m in perturbations:
            method = LCodec(n_perturbations=m, val_gap_skip=1.0)
            result = method.unlearn(trained, train.subset([0]), validation=val)
            e = result.details["removals"][0]
            print(f"{name:30s} {m:8d} {result.details['units_total']:6d} {e['n_units']:6d} "
                  f"{e['selection_seconds']:9.3f} {e['update_seconds']:9.3f} {retrain_s:9.2f} "
                  f"{retrain_s / result.seconds:15.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grid (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--direct-candidates", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    if args.quick:
        bench_codec(300, 110, 2, 1)
        bench_method(list(MODELS)[:2], [100, 300], 2000, 3)
        return
    bench_codec(1000, 110, args.direct_candidates, args.repeats)
    bench_method(list(MODELS)[:2], [100, 300, 1000], 10000, 5)
    bench_method(list(MODELS)[2:], [100, 300], 10000, 5)


if __name__ == "__main__":
    main()
