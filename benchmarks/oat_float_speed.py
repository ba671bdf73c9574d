"""Training-step and inference cost of OAT and FLOAT relative to PGD-AT / the plain backbone.

FLOAT (Kundu et al., WACV 2023) Sec. 4.3 / Fig. 7: FLOAT trains as fast as PGD-AT
(no extra layers) while OAT's FiLM layers cost time; inference latency of a
FLOAT model at a fixed dial equals the backbone's. Targets: epoch time
FLOAT ÷ PGD-AT ≤ 1.05, OAT ÷ PGD-AT ≤ 1.15; latency FLOAT ÷ plain ≤ 1.10
(OAT reported).

Measures, on one backbone with the same PGD-k, batch and device:
* seconds per training step (median of ``--steps`` timed steps after warm-up;
  an epoch is a fixed number of steps, so the ratio equals the epoch-time ratio),
* inference latency per batch (median) at λ = 1 (FLOAT: fixed noise, eval mode;
  OAT: FiLM at λ = 1) and of the plain backbone.

The methods are timed round-robin (one step of each per round), so load that
drifts during the run hits all of them alike. Note what a step contains: PGD-AT
attacks the whole batch; FLOAT attacks its adversarial half (Algorithm 1), OAT
the λ ≠ 0 part — so at the same batch size FLOAT's epoch is *cheaper* than
PGD-AT's, which is what the ratio reports.
Writes ``benchmarks/results/oat_float_speed.json`` with provenance.

Usage::

    python benchmarks/oat_float_speed.py --model resnet34 --batch-size 128 --device cuda
    python benchmarks/oat_float_speed.py --quick          # CPU smoke test
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.attacks import PGD
from robustdial.engine import build_optimizer
from robustdial.evaluation import provenance
from robustdial.methods import PGDAT
from robustdial.methods.float import FLOAT
from robustdial.methods.oat import OAT

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model, method, opt, x, y) -> None:
    loss, _ = method.loss(model, (x, y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_round_robin(fns: dict, steps: int, warmup: int, device: torch.device) -> dict:
    """Median seconds of each ``fns[key]()``, timed round-robin (one call of each per round).

    Interleaving makes the ratios robust to load that drifts during the run;
    the order within a round rotates so no function always runs first.
    """
    keys = list(fns)
    times = {k: [] for k in keys}
    for i in range(warmup + steps):
        order = keys[i % len(keys):] + keys[:i % len(keys)]
        for k in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet34")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--steps", type=int, default=20, help="timed training / inference steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: preact_resnet20, tiny batch")
    p.add_argument("--out", default=str(RESULTS / "oat_float_speed.json"))
    args = p.parse_args()
    if args.quick:
        args.model, args.batch_size, args.steps, args.warmup, args.pgd_steps = "preact_resnet20", 16, 3, 1, 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
    eps = 8 / 255
    attack = PGD(eps=eps, alpha=2 / 255, steps=args.pgd_steps)
    mem = torch.channels_last if args.channels_last else torch.preserve_format
    if args.channels_last:
        x = x.contiguous(memory_format=mem)

    def build(cond):
        torch.manual_seed(0)
        return rd.create_model(args.model, conditioning=cond).to(device, memory_format=mem)

    setups = {"pgd_at": (None, PGDAT(lam=1.0, attack=attack)),
              "float": ("float", FLOAT(attack=attack)),
              "oat": ("oat", OAT(attack=attack, seed=0))}
    models, params, train_fns, infer_fns = {}, {}, {}, {}
    for key, (cond, method) in setups.items():
        model = build(cond).train()
        models[key], params[key] = model, sum(q.numel() for q in model.parameters())
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        train_fns[key] = (lambda m=model, me=method, o=opt: _train_step(m, me, o, x, y))
    train_s = time_round_robin(train_fns, args.steps, args.warmup, device)

    def infer(model):
        with torch.no_grad():
            model(x)

    for key, model in models.items():
        model.eval()
        if key != "pgd_at":
            rd.set_condition(model, lam=1.0)  # the dial stays set for the timed forwards
        infer_fns["plain" if key == "pgd_at" else key] = (lambda m=model: infer(m))
    infer_s = time_round_robin(infer_fns, args.steps, args.warmup, device)
    for key in setups:
        print(f"{key:7s} params {params[key]:>11,}  train {train_s[key] * 1e3:8.1f} ms/step  "
              f"infer {infer_s['plain' if key == 'pgd_at' else key] * 1e3:7.2f} ms/batch", flush=True)
    ratios = {
        "train_float_over_pgd_at": train_s["float"] / train_s["pgd_at"],
        "train_oat_over_pgd_at": train_s["oat"] / train_s["pgd_at"],
        "infer_float_over_plain": infer_s["float"] / infer_s["plain"],
        "infer_oat_over_plain": infer_s["oat"] / infer_s["plain"],
    }
    targets = {"train_float_over_pgd_at": 1.05, "train_oat_over_pgd_at": 1.15,
               "infer_float_over_plain": 1.10}
    verdict = {k: ratios[k] <= t for k, t in targets.items()}
    for k, v in ratios.items():
        t = targets.get(k)
        print(f"{k:26s} {v:6.3f}" + (f"  (target ≤ {t}: {'met' if verdict[k] else 'MISSED'})" if t else ""))
    out = {"settings": {**vars(args), "device": str(device), "eps": eps,
                        "attack": repr(attack), "inference_dial": {"lam": 1.0}},
           "params": params, "train_seconds_per_step": train_s,
           "inference_seconds_per_batch": infer_s, "ratios": ratios, "targets": targets,
           "targets_met": verdict, "provenance": provenance(device)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
