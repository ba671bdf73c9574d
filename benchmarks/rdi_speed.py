"""RDI-Nets speed: does adaptive inference save the wall-clock time its MAC count promises?

1. Inference: the authors' RDI-ResNet-38 (paper thresholds) on CIFAR-10 test
   images. ``measured saving = 1 − t_adaptive / t_full`` (``t_full`` = the
   backbone, final exit only, no branches), ``counted saving = 1 − E[MACs] /
   MACs_backbone`` (conv MACs, RDI convention); the ratio measured ÷ counted
   (target ≥ 0.8) says how much of the counted saving the vectorised
   early exit (:func:`robustdial.models.early_exit.adaptive_forward`)
   delivers. The RDI convention does not count the branch heads a sample
   passes through before it exits (ResNet-38's two stage-1 heads cost 7.4
   MFlops each), so the saving in conv MACs *actually executed* by adaptive
   inference (``exit_macs("executed")``: earlier heads included; a test checks
   it against hook counts) is given too, with ``measured ÷ executed``: that
   ratio measures the implementation, the other the convention.
   Inference variants are timed round-robin, minimum over the rounds after a warm-up.
2. Training: seconds per step of RDI (each defence, PGD-``k``) ÷ PGD-AT
   (same PGD-``k``, final head only) on the same model and batch.

Usage: ``python benchmarks/rdi_speed.py [--quick] [--device cuda]``. Writes
``benchmarks/results/rdi_speed.json``. CPU timings on a shared machine are
noisy; the threads used are recorded.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustdial.attacks import PGD
from robustdial.condition import conditioned
from robustdial.cost.early_exit import exit_costs_mflops, expected_cost
from robustdial.data import load_dataset
from robustdial.engine import load
from robustdial.evaluation._provenance import provenance
from robustdial.methods.pgd_at import PGDAT
from robustdial.methods.rdi import RDI
from robustdial.models.convert import convert_rdi_checkpoint
from robustdial.models.early_exit import adaptive_forward

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "rdi-resnet38-cifar10" / "checkpoint_60000.pth.tar"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def _time_round_robin(fns: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Minimum seconds of each ``fns[k]()``, timed round-robin (one call of each per round).

    Interleaving, with the order rotated every round, exposes every variant to
    the same load, so the savings (ratios) stay meaningful on a shared CPU.
    """
    keys = list(fns)
    for k in keys:  # warm-up
        fns[k]()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(repeats):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def measure_inference(model: torch.nn.Module, x: torch.Tensor, device: torch.device,
                      repeats: int) -> dict:
    """Time the backbone, adaptive inference and all exits on ``x``; savings and their ratios."""
    with torch.no_grad():
        _, idx = adaptive_forward(model, x)
        def via_dial():
            with conditioned(model, exit="adaptive"):
                return model(x)

        t = _time_round_robin({"full": lambda: model(x),  # exit=None: backbone + final head only
                               "adaptive": lambda: adaptive_forward(model, x),
                               "all": lambda: model.forward_exits(x), "dial": via_dial},
                              device, repeats)
        t_full, t_adapt, t_all, t_dial = t["full"], t["adaptive"], t["all"], t["dial"]
    counts = torch.bincount(idx.cpu(), minlength=model.num_exits).tolist()
    rdi_costs = exit_costs_mflops(model)
    cost = expected_cost(counts, rdi_costs)
    executed_saving = expected_cost(counts, exit_costs_mflops(model, "executed"),
                                    backbone_mflops=rdi_costs[-1], convention="executed")["saving"]
    measured = 1 - t_adapt / t_full
    return {
        "images": int(x.shape[0]), "seconds_full_backbone": t_full, "seconds_adaptive": t_adapt,
        "seconds_adaptive_via_dial": t_dial, "seconds_all_exits": t_all,
        "measured_saving": measured, "counted_saving": cost["saving"],
        "ratio_measured_over_counted": measured / cost["saving"],
        "executed_saving": executed_saving,
        "ratio_measured_over_executed": measured / executed_saving if executed_saving > 0 else None,
        "exit_counts": counts, "avg_mflops": cost["mflops"],
        "thresholds": [float(t) for t in model.exit_thresholds],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rdi_speed.json")
    p.add_argument("--smallcnn", type=Path, default=None,
                   help="also time a trained RDI-SmallCNN checkpoint on MNIST (e.g. "
                        "runs/rdi_mnist_table2/cpu_medium/average from rdi_mnist_table2.py)")
    p.add_argument("--parts", default="inference,training",
                   help="comma list of what to time: inference, training")
    args = p.parse_args()
    device = torch.device(args.device)
    n_inf, repeats = (256, 3) if args.quick else (1024, 8)
    train_bs, train_steps, pgd_k = (32, 2, 3) if args.quick else (128, 3, 10)

    model = convert_rdi_checkpoint(FIXTURE).to(device).eval()
    test = load_dataset("cifar10", root=args.data_root, split="test").subset(n_inf)
    x = (test.images.float() / 255).to(device)
    out = {"threads": torch.get_num_threads(), "quick": args.quick}
    if "inference" in args.parts:
        out["inference"] = {"model": "RDI-ResNet-38 (authors' weights, paper thresholds)",
                            "data": "cifar10 test", **measure_inference(model, x, device, repeats)}
        print(json.dumps({"inference": out["inference"]}, indent=1), flush=True)
    if args.smallcnn is not None and "inference" in args.parts:
        small = load(args.smallcnn, device=device).eval()
        mnist = load_dataset("mnist", root=args.data_root, split="test").subset(n_inf)
        xs = (mnist.images.float() / 255).to(device)
        for key, fmt in (("inference_smallcnn", torch.contiguous_format),
                         ("inference_smallcnn_channels_last", torch.channels_last)):
            small = small.to(memory_format=fmt)
            out[key] = {"model": f"RDI-SmallCNN from {args.smallcnn} (calibrated thresholds "
                                 f"stored in the checkpoint)", "data": "mnist test",
                        "memory_format": str(fmt),
                        **measure_inference(small, xs.contiguous(memory_format=fmt), device, repeats)}
            print(json.dumps({key: out[key]}, indent=1), flush=True)
    if "training" not in args.parts:
        out["provenance"] = provenance(device)
        _write(args.out, out)
        return

    # -- training --------------------------------------------------------------
    train = load_dataset("cifar10", root=args.data_root, split="test").subset(train_bs)
    xb, yb = (train.images.float() / 255).to(device), train.labels.to(device)
    attack = PGD(eps=8 / 255, alpha=2 / 255, steps=pgd_k)
    model.train()

    def step(method):
        def run():
            loss, _ = method.loss(model, (xb, yb))
            loss.backward()
            model.zero_grad(set_to_none=True)
        return run

    t_pgdat = _time(step(PGDAT(attack=attack)), device, train_steps)
    training = {"batch": train_bs, "pgd_steps": pgd_k, "seconds_per_step_pgd_at": t_pgdat}
    for d in ("main", "average", "max-average"):
        t = _time(step(RDI(d, attack=attack)), device, train_steps)
        training[f"seconds_per_step_rdi_{d}"] = t
        training[f"ratio_rdi_{d}_over_pgd_at"] = t / t_pgdat
    model.eval()

    out["training"] = training
    out["provenance"] = provenance(device)
    _write(args.out, out)
    print(json.dumps({"training": training}, indent=1))


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
