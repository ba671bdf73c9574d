"""``robustdial eval CKPT_DIR``: clean and robust accuracy of a checkpoint, over a dial grid.

Examples::

    robustdial eval runs/pgdat --attack pgd-20 --attack fgsm --eps 8/255 --json eval.json
    robustdial eval runs/oat --attack pgd-20 --dial lam=0,0.2,0.7,1.0 --dial width=0.5,1.0

``--dial`` lists are combined as a cartesian grid. ε (``--eps``, default: the
training attack's ε from ``run.json``, else 8/255) is the L∞ radius on the
[0, 1] scale (8/255, not 8; an L2 attack takes its radius as an option,
``pgdl2-20:eps=2``). Multi-exit models (two or more exits) and no ``--dial``
get the RDI-Nets Tables 2–4 layout from
``robustdial.evaluation.multi_exit.report``: TA, ATA per attack form, worst
case, average MFlops and saving; without ``--attack`` that report runs PGD-20
with the paper's step where it applies (else 2.5·ε/20). Other models without
``--attack`` get PGD-50 (step 2.5·ε/50, random start); for AutoAttack at every
dial use ``robustdial report``.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ._common import (UsageError, check_positive, check_writable, parse_device, parse_dials, parse_eps,
                      parse_fraction, resolve_checkpoint)

__all__ = ["DEFAULT_ATTACK", "add_parser", "run", "check_dials", "is_multi_exit"]

DEFAULT_ATTACK = "pgd-50"
"""Without ``--attack``: PGD-50, step 2.5·ε/50, random start (a strong default; AutoAttack is
``robustdial report`` or ``--attack autoattack``)."""

_log = logging.getLogger(__name__)

_DIAL_WORDS = {"lam": "λ", "width": "width", "exit": "exit", "lam_th": "λ threshold"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint under attacks and dials",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + run.json)")
    p.add_argument("--attack", action="append", default=[], metavar="SPEC",
                   help="attack spec, e.g. pgd-20, fgsm, cw-50, autoattack (repeatable)")
    p.add_argument("--eps", default=None, help="ε on the [0, 1] scale, e.g. 8/255 or 0.3")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--dataset", default=None, help="dataset name (default: the one in run.json)")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=V1,V2",
                   help="dial values to sweep, e.g. lam=0,0.2,1.0 (repeatable: grid)")
    p.add_argument("--thresholds", default=None,
                   help="multi-exit: entropy thresholds t1,t2,… (default: the model's)")
    p.add_argument("--data-dir", default=None,
                   help="dataset root (default $ROBUSTDIAL_DATA, else ~/.cache/robustdial/data)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official dataset files (md5-checked) into the data root if missing")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip checking the dataset files against the published md5s")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate the first N samples")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if available)")
    p.add_argument("--seed", type=int, default=0, help="seed for random starts")
    p.add_argument("--json", dest="json_out", default=None, help="write rows + provenance as JSON")
    p.add_argument("--csv", dest="csv_out", default=None, help="write rows as CSV")
    return p


def check_dials(model: Any, dials: dict[str, list[Any]], where: str = "the model") -> None:
    """Raise :class:`UsageError` if the model lacks a requested dial (naming the ones it has)."""
    from robustdial.condition import dial_specs

    specs = dial_specs(model)
    for name in dials:
        if name not in specs:
            have = ", ".join(f"{k} ∈ {s.describe()}" for k, s in specs.items()) or "none"
            word = _DIAL_WORDS.get(name, name)
            hint = (" (it was trained without conditioning; train with OAT or FLOAT for a λ dial)"
                    if name == "lam" else "")
            raise UsageError(f"{where} has no {word} dial ({name!r}){hint}; its dials: {have}")
        for value in dials[name]:
            try:
                specs[name].check(name, value)
            except ValueError as exc:
                raise UsageError(f"{exc} (valid: {specs[name].describe()})") from None


def _default_eps(run_info: dict[str, Any]) -> float | None:
    """The training attack's ε recorded in run.json (slimmable methods nest their inner method)."""
    method = run_info.get("method") or {}
    while isinstance(method, dict):
        attack = method.get("attack")
        if isinstance(attack, dict) and isinstance(attack.get("eps"), (int, float)):
            return float(attack["eps"])
        method = method.get("inner")
    return None


def _dataset_name(run_info: dict[str, Any], override: str | None, ckpt: Path) -> str:
    if override:
        return override
    ds = run_info.get("dataset") or run_info.get("data")
    if isinstance(ds, dict) and ds.get("name"):
        return str(ds["name"])
    if isinstance(ds, str):
        return ds
    raise UsageError(f"{ckpt / 'run.json'} does not name the dataset; pass --dataset NAME")


def is_multi_exit(model: Any) -> bool:
    """A model with early exits (``num_exits`` ≥ 2); a single-head SmallCNN also has ``forward_exits``."""
    n = getattr(model, "num_exits", None)
    return hasattr(model, "forward_exits") and isinstance(n, int) and n >= 2


def _multi_exit_report(model: Any, data: Any, args: argparse.Namespace, eps: float,
                       device: Any) -> None:
    from robustdial.evaluation.multi_exit import report as multi_exit_report

    kwargs: dict[str, Any] = {"eps": eps, "attacks": list(args.attack) or None, "seed": args.seed,
                              "batch_size": args.batch_size, "max_samples": args.max_samples,
                              "device": device}
    if args.thresholds:
        kwargs["thresholds"] = tuple(parse_fraction(t) for t in args.thresholds.split(","))
    report = multi_exit_report(model, data, **kwargs)
    print(report.to_table())
    if args.json_out:
        from robustdial.evaluation import provenance

        body = {**report.to_dict(), "eps": eps, "provenance": provenance(device)}
        Path(args.json_out).write_text(json.dumps(body, indent=2, default=str) + "\n")
    if args.csv_out and hasattr(report, "to_csv"):
        report.to_csv(args.csv_out)


def run(args: argparse.Namespace) -> int:
    from robustdial.attacks import parse_attack
    from robustdial.condition import sweep
    from robustdial.data import load_dataset
    from robustdial.engine import load
    from robustdial.evaluation import evaluate

    # every input is checked before the model, the data or an attack is touched
    device = parse_device(args.device)
    eps = parse_eps(args.eps) if args.eps is not None else None
    check_positive(args.max_samples, "--max-samples")
    check_writable(args.json_out, "--json")
    check_writable(args.csv_out, "--csv")
    ckpt = resolve_checkpoint(args.checkpoint)
    dials = parse_dials(args.dial)
    model = load(ckpt, device=device)
    run_info = getattr(model, "rd_run", {}) or {}
    check_dials(model, dials, where=f"checkpoint {ckpt}")
    eps_default = _default_eps(run_info)
    if eps is None:
        eps = eps_default or 8 / 255
        _log.info("ε = %.5g (%s); set it with --eps", eps,
                  "the training attack's" if eps_default else "default 8/255")
    specs = list(args.attack)
    if not specs and not (is_multi_exit(model) and not dials):
        specs = [DEFAULT_ATTACK]
        _log.info("no --attack given: %s (step 2.5·ε/50, random start); `robustdial report` runs "
                  "AutoAttack", DEFAULT_ATTACK)
    attacks = {spec: parse_attack(spec, eps=eps) for spec in specs}
    data = load_dataset(_dataset_name(run_info, args.dataset, ckpt), root=args.data_dir,
                        split=args.split, download=args.download, verify=args.verify)
    if is_multi_exit(model) and not dials:
        _multi_exit_report(model, data, args, eps, device)
        return 0
    conditions = sweep(dials) if dials else None
    result = evaluate(model, data, attacks, conditions, batch_size=args.batch_size,
                      max_samples=args.max_samples, seed=args.seed)
    result.meta.update({"checkpoint": str(ckpt), "eps": eps, "split": args.split,
                        "run": {k: run_info.get(k) for k in ("model", "method", "dataset")}})
    print(f"{data.name}/{args.split}, ε = {eps:.5g} (L∞, [0, 1] scale)")
    print(result.to_table())
    if args.json_out:
        result.to_json(args.json_out)
    if args.csv_out:
        result.to_csv(args.csv_out)
    return 0
