"""Cost of a PGD-k adversarial training step relative to a plain training step, through ``fit``.

Cost model: a plain step is forward + full backward ≈ 3 units; each PGD step is
forward + input-only backward ≈ 2 units; so PGD-k AT (λ = 1, no clean forward)
ideally costs ``(2k + 3)/3`` plain steps. Efficiency = ideal / measured
(target ≥ 0.9; > 1 means the input-only backward is cheaper than 2 units).

Both are timed in one process with :func:`robustdial.engine.fit` (``Standard``
vs ``PGDAT(lam=1)``), a fixed number of iterations on random data of the
dataset's shape, after a warm-up fit; the configurations are interleaved over
``--repeats`` rounds (plain, PGD-3, PGD-7, plain, …) so machine drift hits all
alike, and the median time per step is reported. Models: SmallCNN on
MNIST-shaped 1×28×28, pre-activation ResNet-20 on CIFAR-shaped 3×32×32.
Writes ``benchmarks/results/adv_epoch_ratio.json`` with provenance.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adv_epoch_ratio.py            # CPU, ~3 min
    .venv/bin/python benchmarks/adv_epoch_ratio.py --device cuda --batch-size 512 --iters 50
    .venv/bin/python benchmarks/adv_epoch_ratio.py --iters 2 --repeats 1 --out /tmp/r.json  # smoke
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from robustdial.data import ImageData
from robustdial.engine import FitConfig, fit
from robustdial.evaluation import provenance
from robustdial.methods import PGDAT, Standard
from robustdial.models import create_model

ROOT = Path(__file__).resolve().parents[1]

# (label, model name, options, image shape C,H,W, ε on the [0, 1] scale)
SETUPS = (
    ("small_cnn/mnist-shape", "small_cnn", {"in_channels": 1}, (1, 28, 28), 0.3),
    ("preact_resnet20/cifar-shape", "preact_resnet20", {"in_channels": 3}, (3, 32, 32), 8 / 255),
)


def _data(shape: tuple[int, int, int], n: int, seed: int) -> ImageData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return ImageData(images=images, labels=labels, name="random", split="train",
                     classes=tuple(str(i) for i in range(10)))


def _time_fit(model, method, data, iters: int, batch_size: int, device: str) -> float:
    cfg = FitConfig(iterations=iters, batch_size=batch_size, lr=0.01, schedule="constant",
                    device=device, augment="none", select="last", log_every=max(iters, 1),
                    progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit(model, method, data=(data, None), config=cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def measure(name: str, options: dict, shape: tuple[int, int, int], eps: float, ks: list[int],
            iters: int, warmup: int, repeats: int, batch_size: int, device: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **options)
    data = _data(shape, batch_size * (iters + warmup + 1), seed=0)
    methods = {"plain": Standard()}
    for k in ks:
        methods[f"pgd-{k}"] = PGDAT(lam=1.0, attack={"name": "pgd", "eps": eps,
                                                     "alpha": 2.5 * eps / k, "steps": k})
    for method in methods.values():  # warm-up: allocator, kernels, first-call costs
        _time_fit(model, method, data, warmup, batch_size, device)
    times: dict[str, list[float]] = {key: [] for key in methods}
    for r in range(repeats):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for key in order:
            times[key].append(_time_fit(model, methods[key], data, iters, batch_size, device))
    plain = statistics.median(times["plain"])
    out = {"model": name, "input_shape": list(shape), "eps": eps, "batch_size": batch_size,
           "seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
           "all_seconds_per_step": times, "ratios": {}}
    for k in ks:
        measured = statistics.median(times[f"pgd-{k}"]) / plain
        ideal = (2 * k + 3) / 3
        out["ratios"][f"pgd-{k}"] = {"measured": measured, "ideal": ideal,
                                     "efficiency": ideal / measured}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=4, help="timed steps per fit")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per configuration")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--k", type=int, nargs="+", default=[3, 7], help="PGD steps to compare")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/adv_epoch_ratio.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    results = []
    for label, name, options, shape, eps in SETUPS:
        res = measure(name, options, shape, eps, args.k, args.iters, args.warmup, args.repeats,
                      args.batch_size, args.device)
        res["label"] = label
        results.append(res)
        for key, r in res["ratios"].items():
            print(f"{label:30s} {key}: measured {r['measured']:.2f}x plain, ideal {r['ideal']:.2f}x, "
                  f"efficiency {r['efficiency']:.2f}")
    summary = {"benchmark": "adversarial step / plain step through fit()",
               "cost_model": "plain = fwd+bwd = 3 units; PGD step = fwd+input-bwd = 2 units; "
                             "ideal PGD-k AT = (2k+3)/3",
               "settings": vars(args), "results": results,
               "min_efficiency": min(r["efficiency"] for res in results for r in res["ratios"].values()),
               "wall_seconds": time.perf_counter() - t0, "provenance": provenance(args.device)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"min efficiency {summary['min_efficiency']:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
