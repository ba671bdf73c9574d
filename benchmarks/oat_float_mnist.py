"""OAT vs FLOAT vs PGD-AT on (Fashion-)MNIST with SmallCNN: the accuracy↔robustness dial.

Trains, with the same budget and seed:

* standard training (= PGD-AT at λ = 0),
* PGD-AT at each fixed λ ∈ {0.2, 0.7, 1.0} (the frontier: one model per λ),
* OAT (FiLM conditioning, per-sample λ from S = {0, 0.2, 0.7, 1.0}, the set
  FLOAT Sec. 4.3 uses for its OAT baseline),
* FLOAT (noisy weights, half clean at λ = 0 / half adversarial at λ = 1),
  as the paper trains it (η resampled on every forward, the training attack
  included), and ``float_step``: the same with one η per training step, held
  through the attack and the loss (``FLOAT(attack_noise="step")``), so the
  training attack is white-box against the network it trains on,

then evaluates every model on the test split at the dials S (λ_th = 0, and
λ_th = 0.5 for FLOAT, Eq. 6) under PGD-20 (step 2.5·ε/20, random start) and
FGSM, and runs the gradient-obfuscation checklist for OAT and FLOAT (transfer
source: the PGD-AT λ = 1 model). The paper's SmallCNN has no BN, so by default
the script uses ``small_cnn(batch_norm=True)`` (a BN after each conv): OAT and
FLOAT then get their dual BN, and OAT its FiLM-after-BN placement. With
``--no-batch-norm`` the dial acts through FiLM / the weight noise only (OAT's
FiLM with no BN behind it scales activations down layer by layer and did not
train in our run — see the committed ``oat_float_mnist_nobn.json``).

Writes ``benchmarks/results/oat_float_mnist.json`` (with provenance) and
``benchmarks/results/oat_float_mnist.png`` (SA–RA curves, PGD-AT frontier).

Each model's run directory is ``--save-dir``/<model> (default
``runs/oat_float_mnist``, ``runs/oat_float_mnist_quick`` with ``--quick``). A
rerun never replaces earlier runs silently: directories that hold one are
refused before anything trains, unless ``--resume`` continues them (finished
runs are loaded, not retrained) or ``--overwrite`` deletes and retrains them.

Usage::

    python benchmarks/oat_float_mnist.py --quick          # smoke test, ~2 min on 2 CPU cores
    python benchmarks/oat_float_mnist.py --quick --overwrite   # the smoke test again, from scratch
    python benchmarks/oat_float_mnist.py                  # full run (see --help for the budget)
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.attacks import FGSM, PGD
from robustdial.data import load_dataset
from robustdial.engine import FitConfig, fit
from robustdial.evaluation import evaluate, plot_tradeoff, provenance
from robustdial.evaluation.checklist import obfuscation_checklist
from robustdial.methods import PGDAT, Standard
from robustdial.methods.float import FLOAT
from robustdial.methods.oat import OAT

DIALS = (0.0, 0.2, 0.7, 1.0)
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist or mnist")
    p.add_argument("--data-dir", default=None, help="data root (default $ROBUSTDIAL_DATA)")
    p.add_argument("--eps", type=float, default=None, help="L∞ ε (default 0.1 Fashion-MNIST, 0.3 MNIST)")
    p.add_argument("--train-steps", type=int, default=10, help="PGD steps of the training attack")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--n-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--n-test", type=int, default=2000, help="evaluate on the first N test images")
    p.add_argument("--checklist-n", type=int, default=500)
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="SmallCNN with a BN after each conv (default; gives OAT/FLOAT their dual "
                        "BN and OAT its FiLM-after-BN placement); --no-batch-norm: the paper's "
                        "BN-free SmallCNN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=str(RESULTS / "oat_float_mnist.json"))
    p.add_argument("--save-dir", type=Path, default=None,
                   help="parent of each model's run directory (checkpoint + run.json), for later "
                        "evaluation (default runs/oat_float_mnist, runs/oat_float_mnist_quick "
                        "with --quick)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue each model from its run directory's train_state.pt (a "
                            "finished run is loaded, not retrained); train seconds are summed from "
                            "the epoch records, so they survive the interruption")
    again.add_argument("--overwrite", action="store_true",
                       help="delete the earlier runs in --save-dir and train every model again")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (few hundred images, 1 epoch)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.quick:
        args.epochs, args.n_train, args.n_test, args.checklist_n = 1, 512, 64, 32
        args.train_steps = min(args.train_steps, 3)
    if args.save_dir is None:  # a smoke test never touches the full run's models
        args.save_dir = RESULTS.parents[1] / "runs" / ("oat_float_mnist_quick" if args.quick
                                                       else "oat_float_mnist")
    light = {"steps_sweep": (1, 2, 5, 10), "unbounded_steps": 20, "steps": 10} if args.quick else {}
    name = args.dataset.replace("-", "_")
    eps = args.eps if args.eps is not None else (0.3 if name == "mnist" else 0.1)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    train = load_dataset(name, root=args.data_dir, split="train")
    test = load_dataset(name, root=args.data_dir, split="test")
    if args.n_train:
        train = train.subset(args.n_train)
    test = test.subset(min(args.n_test, len(test)))
    train_attack = {"name": "pgd", "eps": eps, "alpha": 2.5 * eps / args.train_steps,
                    "steps": args.train_steps}
    cfg = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
               schedule="cosine", seed=args.seed, device=str(device), augment="none",
               select="last", progress=False)

    runs = {  # OAT and FLOAT first: the dial models are the point of the run
        "oat": ("oat", {"lam_values": DIALS}, OAT(lam_values=DIALS, attack=train_attack),
                [{"lam": v} for v in DIALS]),
        "float": ("float", {}, FLOAT(attack=train_attack),
                  [{"lam": v} for v in DIALS] + [{"lam": v, "lam_th": 0.5} for v in DIALS]
                  + [{"lam": 1.0, "noise": "sample"}]),
        "float_step": ("float", {}, FLOAT(attack=train_attack, attack_noise="step"),
                       [{"lam": v} for v in DIALS] + [{"lam": v, "lam_th": 0.5} for v in DIALS]
                       + [{"lam": 1.0, "noise": "sample"}]),
        "standard": (None, {}, Standard(), [{}]),
    }
    for lam in DIALS[1:]:
        runs[f"pgd_at_{lam:g}"] = (None, {}, PGDAT(lam=lam, attack=train_attack), [{}])

    if not (args.resume or args.overwrite):  # refuse before anything trains, not at the 5th model
        taken = [str(args.save_dir / key) for key in runs
                 if (args.save_dir / key).is_dir() and any((args.save_dir / key).iterdir())]
        if taken:
            p.error(f"{', '.join(taken)} already hold(s) a run; continue with --resume (finished runs "
                    "are loaded, not retrained), retrain with --overwrite, or choose another --save-dir")

    attacks = {"pgd-20": PGD(eps=eps, alpha=2.5 * eps / 20, steps=20), "fgsm": FGSM(eps=eps)}
    models, out = {}, {"results": {}, "train_seconds": {}, "checklist": {}}
    for key, (cond, opts, method, conditions) in runs.items():
        torch.manual_seed(args.seed)
        model = rd.create_model("small_cnn", conditioning=cond, batch_norm=args.batch_norm,
                                **opts).to(device)
        t0 = time.perf_counter()
        result = fit(model, method, (train, None),
                     FitConfig(**cfg, out_dir=str(args.save_dir / key), resume=args.resume,
                               overwrite=args.overwrite))
        epoch_times = [r["epoch_time_s"] for r in result.history if r.get("type") == "epoch"]
        out["train_seconds"][key] = sum(epoch_times) if epoch_times else time.perf_counter() - t0
        if cond == "float":  # the learned noise scales α per noisy layer (PNI: init 0.25)
            out.setdefault("alpha", {})[key] = [float(m.alpha.detach()) for m in model.modules()
                                                if hasattr(m, "alpha") and hasattr(m, "noise_seed")]
        res = evaluate(model, test, attacks, conditions, device=device, seed=args.seed)
        res.meta["method"] = method.config()
        out["results"][key] = res.to_dict()
        models[key] = model
        print(f"== {key} ({out['train_seconds'][key]:.0f} s)\n{res.to_table()}", flush=True)

    for key in ("oat", "float", "float_step"):
        chk = obfuscation_checklist(models[key], test, eps=eps, conditions=[{"lam": 0.0}, {"lam": 1.0}],
                                    source_model=models["pgd_at_1"], max_samples=args.checklist_n,
                                    device=device, seed=args.seed, **light)
        out["checklist"][key] = chk.to_dict()
        print(f"== checklist {key}: {'PASS' if chk.passed else 'FAIL'}\n{chk.to_table()}", flush=True)

    from robustdial.evaluation import EvalResult

    frontier = []
    for key in ("standard", *(f"pgd_at_{v:g}" for v in DIALS[1:])):
        row = EvalResult.from_dict(out["results"][key]).select(attack="pgd-20")[0]
        lam = 0.0 if key == "standard" else float(key.rsplit("_", 1)[1])
        frontier.append((row.clean_acc, row.robust_acc, f"λ={lam:g}"))
    curves = {"OAT": EvalResult.from_dict(out["results"]["oat"]),
              "FLOAT (λ_th=0)": [r for r in EvalResult.from_dict(out["results"]["float"]).rows
                                 if set(r.condition) == {"lam"}],
              "FLOAT, step noise (λ_th=0)": [
                  r for r in EvalResult.from_dict(out["results"]["float_step"]).rows
                  if set(r.condition) == {"lam"}]}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    png = plot_tradeoff(curves, "pgd-20", out_path.with_suffix(".png"), frontier=frontier,
                        frontier_label="PGD-AT (one model per λ)",
                        title=f"{name} SmallCNN{'-BN' if args.batch_norm else ''}, PGD-20 ε={eps:g}")
    out["settings"] = {**vars(args), "eps": eps, "dials": DIALS, "model": "small_cnn", "model_options": {"batch_norm": args.batch_norm},
                       "train_attack": train_attack,
                       "eval_attacks": {k: repr(v) for k, v in attacks.items()},
                       "fit": cfg, "n_test": len(test), "n_train": len(train)}
    out["plot"] = str(png)
    out["provenance"] = provenance(device)
    out_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {out_path} and {png}")


if __name__ == "__main__":
    main()
