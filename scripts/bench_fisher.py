"""Benchmark the vectorised diagonal Fisher against the per-sample, per-class loop.

For each model, both computations run on the same weights and inputs, each in a fresh
subprocess so that its peak memory is its own (on the CPU the peak resident set, VmHWM,
above the resident set at the start; on a GPU ``torch.cuda.max_memory_allocated``). The
table gives the best of ``--repeats`` wall-clock times, the speed-up over the loop, the
peak memory, and the largest difference from the ground truth, the same loop in float64
(absolute, and relative to each parameter's largest Fisher entry). In float64 the two agree
to about 1e-15; in float32 either may be the closer to the truth, by model and kernel
(batched and batch-1 convolutions run different algorithms), at 1e-6 to 1e-4.

Usage::

    FORGETKIT_DATA=/path/to/data python scripts/bench_fisher.py [--device cpu] [--threads 1]

Real MNIST images are used when ``FORGETKIT_DATA`` holds them (the models are then trained
for ``--train-epochs`` on 2,000 images, so that their predictions are confident as after
real training); otherwise random inputs and labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from forgetkit.data import Samples, data_dir, load_dataset
from forgetkit.fisher import fisher_diagonal, fisher_diagonal_loop
from forgetkit.models import ModelConfig, build_model
from forgetkit.runtime import resolve_device, synchronize
from forgetkit.train import TrainConfig, fit

MODELS = {
    "small_cnn": ModelConfig("small_cnn", (1, 28, 28), 10),
    "allcnn-0.25": ModelConfig("allcnn", (1, 28, 28), 10, {"width": 0.25}),
    "mlp-1000-sigmoid": ModelConfig(
        "mlp", (1, 28, 28), 10, {"hidden": 1000, "activation": "sigmoid"}
    ),
}
METHODS = ("loop", "vectorised", "vectorised-no-shortcut")
REFERENCE = "loop-float64"  # the ground truth the errors are measured against


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset the peak-RSS counter (VmHWM) so that only what follows counts. Unlike
    ``ru_maxrss``, VmHWM is not inherited from the parent process across exec."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then VmHWM includes start-up; still an upper bound


def _child(args: argparse.Namespace) -> None:
    """Run one method in this fresh process and write its timings, memory and Fisher."""
    if args.threads:
        torch.set_num_threads(args.threads)
    blob = torch.load(args.child_input, weights_only=False)
    device = resolve_device(args.device)
    model = build_model(ModelConfig(**blob["config"])).to(device)
    model.load_state_dict(blob["state"])
    samples = Samples(blob["x"], blob["y"]).to(device)
    if args.method == REFERENCE:
        model, samples = model.double(), Samples(samples.x.double(), samples.y)
    if args.method in ("loop", REFERENCE):

        def run():
            return fisher_diagonal_loop(model, samples)
    else:
        shortcut = args.method == "vectorised"

        def run():
            return fisher_diagonal(
                model, samples, batch_size=args.batch_size, linear_shortcut=shortcut
            )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start_mem = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_rss()
        start_mem = _status_bytes("VmRSS")
    times, fisher = [], None
    for _ in range(args.repeats):
        synchronize(device)
        start = time.perf_counter()
        fisher = run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - start_mem
    else:
        peak = _status_bytes("VmHWM") - start_mem
    assert fisher is not None
    torch.save(
        {"times": times, "peak": max(peak, 0), "fisher": {k: v.cpu() for k, v in fisher.items()}},
        args.child_output,
    )


def _prepare(name: str, n: int, train_epochs: int, seed: int = 0) -> dict:
    config = MODELS[name]
    model = build_model(config, seed=seed)
    if data_dir() is not None and (data_dir() / "mnist.npz").exists():
        mnist = load_dataset("mnist")
        source = "MNIST"
        if train_epochs > 0:
            train = mnist.subsample(2000, None, seed=seed).train
            fit(
                model,
                train,
                TrainConfig(epochs=train_epochs, lr=0.05, batch_size=64),
                seed=seed,
                device="cpu",
            )
            source += f", model trained {train_epochs} epoch(s) on 2,000 images"
        test = mnist.test.subset(range(n))
        x, y = test.x, test.y
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *config.in_shape, generator=g)
        y = torch.randint(0, config.num_classes, (n,), generator=g)
        source = "random inputs (FORGETKIT_DATA has no MNIST), untrained model"
    return {
        "config": config.as_dict(),
        "state": model.state_dict(),
        "x": x,
        "y": y,
        "source": source,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _run_child(args, method: str, inp: Path, out: Path, repeats: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--method",
        method,
        "--device",
        args.device,
        "--child-input",
        str(inp),
        "--child-output",
        str(out),
        "--repeats",
        str(repeats),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads or 0),
    ]
    subprocess.run(cmd, check=True)
    return torch.load(out, weights_only=False)


def _errors(fisher: dict, reference: dict) -> tuple[float, float]:
    abs_err, rel_err = 0.0, 0.0
    for k, ref in reference.items():
        diff = float((fisher[k].double() - ref.double()).abs().max())
        abs_err = max(abs_err, diff)
        rel_err = max(rel_err, diff / max(float(ref.abs().max()), 1e-30))
    return abs_err, rel_err


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest relative error (against the float64 loop) allowed for the vectorised "
        "Fisher; float32 convolution kernels differ from one another at about 1e-5",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="vectorised", help=argparse.SUPPRESS)
    parser.add_argument("--child-input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    resolve_device(args.device)  # fail early on a missing GPU
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or torch.get_num_threads()
    print(
        f"torch {torch.__version__}, device {args.device}, {threads} thread(s), "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, "
        f"{args.samples} samples, batch size {args.batch_size}"
    )
    rows = []
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            blob = _prepare(name, args.samples, args.train_epochs)
            inp = Path(tmp) / f"{name}.pt"
            torch.save(blob, inp)
            print(f"\n{name}: {blob['params']:,} parameters, {blob['source']}")
            results = {}
            for method in ["loop", *(m for m in args.methods if m != "loop")]:
                repeats = args.loop_repeats if method == "loop" else args.repeats
                results[method] = _run_child(args, method, inp, Path(tmp) / "out.pt", repeats)
            truth = _run_child(args, REFERENCE, inp, Path(tmp) / "out.pt", 1)["fisher"]
            loop_s = min(results["loop"]["times"])
            for method, res in results.items():
                seconds = min(res["times"])
                abs_err, rel_err = _errors(res["fisher"], truth)
                row = {
                    "model": name,
                    "params": blob["params"],
                    "method": method,
                    "seconds": seconds,
                    "speedup": loop_s / seconds,
                    "peak_mib": res["peak"] / 2**20,
                    "max_abs_err": abs_err,
                    "max_rel_err": rel_err,
                    "threads": threads,
                    "device": args.device,
                    "samples": args.samples,
                }
                rows.append(row)
                if method != "loop" and rel_err > args.tolerance:
                    failures.append(row)
    header = (
        f"{'model':<18} {'method':<24} {'seconds':>9} {'speed-up':>9} {'peak MiB':>9} "
        f"{'max abs err':>12} {'max rel err':>12}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(
            f"{r['model']:<18} {r['method']:<24} {r['seconds']:>9.3f} {r['speedup']:>8.1f}x "
            f"{r['peak_mib']:>9.1f} {r['max_abs_err']:>12.2e} {r['max_rel_err']:>12.2e}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    if failures:
        raise SystemExit(
            f"the vectorised Fisher differs from the float64 loop beyond {args.tolerance}: "
            f"{[(f['model'], f['method'], f['max_rel_err']) for f in failures]}"
        )
    print(
        f"\nErrors are against the loop in float64. Every vectorised result is within a "
        f"relative {args.tolerance:g} of it."
    )


if __name__ == "__main__":
    main()
