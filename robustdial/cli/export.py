"""``robustdial export CKPT --dial lam=0.7 --dial width=0.5 --out DIR``: a plain model at fixed dials.

Writes ``model.safetensors`` and ``layout.json`` (format robustdial-export/2: a
graph of whitelisted torch.nn layers and operations; data only, no code);
``--onnx`` adds ``model.onnx``. FLOAT weight noise is baked in with its seeded
η (``--noise fixed``, default) or removed (``--noise off``). The export is
written to a temporary directory and renamed into place; a non-empty ``--out``
is refused unless ``--overwrite`` (which replaces all of its contents).

Load an export with ``robustdial.export.load_exported(DIR)`` or with the
standalone file ``robustdial/export/loader.py`` of the repository (torch +
safetensors only; copy it anywhere): ``python loader.py DIR``.

Examples::

    robustdial export runs/oats_mnist --dial lam=0.2 --dial width=0.5 --out exports/oats_l02_w05
    robustdial export runs/float_mnist --dial lam=0.7 --dial lam_th=0.5 --noise off --onnx --out exp/
    robustdial export runs/float_mnist --dial lam=0.3 --out exp/ --overwrite
    python robustdial/export/loader.py exp/
"""
from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a plain model at fixed dials (safetensors, ONNX)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory (a run dir picks best/, else last/)")
    p.add_argument("--dial", action="append", default=[], metavar="NAME=VALUE",
                   help="operating point, e.g. lam=0.7, width=0.5, lam_th=0.5 (repeatable)")
    p.add_argument("--out", required=True, help="output directory (must be empty or new)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the contents of a non-empty --out (no earlier file survives)")
    p.add_argument("--noise", choices=("fixed", "off"), default="fixed",
                   help="FLOAT weight noise: baked in with its seeded draw, or removed")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (checked by onnx.checker)")
    p.add_argument("--keep-zero-channels", action="store_true",
                   help="do not remove all-zero (pruned) input channels")
    p.add_argument("--input-shape", default=None, help="C,H,W of one image (default: the run's dataset)")
    p.set_defaults(func=run)
    return p


def _shape(arg: str | None, run_info: dict) -> tuple[int, ...]:
    if arg:
        try:
            return tuple(int(v) for v in arg.split(","))
        except ValueError:
            raise ValueError(f"--input-shape must look like 3,32,32, got {arg!r}") from None
    name = ((run_info or {}).get("dataset") or {}).get("name")
    if name:
        from robustdial.data import dataset_info

        info = dataset_info(name)
        return (int(info.channels), int(info.size), int(info.size))
    return (3, 32, 32)


def run(args: argparse.Namespace) -> int:
    from robustdial.engine import load
    from robustdial.export import LOADER_PATH, export_model

    from ._common import parse_dials, resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    model = load(ckpt)
    dials = {}
    for name, values in parse_dials(args.dial).items():
        if len(values) != 1:
            raise ValueError(f"--dial {name} needs exactly one value for export, got {values}")
        dials[name] = values[0]
    shape = _shape(args.input_shape, getattr(model, "rd_run", {}))
    try:
        layout = export_model(model, args.out, dials, input_shape=shape, noise=args.noise,
                              remove_channels=not args.keep_zero_channels, onnx=args.onnx,
                              meta={"checkpoint": str(ckpt)}, overwrite=args.overwrite)
    except FileExistsError as exc:  # a user error: exit status 2 with the message
        raise ValueError(str(exc)) from None
    print(f"exported {ckpt} at {dials} (noise {args.noise}) -> {args.out}: "
          f"{len(layout['modules'])} modules, {layout['removed_channels']} zero channels removed"
          + (", model.onnx" if args.onnx else ""))
    print(f"load with: robustdial.export.load_exported({str(args.out)!r}), or "
          f"python {LOADER_PATH} {args.out} (standalone: torch + safetensors)")
    return 0
