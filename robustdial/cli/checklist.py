"""``robustdial checklist``: the gradient-obfuscation checklist (FLOAT Table 2) for a checkpoint.

Examples::

    robustdial checklist runs/float_mnist --source runs/pgdat_mnist --eps 0.3 --dial lam=0,1
    robustdial checklist runs/oat_c10 --eps 8/255 --dial lam=0,0.2,1 --n 1000 --json check.json

``--dial NAME=V1,V2,...`` (repeatable) gives the grid of conditions; every
combination is checked. ε is on the [0, 1] pixel scale (``8/255`` accepted).
The data set defaults to the one recorded in the checkpoint's run.json.
"""
from __future__ import annotations

import argparse
import sys

import yaml

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("checklist", help="gradient-obfuscation checklist of a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory of the defended model")
    p.add_argument("--source", help="checkpoint of an independently trained model (transfer test)")
    p.add_argument("--eps", required=True, help="L∞ radius on the [0, 1] scale, e.g. 0.3 or 8/255")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=V1,V2",
                   help="dial values to check, e.g. lam=0,1 (repeatable; grid of all combinations)")
    p.add_argument("--data", help="dataset name (default: the one in run.json)")
    p.add_argument("--data-dir", help="data root (default $ROBUSTDIAL_DATA or ~/.cache/robustdial/data)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=1000, help="number of test samples")
    p.add_argument("--steps", type=int, default=20, help="white-box PGD steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--json", dest="json_out", help="write the checklist as JSON here")
    p.set_defaults(func=run)
    return p


def _eps(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def _grid(items: list[str]) -> list[dict]:
    from robustdial.condition import sweep

    values = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--dial {item!r} must look like NAME=V1,V2")
        name, vals = item.split("=", 1)
        values[name.strip()] = [yaml.safe_load(v) for v in vals.split(",") if v.strip()]
    return sweep(values) if values else [{}]


def run(args: argparse.Namespace) -> int:
    import torch

    from robustdial.data import load_dataset
    from robustdial.engine import load
    from robustdial.evaluation.checklist import obfuscation_checklist

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load(args.checkpoint, device)
    source = load(args.source, device) if args.source else None
    name = args.data or ((getattr(model, "rd_run", {}) or {}).get("dataset") or {}).get("name")
    if not name:
        raise SystemExit("the checkpoint's run.json names no dataset; pass --data NAME")
    data = load_dataset(name, root=args.data_dir, split=args.split)
    try:
        result = obfuscation_checklist(model, data, eps=_eps(args.eps), conditions=_grid(args.dial),
                                       source_model=source, steps=args.steps,
                                       batch_size=args.batch_size, max_samples=args.n, device=device)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    sys.stdout.write(result.to_table() + "\n")
    sys.stdout.write(("all checks passed" if result.passed else
                      f"{len(result.failed())} check(s) FAILED") + "\n")
    if args.json_out:
        from robustdial.evaluation._provenance import provenance

        result.meta["provenance"] = provenance(device)
        result.meta["checkpoint"] = args.checkpoint
        result.meta["source"] = args.source
        result.to_json(args.json_out)
    return 0 if result.passed else 1
