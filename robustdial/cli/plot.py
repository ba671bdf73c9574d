"""``robustdial plot``: SA–RA trade-off curve of one or more evaluation JSONs.

Examples::

    robustdial plot oat_eval.json float_eval.json --attack pgd-20 --out curve.png
    robustdial plot float_eval.json --attack pgd-20 --out curve.png \\
        --frontier pgdat_0.json pgdat_0.2.json pgdat_0.7.json pgdat_1.json

Each RESULT.json is an ``EvalResult.to_json`` file (rows of condition, attack,
clean %, robust %); each becomes one curve with a point per λ. ``--frontier``
files (PGD-AT models trained at fixed λ) are drawn as a dashed baseline.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plot", help="SA–RA trade-off curve from evaluation JSONs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", metavar="RESULT.json", help="EvalResult JSON files")
    p.add_argument("--attack", required=True, help="attack name whose robust accuracy is the y axis")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--label", action="append", default=[],
                   help="legend label per RESULT.json, in order (default: the file name)")
    p.add_argument("--frontier", nargs="+", default=[], metavar="PGDAT_RESULT.json",
                   help="fixed-λ baseline models (one JSON each, or one JSON with several rows)")
    p.add_argument("--frontier-label", default="PGD-AT (fixed λ)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=run)
    return p


def _frontier_point_label(res, path: Path, row) -> str:
    lam = row.condition.get("lam")
    if lam is None:  # a fixed-λ model: its training λ, if the run recorded it
        meta = res.meta or {}
        lam = (meta.get("method") or {}).get("lam") if isinstance(meta.get("method"), dict) else None
        lam = meta.get("lam", lam)
    return f"λ={float(lam):g}" if lam is not None else path.stem


def run(args: argparse.Namespace) -> int:
    from robustdial.evaluation import EvalResult, plot_tradeoff

    if args.label and len(args.label) != len(args.results):
        raise SystemExit(f"--label given {len(args.label)} times for {len(args.results)} result files")
    results = {}
    for i, path in enumerate(args.results):
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
        label = args.label[i] if args.label else path.stem
        results[label] = EvalResult.from_json(path)
    frontier = None
    if args.frontier:
        frontier = []
        for path in map(Path, args.frontier):
            if not path.is_file():
                raise SystemExit(f"{path}: no such file")
            res = EvalResult.from_json(path)
            rows = res.select(attack=args.attack)
            if not rows:
                have = sorted({r.attack for r in res.rows})
                raise SystemExit(f"{path}: no rows for attack {args.attack!r}; attacks present: {have}")
            frontier += [(r.clean_acc, r.robust_acc, _frontier_point_label(res, path, r)) for r in rows]
    try:
        out = plot_tradeoff(results, args.attack, args.out, frontier=frontier,
                            frontier_label=args.frontier_label, title=args.title)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    sys.stdout.write(f"wrote {out}\n")
    return 0
