"""The authors' RDI-ResNet-38 under AutoAttack, an exit-aware attack and a slowdown attack.

RDI-Nets (Hu et al., ICLR 2020) claim "triple wins": accuracy, robustness and
a compute saving that holds under attack. Their Table 3 attacks the heads with
PGD-20 attack forms (reproduced by ``rdi_cifar10_table3.py``). This script
asks what a stronger and an adaptive attacker get, on the authors' released
Max-Average weights (``../shared/fixtures/rdi-resnet38-cifar10/``), the first
``--n`` CIFAR-10 test images, L∞ ε = 8/255, entropy early exit at the paper's
thresholds:

* clean: adaptive accuracy, exit histogram, MFlops (paper convention: conv MACs
  / 2²⁰ of backbone-to-exit + that exit's head; "executed": plus the heads a
  sample passed), and the measured wall-clock saving;
* **AutoAttack per attack form** (profile ``fast``: APGD-CE + APGD-T with the
  standard version's settings): each form is an ordinary logits model for
  AutoAttack (:class:`robustdial.attacks.early_exit.ExitSurrogate`): single
  (exit k alone), average (mean log-softmax over the heads), random (fixed
  random convex weights), max-average (per sample the single-form candidate
  with the largest summed CE over the heads, Eq. 4); every form's examples are
  judged by the deployed adaptive model. Run on the first ``--n-forms`` images;
  the paper's worst case (min over forms) and the per-sample worst case;
* **exit-aware AutoAttack** (first ``--n-exit-aa`` images): AutoAttack on the
  adaptive model itself, so each iteration attacks the exit the policy takes for
  the current input, and an exit-aware PGD-50 on all ``--n``
  (:func:`robustdial.attacks.early_exit.exit_aware_loss`);
* **slowdown** (DeepSloth): PGD-50 pushing every early exit towards uniform;
  MFlops and measured saving under it, and the fraction of the clean saving kept.

Every (part, attack) result is cached under ``--cache`` and the script resumes;
AutoAttack runs in ``--chunk`` pieces, so a larger ``--n-forms`` or
``--n-exit-aa`` only attacks the images not run yet (two processes with
disjoint ``--forms`` can share the cache).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/rdi_cifar10_robustness.py   # every part on the first 1000 images
    # (hours from scratch: the committed run's pieces sum to 7 h of wall time, two or three processes
    #  sharing two cores; processes with disjoint --forms and their own --out share the cache, then the
    #  plain command assembles the JSON from it in a minute)
    python benchmarks/rdi_cifar10_robustness.py --n 32 --n-forms 16        # smoke test
    ... --forms branch1 branch2 branch3 --n-exit-aa 250   # a subset of forms (the JSON lists the rest)

Writes ``benchmarks/results/rdi_cifar10_robustness.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robustdial.attacks import PGD, AutoAttack
from robustdial.attacks.early_exit import ExitSurrogate, exit_aware_loss, slowdown_loss
from robustdial.condition import conditioned
from robustdial.cost.early_exit import exit_costs_mflops, expected_cost
from robustdial.data import load_dataset
from robustdial.evaluation._provenance import provenance
from robustdial.evaluation._report_cache import ReportCache, data_digest, model_digest, settings_digest
from robustdial.models.convert import convert_rdi_checkpoint
from robustdial.models.early_exit import adaptive_forward
from robustdial.utils import train_mode

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "rdi-resnet38-cifar10" / "checkpoint_60000.pth.tar"
EPS = 8 / 255
_log = logging.getLogger("rdi_cifar10_robustness")


def _batches(n: int, bs: int):
    for i in range(0, n, bs):
        yield slice(i, min(n, i + bs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=FIXTURE)
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--n", type=int, default=1000, help="first N test images (clean, exit-aware, slowdown)")
    p.add_argument("--n-forms", type=int, default=1000, help="first N images for AutoAttack per form")
    p.add_argument("--n-exit-aa", type=int, default=1000,
                   help="first N images for the exit-aware AutoAttack (PGD and slowdown use all --n)")
    p.add_argument("--forms", nargs="+", default=["all"], metavar="FORM",
                   help="attack forms to run AutoAttack on (branch1..branchK-1, main, average, random, "
                        "max-average; default all); the JSON lists the forms not run")
    p.add_argument("--chunk", type=int, default=250,
                   help="AutoAttack runs on this many images at a time, each piece cached (a larger "
                        "--n-forms / --n-exit-aa reuses the pieces already run)")
    p.add_argument("--pgd-steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "rdi_cifar10_robustness_cache")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rdi_cifar10_robustness.json")
    args = p.parse_args()
    if args.chunk < 1:
        raise SystemExit(f"--chunk must be ≥ 1, got {args.chunk}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t_start = time.perf_counter()
    dev = torch.device(args.device)
    model = convert_rdi_checkpoint(args.checkpoint).to(dev).eval()
    test = load_dataset("cifar10", root=args.data_root, split="test").subset(args.n)
    x = test.images.to(dev).float().div_(255)
    y = test.labels.to(dev)
    n, nf, bs = x.shape[0], min(args.n_forms, x.shape[0]), args.batch_size
    K = model.num_exits
    t = model.exit_thresholds
    # refuse a bad --forms before any attack runs
    singles = ["main" if k == K - 1 else f"branch{k + 1}" for k in range(K)]
    all_forms = singles + ["average", "random", "max-average"]
    wanted = all_forms if args.forms == ["all"] else args.forms
    unknown = sorted(set(wanted) - set(all_forms))
    if unknown:
        raise SystemExit(f"--forms: unknown {unknown}; valid: {all_forms} or all")
    if "max-average" in wanted and not set(singles) <= set(wanted):
        raise SystemExit("--forms max-average needs every single form (its candidates): "
                         + ", ".join(singles))
    costs, costs_run = exit_costs_mflops(model), exit_costs_mflops(model, "executed")
    cache = ReportCache(args.cache, settings_digest(model_digest(model), data_digest(x, y), EPS,
                                                    args.seed, n, args.pgd_steps))

    @torch.no_grad()
    def judge(xa: torch.Tensor, lo: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        preds, exits = [], []
        for s in _batches(xa.shape[0], bs):
            logits, e = adaptive_forward(model, xa[s], t)
            preds.append(logits.argmax(1))
            exits.append(e)
        return torch.cat(preds) == y[lo: lo + xa.shape[0]], torch.cat(exits)

    def cached(name: str, settings: dict) -> dict | None:
        hit = cache.get({}, "rdi", name, settings)
        if hit is None:
            return None
        tensors, summary = hit
        return {"x_adv": tensors.get("x_adv"), "ok": tensors["ok"].bool(), "exits": tensors["exits"],
                **summary}

    def entry(name: str, settings: dict, make, lo: int = 0) -> dict:
        hit = cached(name, settings)
        if hit is not None:
            return hit
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        xa = make()
        ok, ex = judge(xa, lo)
        summary = {"seconds": time.perf_counter() - t0, "accuracy": 100 * ok.float().mean().item(),
                   "n": int(ok.numel())}
        cache.put({}, "rdi", name, settings, {"x_adv": xa, "ok": ok.to(torch.uint8), "exits": ex},
                  summary)
        _log.info("%s: adaptive accuracy %.2f%% on %d images (%.0f s)", name, summary["accuracy"],
                  summary["n"], summary["seconds"])
        return {"x_adv": xa, "ok": ok, "exits": ex, **summary}

    def chunked(name: str, size_key: str, settings: dict, attack, total: int) -> dict:
        """``attack(lo, hi)`` on images [lo, hi) in ``--chunk`` pieces, each cached on its own.

        A cached first-N result (key ``{size_key: N}``, what a run with that N stored) is
        reused as the prefix, so a larger N only attacks the new images. Per-image outcomes
        are independent of the other images in the run, so the pieces concatenate.
        """
        parts, lo = [], 0
        for h in range(total, 0, -1):  # the longest cached prefix
            hit = cached(name, {size_key: h, **settings})
            if hit is not None:
                parts.append(hit)
                lo = h
                break
        while lo < total:
            hi = min(total, lo + args.chunk) if lo else min(total, args.chunk)
            key = {size_key: hi, **settings} if lo == 0 else {"lo": lo, "hi": hi, **settings}
            parts.append(entry(name, key, lambda lo=lo, hi=hi: attack(lo, hi), lo=lo))
            lo = hi
        if len(parts) == 1:
            return parts[0]
        ok = torch.cat([q["ok"] for q in parts])
        return {"x_adv": torch.cat([q["x_adv"] for q in parts]), "ok": ok,
                "exits": torch.cat([q["exits"] for q in parts]),
                "seconds": sum(q["seconds"] for q in parts), "accuracy": 100 * ok.float().mean().item(),
                "n": int(ok.numel()), "chunks": [[q["n"], q["seconds"]] for q in parts]}

    def aa_on(m: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        aa = AutoAttack(eps=EPS, version="standard", components=("apgd-ce", "apgd-t"), seed=args.seed,
                        batch_size=bs)
        with train_mode(m, False):
            return aa(m, xs, ys)

    def pgd_all(loss, xs: torch.Tensor, ys: torch.Tensor, m: torch.nn.Module = model) -> torch.Tensor:
        k = args.pgd_steps
        atk = PGD(eps=EPS, alpha=2.5 * EPS / k, steps=k, loss=loss)
        return torch.cat([atk(m, xs[s], ys[s]).detach() for s in _batches(xs.shape[0], bs)])

    def cost(exits: torch.Tensor) -> dict:
        counts = torch.bincount(exits.cpu(), minlength=K).tolist()
        return {"exit_histogram": counts, "rdi": expected_cost(counts, costs),
                "executed": expected_cost(counts, costs_run, backbone_mflops=costs[-1],
                                          convention="executed")}

    # -- clean ----------------------------------------------------------------
    clean = entry("clean", {}, lambda: x.clone())
    # -- exit-aware ---------------------------------------------------------------
    na = min(args.n_exit_aa, n)

    def aa_adaptive(lo: int, hi: int) -> torch.Tensor:
        with conditioned(model, exit="adaptive"):
            return aa_on(model, x[lo:hi], y[lo:hi])

    exit_pgd = entry("pgd:exit-aware", {"k": args.pgd_steps}, lambda: pgd_all(exit_aware_loss(t), x, y))
    # -- slowdown -------------------------------------------------------------------
    slow = entry("pgd:slowdown", {"k": args.pgd_steps}, lambda: pgd_all(slowdown_loss, x, y))
    exit_aa = chunked("aa:exit-aware", "n", {}, aa_adaptive, na)

    # -- AutoAttack per form (first nf images) ----------------------------------
    yf = y[:nf]
    forms: dict[str, dict] = {}

    def aa_form(form):
        return lambda lo, hi: aa_on(ExitSurrogate(model, form), x[lo:hi], y[lo:hi])

    for k, name in enumerate(singles):
        if name in wanted:
            forms[name] = chunked(f"aa:{name}", "nf", {}, aa_form(k), nf)
    if "average" in wanted:
        forms["average"] = chunked("aa:average", "nf", {}, aa_form("average"), nf)
    gen = torch.Generator().manual_seed(args.seed)
    w = torch.rand(K, generator=gen)
    w = (w / w.sum()).tolist()
    if "random" in wanted:
        forms["random"] = chunked("aa:random", "nf", {"w": w}, aa_form(w), nf)

    def max_average() -> torch.Tensor:  # Eq. 4 over the single-form AutoAttack candidates
        cands = [forms[name]["x_adv"] for name in singles]
        out = []
        with torch.no_grad():
            for s in _batches(nf, bs):
                losses = torch.stack([torch.stack([F.cross_entropy(o, yf[s], reduction="none")
                                                   for o in model.forward_exits(c[s])]).sum(0)
                                      for c in cands])  # (K candidates, B)
                best = losses.argmax(0)
                stacked = torch.stack([c[s] for c in cands])
                out.append(stacked[best, torch.arange(best.numel())])
        return torch.cat(out)

    if "max-average" in wanted:
        forms["max-average"] = entry("aa:max-average", {"nf": nf}, max_average)
    not_run = [f for f in all_forms if f not in forms]
    pool = [f for f in forms if f != "random"]
    per_sample_worst = torch.stack([forms[f]["ok"] for f in pool]).all(0)
    m = min(nf, na)  # images every attack below was run on
    aa_exit_first = 100 * exit_aa["ok"][:m].float().mean().item()
    worst_all = per_sample_worst[:m] & exit_aa["ok"][:m] & exit_pgd["ok"][:m]

    # -- measured saving (backbone vs adaptive, batch 64, round-robin) --------------------
    # one torch thread: the process's CPU time is what a forward costs, whatever else runs
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter

    def measured(xs: torch.Tensor) -> dict:
        import statistics

        chunks = [xs[i:i + 64] for i in range(0, min(256, xs.shape[0]), 64)]
        times: dict[str, list[float]] = {"adaptive": [], "backbone": []}
        with torch.inference_mode():
            for _ in range(1):
                [adaptive_forward(model, c, t) for c in chunks]
            for _ in range(5):
                for key in times:
                    t0 = clock()
                    if key == "adaptive":
                        [adaptive_forward(model, c, t) for c in chunks]
                    else:
                        [model.forward_to(c, K - 1) for c in chunks]
                    times[key].append(clock() - t0)
        a, b = statistics.median(times["adaptive"]), statistics.median(times["backbone"])
        return {"adaptive_s": a, "backbone_s": b, "measured_saving": 1 - a / b,
                "clock": "cpu" if clock is time.process_time else "wall"}

    c_clean, c_slow = cost(clean["exits"]), cost(slow["exits"])
    result = {
        "what": "the authors' RDI-ResNet-38 (Max-Average defence, released weights) under "
                "AutoAttack per attack form, an exit-aware AutoAttack and a slowdown attack",
        "protocol": {"eps": "8/255", "norm": "Linf", "eps_scale": "[0, 1]", "n": n, "n_forms": nf,
                     "subset": "first n CIFAR-10 test images", "thresholds": t.tolist(),
                     "autoattack": "fast profile: APGD-CE + APGD-T with the standard version's "
                                   "settings (pyautoattack 0.2.0); FAB-T and Square not run",
                     "pgd": f"PGD-{args.pgd_steps}, step 2.5·ε/{args.pgd_steps}, random start",
                     "mflops": "conv MACs / 2^20 per image; 'rdi' = the paper's convention, "
                               "'executed' adds the heads a sample passes"},
        "clean": {"adaptive_accuracy": clean["accuracy"], **c_clean,
                  "measured": measured(x)},
        "autoattack_forms_not_run": not_run,
        "autoattack_per_form": {f: {"accuracy": v["accuracy"], "n": v["n"], **cost(v["exits"])}
                                for f, v in forms.items()},
        "autoattack_worst_form": min(((f, forms[f]["accuracy"]) for f in pool), key=lambda kv: kv[1]),
        "autoattack_per_sample_worst_over_forms": 100 * per_sample_worst.float().mean().item(),
        "exit_aware": {"autoattack": {"accuracy": exit_aa["accuracy"], "n": na,
                                      "accuracy_first_m": aa_exit_first, "m": m, **cost(exit_aa["exits"])},
                       "pgd": {"accuracy": exit_pgd["accuracy"], "n": n, **cost(exit_pgd["exits"])}},
        "per_sample_worst_all_attacks_first_m": 100 * worst_all.float().mean().item(),
        "per_sample_worst_all_attacks_covers": pool + ["aa:exit-aware", "pgd:exit-aware"],
        "slowdown": {"accuracy": slow["accuracy"], **c_slow, "measured": measured(slow["x_adv"]),
                     "saving_kept_rdi": (c_slow["rdi"]["saving"] / c_clean["rdi"]["saving"]
                                         if c_clean["rdi"]["saving"] > 0 else math.nan),
                     "saving_kept_executed": (c_slow["executed"]["saving"] / c_clean["executed"]["saving"]
                                              if c_clean["executed"]["saving"] > 0 else math.nan)},
        "paper_table3_max_average": {"TA": 83.79, "worst_case_ata": 43.32, "mflops": 57.81,
                                     "saving_percent": 27.20},
        "seconds": {k: v.get("seconds") for k, v in {"clean": clean, **{f"aa:{f}": v for f, v in forms.items()},
                                                      "aa:exit-aware": exit_aa, "pgd:exit-aware": exit_pgd,
                                                      "pgd:slowdown": slow}.items()},
        "wall_seconds": time.perf_counter() - t_start,
        "provenance": provenance(dev),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("autoattack_per_form", "autoattack_worst_form",
                                             "autoattack_per_sample_worst_over_forms")}, indent=1))
    print(f"clean {clean['accuracy']:.2f}%, exit-aware AA {exit_aa['accuracy']:.2f}%, "
          f"slowdown keeps {100 * result['slowdown']['saving_kept_rdi']:.1f}% of the saving; wrote {args.out}")


if __name__ == "__main__":
    main()
