"""Benchmark the diagonal Fisher: the official loop, the vmapped path and the per-layer path.

Every model of :mod:`forgetkit.models` runs at the size a chapter (or the paper setting it
replicates) uses, on the same weights and inputs, in a fresh subprocess per model and
thread count. There the methods run in turn, each warmed up on two samples first, and
each one's peak memory is measured from a clean start (freed heap handed back with
``malloc_trim``; on the CPU the peak resident set, VmHWM, above the resident set at the
start; on a GPU ``torch.cuda.max_memory_allocated``):

* ``loop``: :func:`~forgetkit.fisher.fisher_diagonal_loop`, the official structure (one
  sample and one class per backward pass);
* ``vmap``: :func:`~forgetkit.fisher.fisher_diagonal` with ``path="vmap"`` (automatic batch);
* ``default``: :func:`~forgetkit.fisher.fisher_diagonal` with every default, as
  ``FisherForgetting`` calls it (the per-layer path on all these models);
* ``mc``: ``kind="mc"`` with one label draw per sample, five seeds: its time (best draw),
  and its error against the exact value (mean over the seeds of the relative L1 error,
  and the spread of the estimated total Fisher).

The table gives the best of ``--repeats`` wall-clock times, the speed-up over the loop, the
peak memory and the largest difference from the ground truth, the loop in float64
(relative to each parameter's largest Fisher entry). Each thread count in ``--threads`` is
run in turn; the targets (never slower than the loop; at least 3 times faster for the
ResNet and the All-CNN on a CPU, 30 times on a GPU) are printed as met or not met.

Usage::

    FORGETKIT_DATA=/path/to/data python scripts/bench_fisher.py --threads 1 2 \\
        [--device cpu] [--save book/results/fisher_benchmark.json]

MNIST and CIFAR-10 images are used when ``FORGETKIT_DATA`` holds them (each model is then
trained for ``--train-epochs`` on ``--train-size`` images, so that its predictions are
confident as after real training); otherwise random inputs and labels. ``--save`` stores
the rows with their provenance (:mod:`forgetkit.provenance`) for the book.
"""

from __future__ import annotations

import argparse
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
from forgetkit.runtime import Stopwatch, resolve_device
from forgetkit.train import TrainConfig, fit

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
MODELS = {  # name: (config, dataset, where the size comes from)
    "logistic": (ModelConfig("logistic", MNIST, 10), "mnist", "Reproducing"),
    "mlp-128-64": (
        ModelConfig("mlp", MNIST, 10, {"hidden": (128, 64)}),
        "mnist",
        "Eternal Sunshine",
    ),
    "mlp-1000-sigmoid": (
        ModelConfig("mlp", MNIST, 10, {"hidden": 1000, "activation": "sigmoid"}),
        "mnist",
        "mnemonic code",
    ),
    "small_cnn": (ModelConfig("small_cnn", MNIST, 10), "mnist", "Eternal Sunshine"),
    "allcnn-0.25": (
        ModelConfig("allcnn", CIFAR, 5, {"width": 0.25}),
        "cifar10-jpeg15k",
        "small CIFAR-5, quarter width",
    ),
    "resnet18-0.4": (
        ModelConfig("resnet18", CIFAR, 5, {"width": 0.4}),
        "cifar10-jpeg15k",
        "Eternal Sunshine paper",
    ),
    "vgg_small-0.5": (
        ModelConfig("vgg_small", CIFAR, 10, {"width": 0.5}),
        "cifar10-jpeg15k",
        "CIFAR-10, half width",
    ),
}
METHODS = ("loop", "vmap", "default", "mc")
REFERENCE = "loop-float64"  # the ground truth the errors are measured against
MC_SEEDS = 5
FAST_TARGET = {"allcnn": 3.0, "resnet18": 3.0}  # CPU; on a GPU every model: 30


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


def _trim() -> None:
    """Hand freed heap memory back to the system, so that the next peak starts clean."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _runs(method: str, model, samples: Samples) -> list:
    if method == "vmap":
        return [lambda: fisher_diagonal(model, samples, path="vmap")]
    if method == "default":
        return [lambda: fisher_diagonal(model, samples)]
    if method == "mc":
        return [
            lambda seed=seed: fisher_diagonal(
                model, samples, kind="mc", generator=torch.Generator().manual_seed(seed)
            )
            for seed in range(MC_SEEDS)
        ]
    return [lambda: fisher_diagonal_loop(model, samples)]


def _child(args: argparse.Namespace) -> None:
    """Run the methods in this fresh process, one after the other, each warmed up on two
    samples first (kernel selection, allocator), then timed; write times, memory, Fisher."""
    torch.set_num_threads(args.threads)
    blob = torch.load(args.child_input, weights_only=False)
    device = resolve_device(args.device)
    config = ModelConfig(**blob["config"])
    model = build_model(config).to(device)
    model.load_state_dict(blob["state"])
    samples = Samples(blob["x"], blob["y"]).to(device)
    if args.method == REFERENCE:
        model, samples = model.double(), Samples(samples.x.double(), samples.y)
    results = {}
    for method in args.method.split(","):
        _runs(method if method != REFERENCE else "loop", model, samples.subset(range(2)))[0]()
        repeats = 1 if method in ("mc", REFERENCE) else args.repeats
        repeats = args.loop_repeats if method == "loop" else repeats
        runs = _runs(method if method != REFERENCE else "loop", model, samples) * repeats
        _trim()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            start_mem = torch.cuda.memory_allocated(device)
        else:
            _reset_peak_rss()
            start_mem = _status_bytes("VmRSS")
        times, fishers = [], []
        for run in runs:
            with Stopwatch(device) as watch:
                fisher = run()
            times.append(watch.seconds)
            fishers.append({k: v.cpu() for k, v in fisher.items()})
            del fisher
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - start_mem
        else:
            peak = _status_bytes("VmHWM") - start_mem
        keep = fishers if method == "mc" else fishers[:1]
        results[method] = {"times": times, "peak": max(peak, 0), "fishers": keep}
        del fishers, runs
    torch.save(results, args.child_output)


def _load_images(dataset: str, config: ModelConfig, n: int, train_size: int, seed: int):
    """``(train, test)`` samples of the model's classes, or ``None`` without offline data."""
    files = {"mnist": "mnist.npz", "cifar10-jpeg15k": "cifar10_jpeg_15k.npz"}
    if data_dir() is None or not (data_dir() / files[dataset]).exists():
        return None
    data = load_dataset(dataset)

    def take(part: Samples, count: int) -> Samples:
        keep = torch.nonzero(part.y < config.num_classes).flatten()
        g = torch.Generator().manual_seed(seed)
        return part.subset(keep[torch.randperm(len(keep), generator=g)[:count]])

    return take(data.train, train_size), take(data.test, n)


def _prepare(name: str, n: int, train_epochs: int, train_size: int, seed: int = 0) -> dict:
    config, dataset, _ = MODELS[name]
    model = build_model(config, seed=seed)
    images = _load_images(dataset, config, n, train_size, seed)
    if images is not None:
        train, test = images
        source = dataset
        if train_epochs > 0:
            fit(
                model,
                train,
                TrainConfig(epochs=train_epochs, lr=0.05, batch_size=64),
                seed=seed,
                device="cpu",
            )
            source += f", model trained {train_epochs} epoch(s) on {len(train):,} images"
        x, y = test.x, test.y
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *config.in_shape, generator=g)
        y = torch.randint(0, config.num_classes, (n,), generator=g)
        source = "random inputs (no offline data), untrained model"
    return {
        "config": config.as_dict(),
        "state": model.state_dict(),
        "x": x,
        "y": y,
        "source": source,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _run_child(args, method: str, inp: Path, out: Path, threads: int, repeats: int) -> dict:
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
        "--threads",
        str(threads),
    ]
    subprocess.run(cmd, check=True)
    return torch.load(out, weights_only=False)


def _rel_max_err(fisher: dict, reference: dict) -> float:
    """Largest difference, relative to each parameter's largest reference entry."""
    return max(
        float((fisher[k].double() - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)
        for k, ref in reference.items()
    )


def _mc_errors(draws: list[dict], reference: dict) -> tuple[float, float]:
    """Mean relative L1 error of the estimates, and the relative spread of their totals."""
    flat = torch.cat([v.flatten() for v in reference.values()])
    errs, totals = [], []
    for d in draws:
        est = torch.cat([d[k].double().flatten() for k in reference])
        errs.append(float((est - flat).abs().sum() / flat.abs().sum()))
        totals.append(float(est.sum() / flat.sum()))
    return sum(errs) / len(errs), float(torch.tensor(totals).std())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each fast method")
    parser.add_argument("--loop-repeats", type=int, default=1)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest relative error (against the float64 loop) allowed for the exact "
        "paths; float32 convolution kernels differ from one another at about 1e-5",
    )
    parser.add_argument("--save", type=Path, default=None, help="store rows and provenance")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--child-input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        _child(args)
        return
    device = resolve_device(args.device)  # fail early on a missing GPU
    started, load_start = time.perf_counter(), os.getloadavg()
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"{os.cpu_count()} CPU(s), load average {load_start[0]:.1f} at the start, "
        f"{args.samples} samples; CUDA available: {torch.cuda.is_available()}"
    )
    torch.set_num_threads(max(args.threads))
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            blob = _prepare(name, args.samples, args.train_epochs, args.train_size)
            inp, out = Path(tmp) / f"{name}.pt", Path(tmp) / "out.pt"
            torch.save(blob, inp)
            print(f"\n{name}: {blob['params']:,} parameters, {blob['source']}", flush=True)
            truth = _run_child(args, REFERENCE, inp, out, max(args.threads), 1)
            truth = truth[REFERENCE]["fishers"][0]
            for threads in args.threads:
                methods = ["loop", *(m for m in args.methods if m != "loop")]
                results = _run_child(args, ",".join(methods), inp, out, threads, args.repeats)
                loop_s = min(results["loop"]["times"])
                for method, res in results.items():
                    seconds = min(res["times"])
                    row = {
                        "model": name,
                        "architecture": MODELS[name][0].name,
                        "size_from": MODELS[name][2],
                        "params": blob["params"],
                        "method": method,
                        "threads": threads,
                        "device": device.type,
                        "samples": len(blob["x"]),
                        "seconds": seconds,
                        "speedup": loop_s / seconds,
                        "peak_mib": res["peak"] / 2**20,
                        "max_rel_err": _rel_max_err(res["fishers"][0], truth),
                        "mc_rel_l1": float("nan"),
                        "mc_total_sd": float("nan"),
                        "load_average": os.getloadavg()[0],
                    }
                    if method == "mc":
                        row["mc_rel_l1"], row["mc_total_sd"] = _mc_errors(res["fishers"], truth)
                        row["max_rel_err"] = float("nan")  # an estimate: see its L1 error
                    elif method != "loop" and row["max_rel_err"] > args.tolerance:
                        failures.append(row)
                    rows.append(row)
                print(
                    f"  {threads} thread(s): "
                    + ", ".join(f"{m} {min(r['times']):.2f} s" for m, r in results.items()),
                    flush=True,
                )
    _report(rows, device.type)
    if args.save is not None:
        _save(args, rows, time.perf_counter() - started, load_start)
    if failures:
        raise SystemExit(
            f"an exact path differs from the float64 loop beyond {args.tolerance}: "
            f"{[(f['model'], f['method'], f['max_rel_err']) for f in failures]}"
        )
    print(f"\nEvery exact result is within a relative {args.tolerance:g} of the float64 loop.")


def _target(row: dict, device: str) -> float:
    if device != "cpu":
        return 30.0
    return FAST_TARGET.get(row["architecture"], 1.0)


def _report(rows: list[dict], device: str) -> None:
    header = (
        f"{'model':<17} {'thr':>3} {'method':<8} {'seconds':>8} {'vs loop':>8} "
        f"{'peak MiB':>9} {'rel err':>9} {'MC L1 err':>9}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        mc = f"{r['mc_rel_l1']:>9.3f}" if r["method"] == "mc" else f"{'':>9}"
        print(
            f"{r['model']:<17} {r['threads']:>3} {r['method']:<8} {r['seconds']:>8.3f} "
            f"{r['speedup']:>7.1f}x {r['peak_mib']:>9.1f} {r['max_rel_err']:>9.1e} {mc}"
        )
    print("\nTargets for the default path (speed-up over the loop):")
    for r in rows:
        if r["method"] != "default":
            continue
        target = _target(r, device)
        verdict = "met" if r["speedup"] >= target else "NOT MET"
        print(
            f"  {r['model']:<17} {r['threads']} thread(s): {r['speedup']:6.1f}x "
            f"(target >= {target:g}x): {verdict}"
        )
    if device == "cpu":
        print("  GPU (target >= 30x): not run, no CUDA device here")


def _save(args, rows: list[dict], seconds: float, load_start: tuple) -> None:
    import pandas as pd

    from forgetkit.provenance import Provenance, save_results

    provenance = Provenance.collect(
        "benchmark",
        args.device,
        0,
        seconds,
        command="python scripts/bench_fisher.py " + " ".join(sys.argv[1:]),
        threads_run=list(args.threads),
        cpu_count=os.cpu_count(),
        load_average_start=list(load_start),
        load_average_end=list(os.getloadavg()),
        samples=args.samples,
        train_epochs=args.train_epochs,
        train_size=args.train_size,
        cuda_available=torch.cuda.is_available(),
    )
    path = save_results(args.save, pd.DataFrame(rows), provenance)
    print(f"saved {len(rows)} rows to {path}: {provenance.describe()}")


if __name__ == "__main__":
    main()
