"""``robustdial demo``: four dials of one library on embedded data, on a CPU, in minutes.

Trains small models (:mod:`robustdial.models.mini_cnn`) on the embedded 14×14
Fashion-MNIST subset (``fashion-mnist-mini``: no download) and evaluates every
operating point with the robustness report (:func:`robustdial.evaluation.report`,
AutoAttack profile ``fast`` = APGD-CE + APGD-T, named everywhere), one panel
per dial:

* **λ** (FLOAT, Kundu et al. 2023) beside a standard and a PGD-AT model: one
  model, λ ∈ {0, .2, .5, .7, 1};
* **width** (FLOAT slim): clean and robust accuracy, MACs and measured
  latency at widths 0.5 and 1;
* **exit** (RDI-Nets, Hu et al. 2020, average defence): every exit and
  input-adaptive early exit, with the compute saving counted and measured on
  clean inputs, under AutoAttack and under a slowdown attack (DeepSloth);
* **bits** (Binary-Relax, Yin et al. / Li et al.): ternary (2-bit) convolutions
  vs the float PGD-AT model: storage, clean and robust accuracy.

Writes ``results.json`` (every number, its attack and ε, provenance),
``dials.png`` (a panel per dial) and one checkpoint directory per model into
``--out``. Jobs run in ``--workers`` processes (one thread each).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_DATA", "DEMO_EPS", "DemoJob", "JOBS", "OPTIONAL_JOBS", "add_parser", "run", "run_demo",
           "schedule_order"]

_log = logging.getLogger(__name__)

DEMO_DATA = "fashion-mnist-mini"
DEMO_MODEL = "mini_cnn"
DEMO_EPS = 0.15  # L∞ on the [0, 1] scale
DEMO_LAMBDAS = [0.0, 0.2, 0.5, 0.7, 1.0]


@dataclasses.dataclass(frozen=True)
class DemoJob:
    """One trained model of the demo and the operating points its panel shows.

    Attributes:
        panel: ``"lam"``, ``"width"``, ``"exit"`` or ``"bits"``.
        label: name in the table, the figure and the checkpoint directory.
        method: method name for :func:`robustdial.methods.build_method`.
        method_kwargs: its options (the training attack is added from ε).
        model_options: extra :func:`robustdial.create_model` options.
        dials: the report's grid (``None``: the model as it is).
        epochs: training epochs over the 5,500 training images.
        binary_relax: quantization scheme trained with Binary-Relax (or None).
        latency: measure latency in the report.
        cpu_seconds: its train + report time on one thread (measured on a 2-core
            CPU), used only to hand the longest jobs out first.
    """

    panel: str
    label: str
    method: str
    method_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dials: dict[str, list[Any]] | None = None
    epochs: int = 8
    binary_relax: str | None = None
    latency: bool = False
    cpu_seconds: float = 60.0


JOBS: list[DemoJob] = [  # display order; schedule_order() decides the run order
    DemoJob("width", "float_slim", "float_slim", {"widths": (0.5, 1.0)},
            {"conditioning": "float", "widths": (0.5, 1.0)}, {"width": [0.5, 1.0], "lam": [1.0]},
            latency=True, cpu_seconds=86),
    DemoJob("exit", "rdi", "rdi", {"defence": "average"}, {"exits": True},
            {"exit": [0, 1, 2, "adaptive"]}, latency=True, cpu_seconds=97),
    DemoJob("bits", "br_ternary", "pgd_at", {"lam": 1.0}, binary_relax="ternary", cpu_seconds=61),
    DemoJob("lam", "pgd_at", "pgd_at", {"lam": 1.0}, cpu_seconds=61),
    DemoJob("lam", "float", "float", {}, {"conditioning": "float"}, {"lam": DEMO_LAMBDAS}, cpu_seconds=107),
    DemoJob("lam", "standard", "standard", cpu_seconds=15),
]
OPTIONAL_JOBS: list[DemoJob] = [  # run with --jobs (e.g. --jobs float,oat)
    DemoJob("lam", "oat", "oat", {}, {"conditioning": "oat"}, {"lam": DEMO_LAMBDAS},
            cpu_seconds=107),  # not timed separately: taken as FLOAT's (same grid, same schedule)
]


def schedule_order(jobs: list[DemoJob]) -> list[DemoJob]:
    """Longest job first (list scheduling): the workers take the next job as they free up, so
    handing out the longest first keeps them finishing together (stable for equal times)."""
    return sorted(jobs, key=lambda j: -j.cpu_seconds)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="four dials (λ, width, exit, bits) on embedded data, "
                              "AutoAttack-evaluated (CPU, ~5 min)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=float, default=DEMO_EPS, help="L∞ ε on the [0, 1] scale")
    p.add_argument("--epochs", type=int, default=None, help="override every job's epochs")
    p.add_argument("--n-test", type=int, default=200,
                   help="evaluate on the first N of the 1,000 test images (default 200)")
    p.add_argument("--jobs", default=None,
                   help="comma-separated jobs to run instead of the default set (" +
                        ", ".join(j.label for j in JOBS + OPTIONAL_JOBS) + ")")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (one thread each)")
    return p


def _attack(eps: float) -> dict[str, Any]:
    # PGD-5 with step ε/2.5 while training: cheap and strong enough at 14×14
    return {"name": "pgd", "eps": eps, "alpha": eps / 2.5, "steps": 5}


def _run_job(job: DemoJob, out: str, eps: float, seed: int, epochs: int | None,
             n_test: int) -> dict[str, Any]:
    """Train one job's model and report its points (runs in a worker process)."""
    import torch

    import robustdial as rd
    from robustdial.compress import BinaryRelax, storage_bits
    from robustdial.methods import build_method
    from robustdial.models.early_exit import calibrate_thresholds

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    train = rd.load_dataset(DEMO_DATA, split="train")
    val = rd.load_dataset(DEMO_DATA, split="val")
    test = rd.load_dataset(DEMO_DATA, split="test")
    rd.utils.seed_everything(seed)
    model = rd.create_model(DEMO_MODEL, num_classes=10, in_channels=1, **job.model_options)
    kwargs = dict(job.method_kwargs)
    if job.method != "standard":
        kwargs["attack"] = _attack(eps)
    method = build_method(job.method, **kwargs)
    n_epochs = epochs if epochs is not None else job.epochs
    transforms = []
    if job.binary_relax:  # η ×2 per epoch (the paper's ρ = 1.05 suits 200 epochs), hard Q after 3/4
        transforms.append(BinaryRelax(job.binary_relax, rho=2.0, cutoff_epoch=max(1, 3 * n_epochs // 4)))
    cfg = rd.FitConfig(epochs=n_epochs, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4,
                       schedule="cosine", seed=seed, device="cpu", augment="none", select="last",
                       progress=False)
    rd.fit(model, method, (train, val), cfg, transforms=transforms)
    bits = 32
    if job.binary_relax:
        transforms[0].finalize(model)  # the deployed weights: Q(w)
        bits = transforms[0].bits
    if job.panel == "exit":  # ≈ 1/3 of the validation images leave at each exit
        calibrate_thresholds(model, val)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    ckpt = Path(out) / job.label
    rd.save(model, ckpt, {"method": method.config(), "dataset": {"name": DEMO_DATA}, "seed": seed,
                          "fit_config": cfg.to_dict(), "demo_job": dataclasses.asdict(job)})
    t1, c1 = time.perf_counter(), time.process_time()
    rep = rd.report(model, test, eps=eps, dials=job.dials, n=n_test, profile="fast", checks=False,
                    latency=job.latency, bits=bits, name=job.label, seed=seed, progress=False)
    storage = {"bits": bits, "scheme": job.binary_relax or "float32",
               "storage_bytes": storage_bits(model, job.binary_relax or "float") / 8,
               "convention": "quantized conv weights at their bit-width plus one float32 scale each; "
                             "every other parameter float32"}
    return {"panel": job.panel, "label": job.label, "method": method.config(),
            "model_options": job.model_options, "epochs": n_epochs, "train_seconds": train_s,
            "eval_seconds": time.perf_counter() - t1, "train_cpu_seconds": train_cpu,
            "eval_cpu_seconds": time.process_time() - c1, "checkpoint": str(ckpt), "storage": storage,
            "report": rep.to_dict()}


def run_demo(out: str | Path, *, seed: int = 0, eps: float = DEMO_EPS, epochs: int | None = None,
             n_test: int = 200, jobs: list[DemoJob] | None = None, workers: int = 2) -> dict[str, Any]:
    """Run every job (in ``workers`` processes); write results.json and dials.png into ``out``."""
    from robustdial.evaluation import provenance
    from robustdial.evaluation.dial_demo_figure import plot_demo

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = list(JOBS if jobs is None else jobs)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    args = (str(out), eps, seed, epochs, n_test)
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            results[job.label] = _run_job(job, *args)
            _log.info("demo: %s done", job.label)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_run_job, job, *args): job for job in schedule_order(jobs)}
            for fut in as_completed(futures):
                job = futures[fut]
                results[job.label] = fut.result()
                r = results[job.label]
                _log.info("demo: %s trained in %.0f s, evaluated in %.0f s", job.label,
                          r["train_seconds"], r["eval_seconds"])
    order = [j.label for j in jobs]
    summary = {"dataset": f"{DEMO_DATA} (14x14 Fashion-MNIST subset, embedded)", "model": DEMO_MODEL,
               "eps": eps, "eps_scale": "[0, 1], L∞", "seed": seed, "n_test": n_test,
               "robust_accuracy": "AutoAttack fast (APGD-CE + APGD-T, pyautoattack, standard "
                                  "settings) at deterministic points",
               "jobs": {k: results[k] for k in order if k in results},
               "wall_seconds": time.perf_counter() - t0, "workers": workers,
               "provenance": provenance("cpu")}
    summary["table"] = demo_rows(summary)
    plot_demo(summary, out / "dials.png")
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def demo_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, operating point): panel, clean, AutoAttack and the cost column."""
    rows = []
    for label, job in summary["jobs"].items():
        rep = job["report"]
        for p in rep["points"]:
            a = p["accuracy"]
            cost = f"{p['cost']['macs_per_image'] / 1e6:.2f} M MACs"
            if job["panel"] == "width" and "latency" in p:
                lat = p["latency"]["batch64"]
                cost += f", {1000 * lat['model_s']:.1f} ms/64 img"
                if "folded_s" in lat:
                    cost += f" (exported {1000 * lat['folded_s']:.1f} ms = {lat['folded_ratio']:.2f}× plain)"
                if "speedup_vs_widest" in lat:
                    w = p["latency"].get("widest", {}).get("width", "the widest")
                    cost += f", plain {lat['speedup_vs_widest']:.1f}× faster than width {w:g} (same run)"
            if job["panel"] == "bits":
                cost = f"{job['storage']['storage_bytes'] / 1024:.1f} KiB ({job['storage']['scheme']})"
            if p.get("early_exit"):
                ee, lat = p["early_exit"], p.get("latency", {})
                parts = []
                for key, name in (("clean", "clean"), ("autoattack", "AA"), ("slowdown", "slowdown")):
                    counted = 100 * ee["inputs"][key]["executed"]["saving"]
                    measured = lat.get(key, {}).get("measured_saving")
                    m = "–" if measured is None else f"{100 * measured:.0f}"
                    parts.append(f"{name} {counted:.0f}/{m}")
                cost = "saving % counted (MACs executed) / measured (one input at a time): " + ", ".join(parts)
            rows.append({"panel": job["panel"], "model": label, "point": p["label"],
                         "clean": a["clean"], "autoattack": a["autoattack"], "cost": cost})
    if any(j["panel"] == "bits" for j in summary["jobs"].values()) and "pgd_at" in summary["jobs"]:
        ref = summary["jobs"]["pgd_at"]
        p = ref["report"]["points"][0]
        rows.append({"panel": "bits", "model": "pgd_at", "point": "float32",
                     "clean": p["accuracy"]["clean"], "autoattack": p["accuracy"]["autoattack"],
                     "cost": f"{ref['storage']['storage_bytes'] / 1024:.1f} KiB (float32)"})
    order = {"lam": 0, "width": 1, "exit": 2, "bits": 3}
    return sorted(rows, key=lambda r: order.get(r["panel"], 9))


def _table(summary: dict[str, Any]) -> str:
    header = ("dial", "model", "point", "clean %", "AA %", "cost")
    body = [(r["panel"], r["model"], r["point"], f"{r['clean']:.1f}", f"{r['autoattack']:.1f}",
             r["cost"]) for r in summary["table"]]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in (3, 4) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def _lam_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for label, name in (("float", "FLOAT"), ("oat", "OAT")):
        job = summary["jobs"].get(label)
        if not job:
            continue
        pts = {p["dials"].get("lam"): p["accuracy"] for p in job["report"]["points"]}
        if 0.0 not in pts or 1.0 not in pts:
            continue
        a, b = pts[0.0], pts[1.0]
        lines.append(f"λ dial ({name}, one model): clean {a['clean']:.1f} → {b['clean']:.1f} "
                     f"({b['clean'] - a['clean']:+.1f}), AutoAttack {a['autoattack']:.1f} → "
                     f"{b['autoattack']:.1f} ({b['autoattack'] - a['autoattack']:+.1f}) from λ = 0 to 1")
    return lines


def run(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from ._common import UsageError

    if args.workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {args.workers}")
    if not 0 < args.eps <= 1:
        raise UsageError(f"--eps must be in (0, 1] on the [0, 1] scale, got {args.eps:g}")
    if not 1 <= args.n_test <= 1000:
        raise UsageError(f"--n-test must be in 1..1000 (the embedded test split), got {args.n_test}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be ≥ 1, got {args.epochs}")
    jobs = JOBS
    if args.jobs:
        names = [s.strip() for s in args.jobs.split(",") if s.strip()]
        known = {j.label: j for j in JOBS + OPTIONAL_JOBS}
        bad = [n for n in names if n not in known]
        if bad:
            raise UsageError(f"unknown job(s) {bad}; choose from {', '.join(known)}")
        jobs = [known[n] for n in names]
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise UsageError(f"{out} is not empty (an earlier demo?); pass --overwrite to replace it "
                             "or choose another --out")
        shutil.rmtree(out)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    summary = run_demo(out, seed=args.seed, eps=args.eps, epochs=args.epochs, n_test=args.n_test,
                       jobs=jobs, workers=args.workers)
    print(f"{DEMO_DATA} test split (first {args.n_test} images), L∞ ε = {args.eps:g} on the [0, 1] "
          "scale; AA = AutoAttack fast (APGD-CE + APGD-T); models: mini_cnn")
    print(_table(summary))
    for line in _lam_lines(summary):
        print(line)
    print(f"wrote {out / 'results.json'} and {out / 'dials.png'} in {time.perf_counter() - t0:.0f} s "
          f"({args.workers} worker process(es))")
    return 0
