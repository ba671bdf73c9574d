"""Export a model at fixed dials as a plain network loadable without robustdial.

``export_model(model, out_dir, dials={"lam": 0.7, "width": 0.5})`` writes:

* ``model.safetensors`` — the plain network's tensors;
* ``layout.json`` — the network as a tiny graph of standard ``torch.nn``
  modules (:mod:`robustdial.export.graph`), plus the dials, input shape and
  the provenance of the export;
* ``load_exported.py`` — a standalone loader (torch + safetensors only);
* ``model.onnx`` with ``onnx=True`` (checked with ``onnx.checker``).

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
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import graph as _graph
from .graph import FORMAT, graph_layout, remove_zero_channels, trace
from .plain import film_affine, to_plain

__all__ = ["FORMAT", "export_model", "export_onnx", "film_affine", "graph_layout",
           "remove_zero_channels", "to_plain", "trace"]

_log = logging.getLogger(__name__)
LOADER = Path(__file__).with_name("load_exported.py")


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


def export_model(model: nn.Module, out_dir: str | Path, dials: Mapping[str, Any] | None = None, *,
                 input_shape: Sequence[int] = (3, 32, 32), noise: str = "fixed",
                 remove_channels: bool = True, onnx: bool = False,
                 meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the plain model at ``dials`` to ``out_dir``.

    Args:
        model: the trained (conditioned) model; not modified.
        out_dir: output directory (created).
        dials: the operating point, e.g. ``{"lam": 0.7, "width": 0.5}``.
        input_shape: one image's (C, H, W).
        noise: FLOAT weight noise ``"fixed"`` (baked in) or ``"off"``.
        remove_channels: drop all-zero input channels where structurally possible.
        onnx: also write ``model.onnx``.
        meta: extra JSON metadata stored in ``layout.json``.

    Returns:
        The layout dict written to ``layout.json``.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = to_plain(model, dials, input_shape=input_shape, noise=noise)
    gm = trace(plain)
    removed = remove_zero_channels(gm) if remove_channels else 0
    gm.recompile()
    layout = graph_layout(gm)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in gm.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"))
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
    (out / "layout.json").write_text(json.dumps(layout, indent=1, default=str))
    shutil.copyfile(LOADER, out / "load_exported.py")
    if onnx:
        export_onnx(gm.cpu(), out / "model.onnx", input_shape)
    _log.info("exported %d modules (%d zero channels removed) to %s", len(layout["modules"]),
              removed, out)
    return layout
