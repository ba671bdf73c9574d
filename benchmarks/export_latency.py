"""Latency of an exported model ÷ the plain backbone of the same width (target ≤ 1.02).

The exported network (``robustdial.export.export_model`` ->
``robustdial.export.load_exported``: standard layers run by the loader's
interpreter loop over the exported graph) is timed against the *plain backbone at
that width*: the same architecture's own Python ``forward`` with ordinary
Conv2d / BatchNorm2d / Linear layers of ⌈w·C⌉ channels (``to_plain`` of an
unconditioned slimmable model). Both run in eval mode under
``torch.inference_mode``, interleaved, median of ``--repeats``. Writes JSON with
provenance to ``benchmarks/results/export_latency.json``.

The allocator matters on CPU. With glibc's default thresholds, large freed
activation blocks are given back to the OS and page-faulted in again on the
next forward; how often depends on *when* a forward frees its intermediates,
which differs between the exported graph (the loader frees each value right
after its last use) and the architecture's own ``forward``, although both run
exactly the same kernels (same aten op counts in the profiler). So the
benchmark measures each model twice, in fresh processes: with the default
allocator and with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
raised (no trimming), and reports both ratios (``--malloc default|no-trim``
measures one of them only).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_latency.py                    # ≈ 4 min CPU (both allocators)
    .venv/bin/python benchmarks/export_latency.py --device cuda --batch-size 256
    .venv/bin/python benchmarks/export_latency.py --quick --out /tmp/l.json            # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import robustdial as rd
from robustdial.evaluation._provenance import provenance
from robustdial.export import export_model, load_exported, to_plain

ROOT = Path(__file__).resolve().parents[1]
NO_TRIM = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}


def _time(model, x, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="preact_resnet20")
    ap.add_argument("--conditioning", default="oat", choices=("oat", "float"))
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--lam", type=float, default=0.7)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--malloc", choices=("both", "default", "no-trim"), default="both",
                    help="allocator setting(s) to measure under (each in a fresh process)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_latency.json"))
    args = ap.parse_args()
    if args.malloc == "both":
        return _both(args)
    if args.quick:
        args.batch_size, args.repeats = 8, 5
    device = torch.device(args.device)
    widths = tuple(sorted({args.width, 1.0}))
    model = rd.create_model(args.model, conditioning=args.conditioning, widths=widths).eval()
    backbone = to_plain(rd.create_model(args.model, widths=widths).eval(), {"width": args.width})
    with tempfile.TemporaryDirectory() as d:
        export_model(model, d, {"lam": args.lam, "width": args.width})  # d exists, empty
        exported = load_exported(d, device)
    backbone = backbone.to(device).eval()
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    t_exp, t_plain = [], []
    with torch.inference_mode():
        for _ in range(3):
            exported(x), backbone(x)
        for i in range(args.repeats):  # interleaved, alternating order
            pair = [(exported, t_exp), (backbone, t_plain)]
            for m, acc in (pair if i % 2 == 0 else pair[::-1]):
                acc.append(_time(m, x, device))
    ratio = statistics.median(t_exp) / statistics.median(t_plain)
    result = {"benchmark": "export_latency", "model": args.model, "conditioning": args.conditioning,
              "dials": {"lam": args.lam, "width": args.width}, "batch_size": args.batch_size,
              "repeats": args.repeats, "median_s_exported": statistics.median(t_exp),
              "median_s_plain_backbone": statistics.median(t_plain), "ratio": ratio,
              "malloc": args.malloc, "malloc_env": {k: os.environ.get(k) for k in NO_TRIM},
              "target": "ratio <= 1.02", "provenance": provenance(device)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"exported / plain backbone at width {args.width}: {ratio:.3f} -> {out}")


def _both(args: argparse.Namespace) -> None:
    """Measure under the default and the no-trim allocator, each in a fresh process."""
    runs = {}
    with tempfile.TemporaryDirectory() as d:
        for mode in ("default", "no-trim"):
            env = {k: v for k, v in os.environ.items() if k not in NO_TRIM}
            if mode == "no-trim":
                env.update(NO_TRIM)
            out = Path(d) / f"{mode}.json"
            cmd = [sys.executable, __file__, "--malloc", mode, "--out", str(out), "--model", args.model,
                   "--conditioning", args.conditioning, "--width", str(args.width), "--lam", str(args.lam),
                   "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
                   "--device", args.device] + (["--quick"] if args.quick else [])
            subprocess.run(cmd, env=env, check=True)
            runs[mode] = json.loads(out.read_text())
    result = {"benchmark": "export_latency", "ratio_default_malloc": runs["default"]["ratio"],
              "ratio_no_trim_malloc": runs["no-trim"]["ratio"], "target": "ratio <= 1.02",
              "runs": runs, "provenance": provenance(torch.device(args.device))}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"exported / plain backbone: {result['ratio_default_malloc']:.3f} (default malloc), "
          f"{result['ratio_no_trim_malloc']:.3f} (no trim) -> {path}")


if __name__ == "__main__":
    main()
