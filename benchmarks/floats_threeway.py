"""FLOATS slim / OATS three-way table (λ × width × density -> SA, RA, params, MACs, delay).

A small-scale reproduction of the three-way trade-off of FLOAT (Kundu et al.,
WACV 2023, Sec. 3.2, Table 1, Fig. 8) and OATS (Wang et al., NeurIPS 2020,
Fig. 6): a SmallCNN on Fashion-MNIST trained once per row group —

* FLOAT slim (widths {0.5, 1.0}, dense) and FLOATS slim (+ sparse momentum, d);
* OATS (widths {0.5, 1.0}, λ ∈ {0, 0.5, 1}).

Every trained model is evaluated at each (λ, width): clean accuracy (SA) and
PGD-20 accuracy (RA, L∞ ε = 0.1 on the [0, 1] scale, step 0.01, eval mode,
fixed FLOAT noise) on the first ``--test-samples`` test images, non-zero
parameters of the exported plain model at that width, density-effective MACs
(``robustdial.cost.count_macs``) and the FLOAT Eq. 7–9 conv delay. JSON with
provenance goes to ``benchmarks/results/floats_threeway.json``.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/floats_threeway.py            # full (≈ 40-60 min CPU)
    .venv/bin/python benchmarks/floats_threeway.py --quick --out /tmp/t.json    # smoke (≈ 1-2 min)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.attacks import PGD
from robustdial.compress import SparseMomentum
from robustdial.cost import count_macs, model_delay
from robustdial.evaluate.provenance import provenance
from robustdial.export import to_plain
from robustdial.methods import build_method

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (0.5, 1.0)


def _accuracy(model, data, dials, attack, batch):
    correct = robust = n = 0
    with rd.conditioned(model, **dials, noise="fixed"):
        for i in range(0, len(data), batch):
            x = data.images[i:i + batch].float() / 255
            y = data.labels[i:i + batch]
            with torch.no_grad():
                correct += int((model(x).argmax(1) == y).sum())
            x_adv = attack(model, x, y)
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == y).sum())
            n += len(y)
    return correct / n, robust / n


def _row(name, model, test, dials, attack, density, kind, args):
    sa, ra = _accuracy(model, test, dials, attack, args.batch_size)
    plain = to_plain(model, dials, input_shape=(1, 28, 28))
    nz = sum(int((p != 0).sum()) for p in plain.parameters())
    macs = count_macs(model, (1, 28, 28), dials=dials, density_effective=True)
    delay = model_delay(count_macs(model, (1, 28, 28), dials=dials).layers, kind=kind)
    return {"model": name, "density": density, **dials, "SA": sa, "RA": ra, "params_nonzero": nz,
            "macs_density_effective": macs.macs, "conv_delay_ns": delay.total_ns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-samples", type=int, default=20000)
    ap.add_argument("--test-samples", type=int, default=1000)
    ap.add_argument("--density", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "floats_threeway.json"))
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.train_samples, args.test_samples = 1, 512, 128
    torch.manual_seed(0)
    train = rd.load_dataset("fashion-mnist", root=args.data_dir, split="train").subset(args.train_samples)
    test = rd.load_dataset("fashion-mnist", root=args.data_dir, split="test").subset(args.test_samples)
    eps = 0.1
    train_attack = {"name": "pgd", "eps": eps, "alpha": eps / 4, "steps": 3 if args.quick else 7}
    eval_attack = PGD(eps=eps, alpha=0.01, steps=5 if args.quick else 20)
    cfg = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.05, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "cosine", "device": "cpu", "seed": 0}
    runs = [("float_slim", "float", 1.0, {}), ("floats_slim", "float", args.density, {}),
            ("oats", "oat", 1.0, {"lam_values": (0.0, 0.5, 1.0)})]
    rows, timings = [], {}
    for name, cond, density, kw in runs:
        opts = {"embed_dim": 8, "lam_values": (0.0, 0.5, 1.0)} if cond == "oat" else {}
        model = rd.create_model("small_cnn", in_channels=1, conditioning=cond, widths=WIDTHS, **opts)
        method = build_method("oats" if cond == "oat" else "float_slim", widths=WIDTHS,
                              attack=train_attack, **kw)
        transforms = [SparseMomentum(density, epochs=args.epochs)] if density < 1 else []
        t0 = time.perf_counter()
        rd.fit(model, method, (train, None), cfg, transforms=transforms)
        timings[name] = time.perf_counter() - t0
        model.eval()
        lams = (0.0, 0.5, 1.0) if cond == "oat" else (0.0, 0.2, 0.7, 1.0)
        for w in WIDTHS:
            for lam in lams:
                rows.append(_row(name, model, test, {"lam": lam, "width": w}, eval_attack, density,
                                 cond, args))
                print(json.dumps(rows[-1]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "floats_threeway", "dataset": "fashion-mnist",
                               "eval": f"PGD-{eval_attack.steps} Linf eps={eps} ([0,1] scale), "
                                       f"first {args.test_samples} test images, fixed noise",
                               "args": vars(args), "train_seconds": timings, "rows": rows,
                               "provenance": provenance()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
