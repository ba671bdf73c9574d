"""``robustdial demo``: the accuracy↔robustness dial on the bundled 8×8 digits, on a CPU.

Trains standard and PGD-AT baselines and two once-for-all models — FLOAT
(noisy weights + dual BN) and OAT (FiLM + dual BN) — and evaluates the
once-for-all models at λ ∈ {0, 0.2, 0.7, 1.0}: one model, four operating points.

No download: the data are scikit-learn's 1,797 bundled 8×8 handwritten digits
(train 1,294 / val 144 / test 359). Each entry of :data:`ENTRIES` trains a
pre-activation ResNet-20 (``create_model("preact_resnet20", in_channels=1)``;
its global average pool makes it run on 8×8 inputs, the spatial size goes
8 -> 4 -> 2) with one method, then every model is evaluated on the test split
clean, under FGSM and under PGD-20 (L∞, ε on the [0, 1] scale) at each of the
entry's dial settings. Writes ``results.json`` (rows, settings, provenance),
``trade_off.png`` (clean vs PGD-20 accuracy) and one checkpoint directory per
entry. About 2–3 minutes on 2 CPU cores.

To add a method, append one :class:`DemoEntry` to :data:`ENTRIES`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["DEMO_EPS", "DemoEntry", "ENTRIES", "add_parser", "run", "run_demo"]

_log = logging.getLogger(__name__)

DEMO_EPS = 0.2  # L∞ on the [0, 1] scale; digits have 17 grey levels (steps of 1/16)
DEMO_MODEL = "preact_resnet20"


def _pgd_at(eps: float) -> Any:
    from robustdial.methods import PGDAT

    # PGD-5 with step ε/2 during training: cheap and strong enough on 8×8 digits
    return PGDAT(lam=1.0, attack={"name": "pgd", "eps": eps, "alpha": eps / 2, "steps": 5})


def _float(eps: float) -> Any:
    from robustdial.methods.float import FLOAT

    # half clean (λ=0, BN_c, noiseless) / half PGD-5 adversarial (λ=1, BN_a, noisy weights)
    return FLOAT(attack={"name": "pgd", "eps": eps, "alpha": eps / 2, "steps": 5})


def _oat(eps: float) -> Any:
    from robustdial.methods.oat import OAT

    # per-sample λ from OAT's S1 = {0, .1, .2, .3, .4, 1}; λ=0.7 is served by interpolation
    return OAT(attack={"name": "pgd", "eps": eps, "alpha": eps / 2, "steps": 5})


DIAL = [{"lam": lam} for lam in (0.0, 0.2, 0.7, 1.0)]


def _standard(eps: float) -> Any:
    from robustdial.methods import Standard

    return Standard()


@dataclasses.dataclass(frozen=True)
class DemoEntry:
    """One trained model of the demo.

    Attributes:
        label: name in the table, the plot legend and the checkpoint directory.
        method: ``method(eps) -> Method`` (ε on the [0, 1] scale).
        model_options: extra :func:`robustdial.create_model` options (e.g.
            ``{"conditioning": "float"}``).
        conditions: dial settings to evaluate (``None``: the model as it is),
            e.g. ``[{"lam": 0.0}, {"lam": 1.0}]``.
        epochs: training epochs over the 1,294 training digits.
    """

    label: str
    method: Callable[[float], Any]
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    conditions: list[dict[str, Any]] | None = None
    epochs: int = 8


ENTRIES: list[DemoEntry] = [
    DemoEntry("standard", _standard),
    DemoEntry("pgd_at", _pgd_at),
    DemoEntry("float", _float, {"conditioning": "float"}, DIAL),
    DemoEntry("oat", _oat, {"conditioning": "oat"}, DIAL),
]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="the λ dial on bundled 8x8 digits: standard, PGD-AT, FLOAT, OAT (CPU, ~3 min)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eps", type=float, default=DEMO_EPS, help="L∞ ε on the [0, 1] scale")
    p.add_argument("--epochs", type=int, default=None, help="override every entry's epochs")
    p.add_argument("--max-test", type=int, default=None, help="evaluate on the first N test digits")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: the 8x8 model gains little from more, "
                        "and one thread cannot be slowed by oversubscribed cores)")
    return p


def _attacks(eps: float) -> dict[str, Any]:
    from robustdial.attacks import FGSM, PGD

    return {"fgsm": FGSM(eps=eps), "pgd-20": PGD(eps=eps, alpha=eps / 8, steps=20)}


def run_demo(out: str | Path, *, seed: int = 0, eps: float = DEMO_EPS, epochs: int | None = None,
             max_test: int | None = None, device: str = "cpu",
             entries: list[DemoEntry] | None = None) -> dict[str, Any]:
    """Train and evaluate every entry; write ``results.json`` and ``trade_off.png`` into ``out``.

    Returns:
        ``{label: EvalResult}`` for every entry, plus ``"_summary"``: the JSON dict written.
    """
    from robustdial.data import load_dataset
    from robustdial.engine import FitConfig, fit, save
    from robustdial.evaluation import evaluate, plot_tradeoff, provenance
    from robustdial.models import create_model
    from robustdial.utils import seed_everything

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("digits", split="train")
    val = load_dataset("digits", split="val")
    test = load_dataset("digits", split="test")
    attacks = _attacks(eps)
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {"dataset": "digits (8x8, scikit-learn)", "model": DEMO_MODEL,
                               "eps": eps, "eps_scale": "[0, 1], L∞", "seed": seed,
                               "attacks": {k: repr(a) for k, a in attacks.items()},
                               "entries": {}, "provenance": provenance(device)}
    for entry in entries if entries is not None else ENTRIES:
        t0 = time.perf_counter()
        seed_everything(seed)  # the initial weights come from the seed, not from earlier entries
        model = create_model(DEMO_MODEL, num_classes=10, in_channels=1, **entry.model_options)
        method = entry.method(eps)
        n_epochs = epochs if epochs is not None else entry.epochs
        cfg = FitConfig(epochs=n_epochs, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4,
                        schedule="cosine", seed=seed, device=device, augment="none",
                        select="last", log_every=20, progress=False)
        _log.info("demo: training %s (%s, %d epochs)", entry.label, method, n_epochs)
        fit(model, method, data=(train, val), config=cfg)
        train_s = time.perf_counter() - t0
        save(model, out / entry.label, {"method": method.config(), "dataset": {"name": "digits"},
                                         "seed": seed, "fit_config": cfg.to_dict()})
        res = evaluate(model, test, attacks, entry.conditions, batch_size=512, max_samples=max_test,
                       seed=seed)
        results[entry.label] = res
        summary["entries"][entry.label] = {"method": method.config(), "train_seconds": train_s,
                                           "rows": [r.to_dict() for r in res.rows],
                                           "checkpoint": str(out / entry.label)}
    plot_tradeoff(results, "pgd-20", out / "trade_off.png",
                  title=f"digits test: clean vs PGD-20 accuracy, ε = {eps:g} (L∞, [0, 1] scale)")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    results["_summary"] = summary
    return results


def _table(results: dict[str, Any]) -> str:
    header = ("model", "condition", "clean %", "FGSM %", "PGD-20 %")
    lines: list[tuple[str, ...]] = []
    from robustdial.evaluation import condition_label

    for label, res in results.items():
        if label.startswith("_"):
            continue
        by_cond: dict[str, dict[str, float]] = {}
        for r in res.rows:
            d = by_cond.setdefault(condition_label(r.condition), {"clean": r.clean_acc})
            d[r.attack] = r.robust_acc
        for cond, d in by_cond.items():
            lines.append((label, cond, f"{d['clean']:.1f}", f"{d.get('fgsm', float('nan')):.1f}",
                          f"{d.get('pgd-20', float('nan')):.1f}"))
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, lines)])


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be ≥ 1, got {args.threads}")
    torch.set_num_threads(args.threads)  # the command owns its process
    t0 = time.perf_counter()
    results = run_demo(args.out, seed=args.seed, eps=args.eps, epochs=args.epochs,
                       max_test=args.max_test, device=args.device)
    n = len(results["_summary"]["entries"])
    print(f"digits test split ({n} models, {DEMO_MODEL}), ε = {args.eps:g} (L∞, [0, 1] scale)")
    print(_table(results))
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'trade_off.png'} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0
