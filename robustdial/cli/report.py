"""``robustdial report RUN_DIR``: AutoAttack at every dial, worst case, dial transfer, cost.

Writes into ``--out`` (default ``RUN_DIR/report``):

* ``report.json`` — everything, with provenance;
* ``records/<point>.json`` — one RobustBench-style ``model_info`` record per
  operating point (the footnote names the dial setting and the profile);
* ``report.md`` — the tables;
* ``report.png`` — clean and AutoAttack accuracy over the dial, marker size by
  cost, baselines beside;
* ``cache/`` — every (point, attack) result as it finishes: run the same
  command again after an interruption and it resumes; a changed model or
  setting is recomputed (the entries are keyed by a hash of both).

Examples::

    robustdial report runs/demo/float --dial lam=0,0.5,1 --n 200 --baseline runs/demo/pgd_at
    robustdial report runs/cifar10/oat --eps 8/255 --profile standard --data-dir DATA
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from ._common import UsageError, parse_dials, parse_fraction, resolve_checkpoint

__all__ = ["add_parser", "run", "write_report"]

_log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="robustness report: AutoAttack at every dial, worst "
                              "case, dial transfer, slowdown attacks, RobustBench records",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="run or checkpoint directory (model.safetensors + run.json)")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=V1,V2",
                   help="operating points: the product of these values (repeatable); default: "
                        "λ ∈ {0, .2, .5, .7, 1}, every trained width, every exit and adaptive")
    p.add_argument("--eps", default=None, help="L∞ ε on the [0, 1] scale, e.g. 8/255 (default: the "
                                               "training attack's)")
    p.add_argument("--n", type=int, default=None, help="evaluate the first N test images (default all)")
    p.add_argument("--profile", default="fast", choices=("fast", "standard"),
                   help="fast: AutoAttack APGD-CE + APGD-T (labelled so); standard: all four attacks")
    p.add_argument("--baseline", action="append", default=[], metavar="RUN_DIR",
                   help="baseline run evaluated beside (repeatable); the first is also the "
                        "transfer-check source model")
    p.add_argument("--data-dir", default=None,
                   help="dataset root (default $ROBUSTDIAL_DATA, else ~/.cache/robustdial/data)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the run's)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/report)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out that does not hold a report")
    p.add_argument("--cache", default=None,
                   help="where per-(point, attack) results are kept for resuming (default OUT/cache; "
                        "adversarial examples make it large: keep it out of version control)")
    p.add_argument("--bits", type=int, default=None,
                   help="stored bits per weight (default: the recipe's quantization, else 32)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if available)")
    p.add_argument("--calibrate-exits", action="store_true",
                   help="multi-exit models: choose the entropy thresholds on the validation split "
                        "(≈ 1/K of the images leave at each exit) instead of the stored ones")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-obfuscation checks")
    p.add_argument("--no-fold", action="store_true",
                   help="attack the module even where the folded plain graph is exact")
    p.add_argument("--no-latency", action="store_true", help="skip latency measurements")
    return p


def _recipe_bits(run_dir: Path) -> int | None:
    """Bits per weight from the run's recipe (a BinaryRelax / BinaryConnect scheme), if any."""
    import yaml

    for d in (run_dir, run_dir.parent):
        f = d / "recipe.yaml"
        if f.is_file():
            recipe = yaml.safe_load(f.read_text()) or {}
            for t in recipe.get("transforms") or []:
                if isinstance(t, dict) and "scheme" in t:
                    from robustdial.compress import bits_of

                    return int(bits_of(t["scheme"]))
    return None


def _exit_thresholds(model: Any, args: argparse.Namespace, run_info: dict[str, Any],
                     ckpt: Path) -> dict[str, Any] | None:
    """Calibrate (``--calibrate-exits``, validation split) or check the stored exit thresholds."""
    import math

    from robustdial.condition import dial_specs

    if "exit" not in dial_specs(model):
        if args.calibrate_exits:
            raise UsageError(f"checkpoint {ckpt} is not a multi-exit model; drop --calibrate-exits")
        return None
    if args.calibrate_exits:
        from robustdial.data import load_dataset
        from robustdial.models.early_exit import calibrate_thresholds

        from .eval_cmd import _dataset_name

        val = load_dataset(_dataset_name(run_info, args.dataset, ckpt), root=args.data_dir, split="val")
        t = calibrate_thresholds(model, val)  # stored in the loaded model only, not in the checkpoint
        return {"values": t, "source": f"calibrated on the {val.name} validation split "
                                       f"({len(val)} images, ≈ 1/{model.num_exits} per exit)"}
    t = [float(v) for v in model.exit_thresholds.tolist()]
    if any(math.isinf(v) for v in t):
        raise UsageError(f"checkpoint {ckpt} has uncalibrated exit thresholds ({t}): every input "
                         "would leave at the first exit; pass --calibrate-exits (validation split)")
    return {"values": t, "source": "stored in the checkpoint"}


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label) or "default"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        is_report = (out / "report.json").is_file() or (out / "cache").is_dir()
        if not is_report and not overwrite:
            raise UsageError(f"{out} is not empty and holds no report; choose another --out or "
                             "pass --overwrite to replace its contents")
        if not is_report and overwrite:
            import shutil

            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_report(rep: Any, out: Path) -> dict[str, Path]:
    """Write report.json, records/, report.md and report.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    rep.to_json(paths["json"])
    paths["md"].write_text(rep.to_markdown())
    rep.plot(paths["png"])
    rec_dir = out / "records"
    rec_dir.mkdir(exist_ok=True)
    for old in rec_dir.glob("*.json"):
        old.unlink()
    for p, rec in zip(rep.points, rep.records()):
        (rec_dir / f"{_slug(p['label'])}.json").write_text(json.dumps(rec, indent=1) + "\n")
    paths["records"] = rec_dir
    return paths


def run(args: argparse.Namespace) -> int:
    from robustdial.data import load_dataset
    from robustdial.engine import load
    from robustdial.evaluation import report

    from .eval_cmd import _dataset_name, _default_eps, check_dials

    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be ≥ 1, got {args.n}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    ckpt = resolve_checkpoint(args.run_dir)
    model = load(ckpt, device=args.device)
    run_info = getattr(model, "rd_run", {}) or {}
    dials = parse_dials(args.dial) or None
    if dials:
        check_dials(model, dials, where=f"checkpoint {ckpt}")
    eps = parse_fraction(args.eps) if args.eps is not None else _default_eps(run_info)
    if eps is None:
        raise UsageError(f"{ckpt / 'run.json'} records no training attack ε; pass --eps (e.g. 8/255)")
    if not 0 < eps <= 1:
        raise UsageError(f"--eps must be in (0, 1] on the [0, 1] scale (8/255, not 8), got {eps:g}")
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "report"
    _prepare_out(out, args.overwrite)
    data = load_dataset(_dataset_name(run_info, args.dataset, ckpt), root=args.data_dir,
                        split=args.split)
    baselines = {}
    for b in args.baseline:
        bckpt = resolve_checkpoint(b)
        baselines[Path(b).name or str(b)] = load(bckpt, device=args.device)
    thresholds = _exit_thresholds(model, args, run_info, ckpt)
    bits = args.bits if args.bits is not None else (_recipe_bits(run_dir) or 32)
    rep = report(model, data, eps=eps, dials=dials, profile=args.profile, n=args.n,
                 baselines=baselines, cache_dir=Path(args.cache) if args.cache else out / "cache",
                 name=run_dir.name or None, bits=bits,
                 batch_size=args.batch_size, seed=args.seed, device=args.device,
                 fold=not args.no_fold, checks=not args.no_checks, latency=not args.no_latency)
    rep.data["command"] = {"run_dir": str(run_dir), "checkpoint": str(ckpt),
                           "baselines": list(args.baseline)}
    if thresholds is not None:
        rep.data["exit_thresholds"] = thresholds
    paths = write_report(rep, out)
    print(rep.to_markdown().split("\n## ")[0].rstrip())
    print(f"\nwrote {paths['json']}, {paths['md']}, {paths['png']} and {len(rep.points)} records in "
          f"{paths['records']}")
    return 0
