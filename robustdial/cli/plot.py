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

from ._common import UsageError, check_writable

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


def _read_result(path: Path):
    """An ``EvalResult`` JSON file, or :class:`UsageError` saying what the file is instead."""
    import json

    from robustdial.evaluation import EvalResult

    hint = "plot reads the --json files written by `robustdial eval`"
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        obj = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a JSON file (binary content); {hint}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not a JSON file ({e.msg} at line {e.lineno}); {hint}") from None
    if not isinstance(obj, dict) or "rows" not in obj:
        raise UsageError(f"{path}: JSON, but not an evaluation result (no 'rows'); {hint} "
                         "(the multi-exit report's JSON has no trade-off rows)")
    try:
        return EvalResult.from_dict(obj)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: malformed evaluation rows ({type(e).__name__}: {e}); {hint}") from None


def run(args: argparse.Namespace) -> int:
    from robustdial.evaluation import plot_tradeoff

    check_writable(args.out, "--out")
    if args.label and len(args.label) != len(args.results):
        raise UsageError(f"--label given {len(args.label)} times for {len(args.results)} result files")
    results = {}
    for i, path in enumerate(map(Path, args.results)):
        label = args.label[i] if args.label else path.stem
        results[label] = _read_result(path)
    frontier = None
    if args.frontier:
        frontier = []
        for path in map(Path, args.frontier):
            res = _read_result(path)
            rows = res.select(attack=args.attack)
            if not rows:
                have = sorted({r.attack for r in res.rows})
                raise UsageError(f"{path}: no rows for attack {args.attack!r}; attacks present: {have}")
            frontier += [(r.clean_acc, r.robust_acc, _frontier_point_label(res, path, r)) for r in rows]
    out = plot_tradeoff(results, args.attack, args.out, frontier=frontier,
                        frontier_label=args.frontier_label, title=args.title)
    sys.stdout.write(f"wrote {out}\n")
    return 0
