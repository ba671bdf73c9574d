"""``robustdial cost``: parameters, storage, MACs/FLOPs, ASIC delay and latency at a dial.

CHECKPOINT is a checkpoint directory or a run directory (its ``best/``, else
``last/``, as ``eval`` and ``export``); the input shape comes from ``--input-shape``,
else the run's dataset, else the model's own, else 3,32,32.

Examples::

    robustdial cost runs/float_mnist --dial lam=1.0
    robustdial cost --model resnet34 --option conditioning=float
    robustdial cost --model resnet34 --option conditioning=oat --option embed_dim=1 \\
        --option dual_bn=false --compare-model resnet34 --compare-option conditioning=float
"""
from __future__ import annotations

import argparse
import json
import sys

import yaml

from ._common import UsageError, check_positive, check_writable, input_shape, resolve_checkpoint

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cost", help="cost of a model at a dial (params, storage, MACs, delay)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory (or use --model)")
    p.add_argument("--model", help="registry name, to cost an untrained architecture")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="create_model option for --model (YAML-typed value)")
    p.add_argument("--compare-model", help="second architecture for a side-by-side ratio")
    p.add_argument("--compare-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=VALUE",
                   help="dial to cost at, e.g. width=0.5 or lam=1.0")
    p.add_argument("--input-shape", default=None,
                   help="C,H,W of one image (default: the run's dataset, else the model's, else 3,32,32)")
    p.add_argument("--bits", type=int, default=8, help="bits per stored weight (FLOAT's convention: 8)")
    p.add_argument("--quantized", metavar="SCHEME",
                   help="also report storage with the Binary-Relax layer rule at this scheme "
                        "(binary, ternary, 4bit or k bits; other parameters at 32 bits)")
    p.add_argument("--latency", action="store_true", help="also measure wall-clock latency")
    p.add_argument("--batch-size", type=int, default=64, help="batch for --latency")
    p.add_argument("--json", dest="json_out", help="write the report as JSON here")
    p.set_defaults(func=run)
    return p


def _kv(items: list[str], what: str) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {item!r} must look like KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"{what} {item!r}: {value!r} is not a valid value") from None
    return out


def _build(name: str | None, options: list[str], checkpoint: str | None):
    import robustdial as rd

    if checkpoint:
        from robustdial.engine import load

        model = load(resolve_checkpoint(checkpoint))
        run_info = getattr(model, "rd_run", {}) or {}
        return model, run_info
    if not name:
        raise UsageError("give a checkpoint directory or --model NAME")
    return rd.create_model(name, **_kv(options, "--option")), {}


def run(args: argparse.Namespace) -> int:
    from robustdial.cost import cost_report

    check_writable(args.json_out, "--json")
    check_positive(args.bits, "--bits")
    model, run_info = _build(args.model, args.option, args.checkpoint)
    dials = _kv(args.dial, "--dial")
    shape = input_shape(args.input_shape, run_info, model)
    report = {"model": getattr(model, "rd_spec", {}), "input_shape": list(shape),
              "cost": cost_report(model, shape, dials=dials, bits=args.bits,
                                  latency=args.latency, batch_size=args.batch_size)}
    if args.quantized:
        from robustdial.compress import storage_bits

        scheme = int(args.quantized) if str(args.quantized).isdigit() else args.quantized
        bits = storage_bits(model, scheme)
        report["quantized"] = {"scheme": str(args.quantized), "storage_bits": bits,
                               "storage_bytes": bits / 8,
                               "float32_bytes": storage_bits(model, "float") / 8}
    if args.compare_model:
        other, _ = _build(args.compare_model, args.compare_option, None)
        rep2 = cost_report(other, shape, dials={}, bits=args.bits, latency=args.latency,
                           batch_size=args.batch_size)
        key = f"storage_bytes_{args.bits}bit"
        report["compare"] = {"model": getattr(other, "rd_spec", {}), "cost": rep2,
                             "storage_ratio": report["cost"][key] / rep2[key],
                             "delay_ratio": report["cost"]["delay"]["total_ns"] / rep2["delay"]["total_ns"]}
    _print(report, args.bits)
    if args.json_out:
        from robustdial.evaluation._provenance import provenance

        with open(args.json_out, "w") as fh:
            json.dump({**report, "provenance": provenance()}, fh, indent=2, default=str)
    return 0


def _print(report: dict, bits: int) -> None:
    rows = [("", report["cost"])]
    if "compare" in report:
        rows.append(("compare: ", report["compare"]["cost"]))
    for prefix, c in rows:
        out = sys.stdout
        out.write(f"{prefix}conditioning={c['conditioning']} dials={c['dials']}\n")
        out.write(f"  params            {c['params_total']:,} (non-zero {c['params_nonzero']:,})\n")
        out.write(f"  storage @{bits}-bit    {c[f'storage_bytes_{bits}bit'] / 1e6:.2f} MB "
                  f"(FLOAT convention; non-zero only {c[f'storage_bytes_{bits}bit_nonzero'] / 1e6:.2f} MB)\n")
        out.write(f"  MACs / image      {c['macs_per_image'] / 1e6:.2f} M "
                  f"(density-effective {c['macs_per_image_density_effective'] / 1e6:.2f} M; "
                  f"conv MACs/2^20 = {c['mflops_rdi']:.2f})\n")
        out.write(f"  FLOPs / image     {c['flops_per_image'] / 1e6:.2f} M (torch flop_counter)\n")
        d = c["delay"]
        out.write(f"  conv delay        {d['total_ns'] / 1e6:.3f} ms (FLOAT Eq. 7-9, {d['kind']}; "
                  f"per-layer ÷ plain: min {d['normalized_min']:.3f} max {d['normalized_max']:.3f} "
                  f"mean {d['normalized_mean']:.3f})\n")
        if "latency" in c:
            out.write(f"  latency           {c['latency']['median_s'] * 1e3:.2f} ms / batch of "
                      f"{c['latency']['batch_size']}\n")
    if "quantized" in report:
        q = report["quantized"]
        sys.stdout.write(f"quantized ({q['scheme']}, Binary-Relax layer rule): {q['storage_bytes'] / 1e3:.1f} kB "
                         f"vs float32 {q['float32_bytes'] / 1e3:.1f} kB\n")
    if "compare" in report:
        sys.stdout.write(f"storage ratio {report['compare']['storage_ratio']:.3f}, "
                         f"delay ratio {report['compare']['delay_ratio']:.3f}\n")
