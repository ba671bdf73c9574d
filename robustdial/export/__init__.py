"""Export a model at fixed dials as a plain network in data-only formats.

``export_model(model, out_dir, dials={"lam": 0.7, "width": 0.5})`` writes:

* ``model.safetensors`` — the plain network's tensors;
* ``layout.json`` — the network as a graph of whitelisted layers and operations
  (format ``robustdial-export/2``, :mod:`robustdial.export.graph`), plus the
  dials, input shape and the provenance of the export;
* ``model.onnx`` with ``onnx=True`` (checked with ``onnx.checker``).

No code is written into the artifact. :func:`load_exported` (the standalone
file ``robustdial/export/loader.py``: torch + safetensors only, copy it
anywhere) rebuilds the network from the layout with fixed tables of layers and
operations and an interpreter loop; it never imports, evaluates or unpickles
anything from the artifact.

The export is written into a temporary directory beside ``out_dir``, checked
by loading it back, and renamed into place. A non-empty ``out_dir`` is refused
unless ``overwrite=True``, which replaces its whole contents (no file of an
earlier export survives).

The plain network (:func:`to_plain`) has ordinary Conv2d / BatchNorm2d /
Linear layers sliced to the width, the chosen BN of every dual / switchable BN,
FiLM folded into the BNs, FLOAT noise baked in (seeded η) or removed, and the
all-zero input channels of pruned convs removed where the producing conv can
drop them too. Its outputs equal the conditioned model's at those dials (eval
mode, same noise mode) to float tolerance.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import graph as _graph
from .graph import FORMAT, graph_layout, remove_zero_channels, trace
from .loader import load_exported
from .plain import film_affine, to_plain

__all__ = ["FORMAT", "LOADER_PATH", "export_model", "export_onnx", "film_affine", "graph_layout",
           "load_exported", "remove_zero_channels", "to_plain", "trace"]

_log = logging.getLogger(__name__)
LOADER_PATH = Path(__file__).with_name("loader.py")  # the standalone loader (not copied into exports)
_RESERVED_KEYS = frozenset({"format", "modules", "constants", "graph", "doc", "dials", "noise",
                            "input_shape", "removed_channels", "source_model", "provenance"})


def export_onnx(plain: nn.Module, path: str | Path, input_shape: Sequence[int]) -> Path:
    """``torch.onnx.export`` of a plain model (batch axis dynamic), checked by ``onnx.checker``."""
    import onnx

    path = Path(path)
    x = torch.zeros((1, *input_shape))
    torch.onnx.export(plain, (x,), str(path), dynamo=False, input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"},
                                                             "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def _check_target(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds files to replace; refuses what must not be replaced."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out} exists and is not a directory; choose another output path")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite on the command "
                              "line) to replace its contents, or choose an empty directory")
    return True


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` directory to ``out`` (replacing ``out`` if allowed)."""
    if _check_target(out, overwrite):
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.exists():
        out.rmdir()  # empty: replaced by the new export
    os.rename(tmp, out)


def _check_loads(tmp: Path, gm: nn.Module, input_shape: Sequence[int]) -> None:
    """Load the written export with the standalone loader; it must reproduce ``gm``."""
    net = load_exported(tmp)
    x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = gm.cpu()(x)
        got = net(x)
    if not torch.allclose(got, ref, atol=1e-5, rtol=1e-5):
        raise RuntimeError(f"the written export does not reproduce the model (max abs diff "
                           f"{(got - ref).abs().max().item():.3g}); please report this")


def export_model(model: nn.Module, out_dir: str | Path, dials: Mapping[str, Any] | None = None, *,
                 input_shape: Sequence[int] = (3, 32, 32), noise: str = "fixed",
                 remove_channels: bool = True, onnx: bool = False,
                 meta: Mapping[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the plain model at ``dials`` to ``out_dir`` (atomically).

    Args:
        model: the trained (conditioned) model; not modified.
        out_dir: output directory; must not exist or be empty unless ``overwrite``.
        dials: the operating point, e.g. ``{"lam": 0.7, "width": 0.5}``.
        input_shape: one image's (C, H, W).
        noise: FLOAT weight noise ``"fixed"`` (baked in) or ``"off"``.
        remove_channels: drop all-zero input channels where structurally possible.
        onnx: also write ``model.onnx``.
        meta: extra JSON metadata stored in ``layout.json``.
        overwrite: replace the contents of a non-empty ``out_dir`` (all of them:
            no file of an earlier export is kept).

    Returns:
        The layout dict written to ``layout.json``.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false, or
            is a file.
        ValueError: the model cannot be expressed with the loader's layers and
            operations at these dials.
    """
    from safetensors.torch import save_file

    out = Path(os.path.abspath(out_dir))
    _check_target(out, overwrite)  # refuse before the work
    clash = sorted(set(meta or {}) & _RESERVED_KEYS)
    if clash:
        raise ValueError(f"meta keys {clash} would replace the layout's own fields; rename them")
    plain = to_plain(model, dials, input_shape=input_shape, noise=noise)
    gm = trace(plain)
    removed = remove_zero_channels(gm) if remove_channels else 0
    gm.recompile()
    layout = graph_layout(gm)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in gm.state_dict().items()}
    try:
        from robustdial.evaluation._provenance import provenance

        prov: Any = provenance()
    except Exception as exc:  # noqa: BLE001 - provenance is best effort
        prov = {"error": str(exc)}
    layout.update({
        "doc": _graph.__doc__,
        "dials": {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                  for k, v in dict(dials or {}).items()},
        "noise": noise, "input_shape": list(input_shape), "removed_channels": removed,
        "source_model": getattr(model, "rd_spec", None), "provenance": prov,
        **dict(meta or {}),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "layout.json").write_text(json.dumps(layout, indent=1, default=str))
        _check_loads(tmp, gm, input_shape)
        if onnx:
            export_onnx(gm.cpu(), tmp / "model.onnx", input_shape)
        _move_into_place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _log.info("exported %d modules (%d zero channels removed) to %s", len(layout["modules"]),
              removed, out)
    return layout
