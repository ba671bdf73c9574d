"""``robustdial checklist``: the gradient-obfuscation checklist (FLOAT Table 2) for a checkpoint.

Examples::

    robustdial checklist runs/float_mnist --source runs/pgdat_mnist --eps 0.3 --dial lam=0,1
    robustdial checklist runs/oat_c10 --eps 8/255 --dial lam=0,0.2,1 --n 1000 --json check.json

``--dial NAME=V1,V2,...`` (repeatable) gives the grid of conditions; every
combination is checked. ε is on the [0, 1] pixel scale (``8/255``, not 8).
CHECKPOINT (and ``--source``) is a checkpoint directory or a run directory
(its ``best/``, else ``last/``); the data set defaults to the one recorded in
the checkpoint's run.json.
"""
from __future__ import annotations

import argparse
import sys

from ._common import (UsageError, check_positive, check_writable, parse_device, parse_dials, parse_eps,
                      resolve_checkpoint)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("checklist", help="gradient-obfuscation checklist of a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint or run directory of the defended model")
    p.add_argument("--source", help="checkpoint or run directory of an independently trained model "
                                    "(transfer test)")
    p.add_argument("--eps", default=None, help="L∞ radius on the [0, 1] scale, e.g. 0.3 or 8/255 "
                                               "(default: the training attack's ε from run.json)")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=V1,V2",
                   help="dial values to check, e.g. lam=0,1 (repeatable; grid of all combinations)")
    p.add_argument("--data", help="dataset name (default: the one in run.json)")
    p.add_argument("--data-dir", help="data root (default $ROBUSTDIAL_DATA or ~/.cache/robustdial/data)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--download", action="store_true",
                   help="fetch the official dataset files (md5-checked) into the data root if missing")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip checking the dataset files against the published md5s")
    p.add_argument("--n", type=int, default=1000, help="number of test samples")
    p.add_argument("--steps", type=int, default=20, help="white-box PGD steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--json", dest="json_out", help="write the checklist as JSON here")
    p.set_defaults(func=run)
    return p


def _grid(items: list[str]) -> list[dict]:
    from robustdial.condition import sweep

    values = parse_dials(items)
    return sweep(values) if values else [{}]


def run(args: argparse.Namespace) -> int:
    import torch

    from robustdial.data import load_dataset
    from robustdial.engine import load
    from robustdial.evaluation.checklist import obfuscation_checklist

    from .eval_cmd import _default_eps, check_dials

    # every input is checked before a model or the data is loaded
    eps = parse_eps(args.eps) if args.eps is not None else None
    if eps == 0:
        raise UsageError("--eps must be > 0 for the checklist (its ε sweep runs up from it)")
    check_positive(args.steps, "--steps")
    check_positive(args.n, "--n")
    check_writable(args.json_out, "--json")
    device = parse_device(args.device) or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    grid = _grid(args.dial)
    ckpt = resolve_checkpoint(args.checkpoint)
    source_ckpt = resolve_checkpoint(args.source) if args.source else None
    model = load(ckpt, device)
    check_dials(model, parse_dials(args.dial), where=f"checkpoint {ckpt}")
    if eps is None:
        eps = _default_eps(getattr(model, "rd_run", {}) or {})
        if eps is None:
            raise UsageError(f"{ckpt / 'run.json'} records no training attack ε; pass --eps (e.g. 8/255)")
    source = load(source_ckpt, device) if source_ckpt else None
    name = args.data or ((getattr(model, "rd_run", {}) or {}).get("dataset") or {}).get("name")
    if not name:
        raise UsageError(f"{ckpt / 'run.json'} names no dataset; pass --data NAME")
    data = load_dataset(name, root=args.data_dir, split=args.split, download=args.download,
                        verify=args.verify)
    result = obfuscation_checklist(model, data, eps=eps, conditions=grid,
                                   source_model=source, steps=args.steps,
                                   batch_size=args.batch_size, max_samples=args.n, device=device)
    sys.stdout.write(result.to_table() + "\n")
    sys.stdout.write(("all checks passed" if result.passed else
                      f"{len(result.failed())} check(s) FAILED") + "\n")
    if args.json_out:
        from robustdial.evaluation._provenance import provenance

        result.meta["provenance"] = provenance(device)
        result.meta["checkpoint"] = str(ckpt)
        result.meta["source"] = None if source_ckpt is None else str(source_ckpt)
        result.to_json(args.json_out)
    return 0 if result.passed else 1
