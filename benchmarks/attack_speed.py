"""Time our PGD-10 against torchattacks' PGD-10 on the same model and batch.

Both attacks run on the same pre-activation ResNet-20 (``create_model
("preact_resnet20")`` when the zoo has it, else the inline definition below,
same architecture), the same batch, in eval mode, with warm-up; repeats are
interleaved with alternating order (ours-theirs, theirs-ours, …) so drift hits both alike, and the median
wall time per attack call is reported. Writes
``benchmarks/results/attack_speed.json`` with the ratio ours/theirs (< 1:
ours is faster) and provenance.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attack_speed.py            # CPU, batch 128
    .venv/bin/python benchmarks/attack_speed.py --device cuda --batch-size 512
    .venv/bin/python benchmarks/attack_speed.py --batch-size 8 --repeats 2 --out /tmp/a.json  # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustdial.attacks import PGD
from robustdial.evaluation import provenance

ROOT = Path(__file__).resolve().parents[1]


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                      if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        sc = self.short(out) if self.short is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet20(nn.Module):
    """CIFAR pre-activation ResNet-20 (3 stages × 3 blocks, widths 16/32/64)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                blocks.append(_PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_model() -> tuple[nn.Module, str]:
    try:
        import robustdial

        return robustdial.create_model("preact_resnet20"), "robustdial preact_resnet20"
    except Exception:  # noqa: BLE001 - the zoo may not have it; fall back to the inline twin
        return PreActResNet20(), "inline PreActResNet20"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attack_speed.json")
    args = p.parse_args(argv)

    try:
        import torchattacks
    except ImportError as e:
        sys.exit(f"torchattacks is needed for the comparison: pip install -e \".[dev]\" ({e})")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, model_name = build_model()
    model = model.to(device).eval()
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    eps, alpha = 8 / 255, 2 / 255

    ours = PGD(eps=eps, alpha=alpha, steps=args.steps, random_start=True)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=args.steps, random_start=True)
    run = {"ours": lambda: ours(model, x, y), "torchattacks": lambda: theirs(x, y)}

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for _ in range(args.warmup):
        for fn in run.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in run}
    order = list(run)
    for r in range(args.repeats):
        for k in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
            times[k].append(_time(run[k], device))

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "attack_speed",
        "what": f"PGD-{args.steps} L∞ (ε=8/255, α=2/255, random start), one call on one batch",
        "model": model_name,
        "batch_size": args.batch_size,
        "input_shape": [3, 32, 32],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seconds_median": med,
        "seconds_min": {k: min(v) for k, v in times.items()},
        "seconds_all": times,
        "ratio_ours_over_torchattacks": med["ours"] / med["torchattacks"],
        "torchattacks_version": getattr(torchattacks, "__version__", None),
        # other processes share the CPU: the 1-minute load average before and after
        "load_average": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "provenance": provenance(device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ours {med['ours']:.4f}s  torchattacks {med['torchattacks']:.4f}s  "
          f"ratio {result['ratio_ours_over_torchattacks']:.3f}  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
