"""Training-time ratio: slimmable (OATS / FLOAT slim / PGD-ATS) ÷ the same method without widths.

Times ``--steps`` optimizer steps (after warm-up) of each slimmable method and of
its fixed-width counterpart (OAT, FLOAT, PGD-AT) on random CIFAR-shaped
batches; the FLOAT paper reports slimmable FLOAT training up to 1.90× faster
than OAT slim (Sec. 4.4). Writes JSON with provenance to
``benchmarks/results/slim_training_ratio.json``.

Usage::

    .venv/bin/python benchmarks/slim_training_ratio.py --device cuda --model resnet34   # GPU, ≈ 3 min
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/slim_training_ratio.py                # CPU preact_resnet20, ≈ 5 min
    .venv/bin/python benchmarks/slim_training_ratio.py --quick --out /tmp/s.json        # smoke
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.evaluation._provenance import provenance
from robustdial.methods import build_method

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("oats", "oat", "oat", {"lam_values": (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)}),
         ("float_slim", "float", "float", {}), ("pgd_ats", "pgd_at", None, {})]


def _steps(model, method, x, y, steps, device) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = method.loss(model, (x, y))
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="preact_resnet20")
    ap.add_argument("--widths", default="0.5,1.0")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--pgd-steps", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "slim_training_ratio.json"))
    args = ap.parse_args()
    if args.quick:
        args.batch_size, args.steps, args.pgd_steps = 8, 1, 1
    device = torch.device(args.device)
    widths = tuple(float(w) for w in args.widths.split(","))
    attack = {"name": "pgd", "eps": 8 / 255, "alpha": 2 / 255, "steps": args.pgd_steps}
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    rows = []
    for slim_name, base_name, cond, kw in PAIRS:
        opts = {"lam_values": kw["lam_values"]} if cond == "oat" else {}
        slim_model = rd.create_model(args.model, conditioning=cond, widths=widths, **opts).to(device)
        base_model = rd.create_model(args.model, conditioning=cond, **opts).to(device)
        t_slim = _steps(slim_model, build_method(slim_name, widths=widths, attack=attack, **kw), x, y,
                        args.steps, device)
        t_base = _steps(base_model, build_method(base_name, attack=attack, **kw), x, y, args.steps,
                        device)
        rows.append({"slimmable": slim_name, "base": base_name, "s_per_step_slim": t_slim,
                     "s_per_step_base": t_base, "ratio": t_slim / t_base})
        print(json.dumps(rows[-1]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "slim_training_ratio", "args": vars(args), "rows": rows,
                               "provenance": provenance(device)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
