"""Robustness-report attacks on the folded plain graph vs the conditioned module.

At a deterministic operating point the report attacks the point's folded plain
graph (``robustdial.export.to_plain``: BN + FiLM folded, FLOAT's fixed noise
baked into the weights, slimmable layers sliced) after checking that its logits
equal the module's within 1e-5. This measures what that buys: for each run and
λ, the same attacks with the same seeds on both, timed round-robin (module,
folded, module, folded, …), reporting the median wall and CPU seconds, their
ratio, and whether the robust accuracies are identical.

Usage::

    robustdial demo --out runs/demo                                   # the demo's runs (float_slim)
    robustdial demo --jobs float,oat,standard,pgd_at --out runs/demo_lam
    OMP_NUM_THREADS=1 python benchmarks/report_fold_speed.py    # runs/demo_lam/{float,oat}, runs/demo/float_slim

(a slimmable model is measured at each trained width)

Writes ``benchmarks/results/report_fold_speed.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.attacks import PGD, AutoAttack
from robustdial.evaluation import provenance
from robustdial.export import to_plain
from robustdial.utils import train_mode

REPO = Path(__file__).resolve().parents[1]


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _training_eps(method: dict) -> float:
    """The training attack's ε from a method config (slimmable methods nest their inner method's)."""
    if isinstance(method.get("attack"), dict):
        return float(method["attack"]["eps"])
    for value in method.values():
        if isinstance(value, dict):
            try:
                return _training_eps(value)
            except KeyError:
                continue
    raise KeyError("no training attack ε in the run's method config; pass --eps")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=Path,
                   default=[REPO / "runs" / "demo_lam" / "float", REPO / "runs" / "demo_lam" / "oat",
                            REPO / "runs" / "demo" / "float_slim"])
    p.add_argument("--lam", nargs="+", type=float, default=[0.5, 1.0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--eps", type=float, default=None, help="default: the run's training ε")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "report_fold_speed.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for run in args.runs:
        model = rd.load(run).eval()
        info = getattr(model, "rd_run", {}) or {}
        eps = args.eps or _training_eps(info["method"])
        data = rd.load_dataset(info["dataset"]["name"], split="test")
        x, y = data.images[: args.n].float() / 255, data.labels[: args.n]
        shape = tuple(x.shape[1:])
        widths = rd.dial_specs(model)["width"].values if "width" in rd.dial_specs(model) else [None]
        for lam, width in [(lam, w) for w in widths for lam in args.lam]:
            dials = {"lam": lam} if width is None else {"lam": lam, "width": width}
            with rd.conditioned(model, **dials), train_mode(model, False):
                plain = to_plain(model, dials, input_shape=shape).eval()
                with torch.no_grad():
                    diff = float((plain(x) - model(x)).abs().max())
                targets = {"module": model, "folded": plain}
                attacks = {"pgd-50": lambda m: PGD(eps=eps, alpha=2.5 * eps / 50, steps=50)(m, x, y),
                           "autoattack-fast": lambda m: AutoAttack(
                               eps=eps, version="standard", components=("apgd-ce", "apgd-t"), seed=0,
                               batch_size=args.n)(m, x, y)}
                for aname, attack in attacks.items():
                    reps = 1 if aname.startswith("autoattack") else args.repeats
                    wall: dict[str, list[float]] = {"module": [], "folded": []}
                    cpu: dict[str, list[float]] = {"module": [], "folded": []}
                    acc: dict[str, list[float]] = {"module": [], "folded": []}
                    for r in range(reps):
                        order = ("module", "folded") if r % 2 == 0 else ("folded", "module")
                        for name in order:
                            torch.manual_seed(0)
                            x_adv, w, c = _timed(lambda: attack(targets[name]))
                            with torch.no_grad():
                                acc[name].append(100.0 * (model(x_adv).argmax(1) == y).float().mean().item())
                            wall[name].append(w)
                            cpu[name].append(c)
                    row = {"run": str(run), "dials": dials, "attack": aname, "n": args.n, "eps": eps,
                           "max_abs_logit_diff": diff, "repeats": reps,
                           "wall_s": {k: statistics.median(v) for k, v in wall.items()},
                           "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
                           "robust_acc": {k: v[0] for k, v in acc.items()},
                           "identical_robust_acc": acc["module"] == acc["folded"]}
                    row["speedup_wall"] = row["wall_s"]["module"] / row["wall_s"]["folded"]
                    row["speedup_cpu"] = row["cpu_s"]["module"] / row["cpu_s"]["folded"]
                    rows.append(row)
                    print(f"{run.name} {dials} {aname}: module {row['cpu_s']['module']:.1f} s CPU, folded "
                          f"{row['cpu_s']['folded']:.1f} s → {row['speedup_cpu']:.2f}× (wall "
                          f"{row['speedup_wall']:.2f}×); robust {row['robust_acc']} identical="
                          f"{row['identical_robust_acc']}", flush=True)
    out = {"what": "report attacks on the folded plain graph vs the conditioned module (same seeds)",
           "target": "≥ 1.3× faster with identical robust accuracy", "rows": rows,
           "speedup_cpu_min": min(r["speedup_cpu"] for r in rows),
           "speedup_cpu_median": statistics.median(r["speedup_cpu"] for r in rows),
           "all_identical": all(r["identical_robust_acc"] for r in rows),
           "provenance": provenance("cpu")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"median CPU speed-up {out['speedup_cpu_median']:.2f}×, min {out['speedup_cpu_min']:.2f}×, "
          f"identical robust accuracy everywhere: {out['all_identical']}; wrote {args.out}")


if __name__ == "__main__":
    main()
