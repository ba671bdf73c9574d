"""FLOATS on a CPU scale: FLOAT Table 1 (CR, CRF) and the λ × width × density table.

A small-scale reproduction of FLOAT's compressed variants (Kundu et al.,
WACV 2023, Sec. 3.2, Table 1, Fig. 8) and OATS (Wang et al., NeurIPS 2020,
Fig. 6) on Fashion-MNIST with SmallCNN (``batch_norm=True`` by default, so
FLOAT has its dual BN and the slimmable nets a switchable BN per width).
Trained once each, same seed and budget:

* Table 1: FLOAT (dense), FLOATS-i (sparse momentum, density ``--density-i``),
  FLOATS-c (channel pruning by input-channel F-norm to ``--density-c``),
  FLOATS slim (widths {0.5, 1.0} + sparse momentum at ``--density``),
  reported at SF 1.0 (FLOATS slim: SF 0.5, as the paper).
* Three-way table: FLOAT slim (dense), FLOATS slim and OATS (λ ∈ {0, .5, 1})
  at every (λ, width).

Each operating point reports clean (SA) and PGD-20 (RA, L∞ ε = 0.1 on the
[0, 1] scale, step 0.01, random start, eval mode, fixed FLOAT noise)
accuracy on the first ``--test-samples`` test images, and the cost of the
plain model exported at that point (:func:`robustdial.export.to_plain`):
non-zero weights, density-effective MACs (``robustdial.cost.count_macs``)
and the FLOAT Eq. 7–9 conv delay. The Table-1 columns are measured on the
export, not taken from the nominal density:

* ``CR``  = weights (conv + linear, dense full-width net) ÷ non-zero weights
  at the operating point (the paper: 1/d); ``CR_nominal`` = 1/d.
  ``CR_conv``: the same over conv weights only (SmallCNN's fc1 holds 2/3 of
  its weights, and channel pruning only touches convs).
* ``CRF`` = 100 ÷ (% of the full-width net's conv input channels that are
  present — not sliced away and not entirely zero — at the operating point).

JSON with provenance goes to ``benchmarks/results/floats_threeway.json``.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/floats_threeway.py          # ≈ 40-50 min, one core
    .venv/bin/python benchmarks/floats_threeway.py --quick --out /tmp/t.json  # smoke (≈ 1-2 min)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import robustdial as rd
from robustdial.attacks import PGD
from robustdial.compress import ChannelPrune, SparseMomentum
from robustdial.cost import count_macs, model_delay
from robustdial.evaluation._provenance import provenance
from robustdial.export import to_plain
from robustdial.methods import build_method

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (0.5, 1.0)
PAPER_TABLE1 = {  # CIFAR-10 ResNet-34 (λ=0 CA/RA, λ=1 CA/RA, CR, CRF)
    "float": {"CA0": 94.83, "RA0": 22.52, "CA1": 89.1, "RA1": 56.71, "CR": 1.0, "CRF": 1.0},
    "floats_i": {"CA0": 94.12, "RA0": 18.7, "CA1": 88.6, "RA1": 55.92, "CR": 10.0, "CRF": 1.0},
    "floats_c": {"CA0": 93.84, "RA0": 17.2, "CA1": 86.87, "RA1": 53.2, "CR": 2.94, "CRF": 1.54},
    "floats_slim": {"CA0": 94.26, "RA0": 19.1, "CA1": 88.9, "RA1": 55.44, "CR": 4.76, "CRF": 2.0},
}


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


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights (every parameter named ``weight`` with ≥ 2 dims)."""
    return [p.detach() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]


def _conv_channels(model: nn.Module) -> int:
    """Conv input-channel slices with a non-zero weight."""
    return sum(int((p != 0).transpose(0, 1).reshape(p.shape[1], -1).any(1).sum())
               for p in _weights(model) if p.dim() == 4)


def _row(name, model, test, dials, attack, density, kind, ref, args):
    sa, ra = _accuracy(model, test, dials, attack, args.batch_size)
    plain = to_plain(model, dials, input_shape=(1, 28, 28))
    nz = sum(int((p != 0).sum()) for p in plain.parameters())
    nz_w = sum(int((w != 0).sum()) for w in _weights(plain))
    nz_conv = sum(int((w != 0).sum()) for w in _weights(plain) if w.dim() == 4)
    macs = count_macs(model, (1, 28, 28), dials=dials, density_effective=True)
    delay = model_delay(count_macs(model, (1, 28, 28), dials=dials).layers, kind=kind)
    return {"model": name, "density": density, **dials, "SA": sa, "RA": ra, "params_nonzero": nz,
            "weights_nonzero": nz_w, "CR": ref["weights"] / nz_w, "CR_conv": ref["conv_weights"] / nz_conv, "CR_nominal": 1.0 / density,
            "CRF": ref["channels"] / _conv_channels(plain),
            "macs_density_effective": macs.macs, "conv_delay_ns": delay.total_ns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--test-samples", type=int, default=500)
    ap.add_argument("--train-steps", type=int, default=5, help="PGD steps of the training attack")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--density", type=float, default=0.3, help="FLOATS slim density (paper 0.3)")
    ap.add_argument("--density-i", type=float, default=0.1, help="FLOATS-i density (paper 0.1)")
    ap.add_argument("--density-c", type=float, default=0.34, help="FLOATS-c density (paper 0.34)")
    ap.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                    help="SmallCNN with BN after each conv (default)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "floats_threeway.json"))
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.train_samples, args.test_samples, args.train_steps = 1, 512, 64, 2
    train = rd.load_dataset("fashion-mnist", root=args.data_dir, split="train").subset(args.train_samples)
    test = rd.load_dataset("fashion-mnist", root=args.data_dir, split="test").subset(args.test_samples)
    eps = 0.1
    train_attack = {"name": "pgd", "eps": eps, "alpha": 2.5 * eps / args.train_steps,
                    "steps": args.train_steps}
    eval_attack = PGD(eps=eps, alpha=0.01, steps=5 if args.quick else 20)
    cfg = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "cosine", "device": "cpu", "seed": args.seed,
           "augment": "none", "progress": False}
    ramp = max(1, args.epochs - 1)
    # name, conditioning, widths, method, density, transform factory, lams
    float_lams, oat_lams = (0.0, 0.2, 0.7, 1.0), (0.0, 0.5, 1.0)
    runs = [
        ("float", "float", None, "float", 1.0, None, float_lams),
        ("floats_i", "float", None, "float", args.density_i,
         lambda: SparseMomentum(args.density_i, epochs=args.epochs, seed=args.seed), float_lams),
        ("floats_c", "float", None, "float", args.density_c,
         lambda: ChannelPrune(args.density_c, ramp_epochs=ramp), float_lams),
        ("float_slim", "float", WIDTHS, "float_slim", 1.0, None, float_lams),
        ("floats_slim", "float", WIDTHS, "float_slim", args.density,
         lambda: SparseMomentum(args.density, epochs=args.epochs, seed=args.seed), float_lams),
        ("oats", "oat", WIDTHS, "oats", 1.0, None, oat_lams),
    ]
    dense = rd.create_model("small_cnn", in_channels=1, batch_norm=args.batch_norm)
    ref = {"weights": sum(w.numel() for w in _weights(dense)), "channels": _conv_channels(dense),
           "conv_weights": sum(w.numel() for w in _weights(dense) if w.dim() == 4)}
    rows, timings = [], {}
    for name, cond, widths, method_name, density, transform, lams in runs:
        opts = {"embed_dim": 8, "lam_values": oat_lams} if cond == "oat" else {}
        torch.manual_seed(args.seed)
        model = rd.create_model("small_cnn", in_channels=1, conditioning=cond, widths=widths,
                                batch_norm=args.batch_norm, **opts)
        kw = {"widths": widths} if widths else {}
        if cond == "oat":
            kw["lam_values"] = oat_lams
        method = build_method(method_name, attack=train_attack, **kw)
        t0 = time.perf_counter()
        rd.fit(model, method, (train, None), cfg, transforms=[transform()] if transform else [])
        timings[name] = time.perf_counter() - t0
        model.eval()
        for w in (widths or (None,)):
            for lam in lams:
                dials = {"lam": lam} if w is None else {"lam": lam, "width": w}
                rows.append(_row(name, model, test, dials, eval_attack, density, cond, ref, args))
                print(json.dumps(rows[-1]), flush=True)

    def pick(model, width, lam):
        (r,) = [r for r in rows if r["model"] == model and r.get("width") == width and r["lam"] == lam]
        return r

    table1 = {}
    for name, width in (("float", None), ("floats_i", None), ("floats_c", None), ("floats_slim", 0.5)):
        r0, r1 = pick(name, width, 0.0), pick(name, width, 1.0)
        table1[name] = {"width": width or 1.0, "CA0": 100 * r0["SA"], "RA0": 100 * r0["RA"],
                        "CA1": 100 * r1["SA"], "RA1": 100 * r1["RA"], "CR": r0["CR"], "CR_conv": r0["CR_conv"],
                        "CR_nominal": r0["CR_nominal"], "CRF": r0["CRF"]}
    print("\nTable 1 (ours, Fashion-MNIST SmallCNN; % and ×):")
    print(f"{'model':12s} {'CA λ=0':>7s} {'RA λ=0':>7s} {'CA λ=1':>7s} {'RA λ=1':>7s} {'CR':>6s} {'CR_conv':>7s} {'CRF':>5s}")
    for k, t in table1.items():
        print(f"{k:12s} {t['CA0']:7.1f} {t['RA0']:7.1f} {t['CA1']:7.1f} {t['RA1']:7.1f} "
              f"{t['CR']:6.2f} {t['CR_conv']:7.2f} {t['CRF']:5.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "floats_threeway", "dataset": "fashion-mnist",
        "model": {"name": "small_cnn", "batch_norm": args.batch_norm},
        "train_attack": train_attack, "fit": cfg,
        "eval": f"PGD-{eval_attack.steps} Linf eps={eps} ([0,1] scale), step 0.01, random start, "
                f"first {args.test_samples} test images, fixed noise",
        "definitions": {"CR": "conv+linear weights of the dense full-width net / non-zero weights "
                              "of the plain export at the operating point",
                        "CR_conv": "the same over conv weights only",
                        "CRF": "conv input channels of the full-width net / conv input channels "
                               "present in the plain export at the operating point"},
        "args": vars(args), "train_seconds": timings, "table1": table1, "paper_table1": PAPER_TABLE1,
        "rows": rows, "provenance": provenance()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
