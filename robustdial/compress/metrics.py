"""Sparsity metrics of (quantized or masked) weights.

Definitions of Li, Wang, Xin (LOD 2021), §5.1 / Table 5 (REFERENCE.md):

* **weight sparsity** = fraction of zero weights over the quantized conv
  layers (counted over all their elements);
* **channel sparsity** = fraction of input-channel slices ``w[:, k, :, :]``
  that are entirely zero, counted over the same layers (ResNet-20: 627
  slices = Σ in_channels of its convs).

Densities are ``1 − sparsity``. Functions take a tensor (one layer) or a
model (totals over :func:`~robustdial.compress.projections.quantized_layers`,
or an explicit ``layers`` list). With ``scheme=...`` the metrics are those of
``Q(w)`` without changing the model.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .projections import Scheme, quantize, quantized_layers

__all__ = [
    "channel_density",
    "channel_sparsity",
    "format_sparsity_table",
    "sparsity_report",
    "weight_density",
    "weight_sparsity",
]


def _tensors(obj: nn.Module | Tensor, layers: Sequence[str] | None,
             scheme: Scheme | None) -> list[tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        out = [("tensor", obj.detach())]
    elif isinstance(obj, nn.Module):
        params = dict(obj.named_parameters())
        out = [(n, params[n].detach()) for n in quantized_layers(obj, layers=layers)]
        if not out:
            raise ValueError("the model has no quantized/conv layer to measure; pass layers=[...]")
    else:
        raise TypeError(f"expected an nn.Module or a Tensor, got {type(obj).__name__}")
    if scheme is not None:
        out = [(n, quantize(t, scheme)) for n, t in out]
    return out


def _channel_counts(w: Tensor) -> tuple[int, int]:
    """(zero input-channel slices, all slices) of a weight with ≥ 2 dims."""
    if w.dim() < 2:
        raise ValueError(f"channel sparsity needs a weight with ≥ 2 dims (out, in, ...), got "
                         f"shape {tuple(w.shape)}")
    nonzero = (w != 0).transpose(0, 1).reshape(w.shape[1], -1).any(dim=1)
    return int((~nonzero).sum()), int(w.shape[1])


def weight_sparsity(obj: nn.Module | Tensor, *, layers: Sequence[str] | None = None,
                    scheme: Scheme | None = None) -> float:
    """Fraction of zero weights (0 … 1).

    Args:
        obj: a weight tensor, or a model (totals over its quantized conv
            layers, or ``layers``).
        layers: explicit module/parameter names (models only).
        scheme: measure ``Q(w)`` of this scheme instead of the stored weights.
    """
    zeros = total = 0
    for _, t in _tensors(obj, layers, scheme):
        zeros += int((t == 0).sum())
        total += t.numel()
    return zeros / total if total else 0.0


def channel_sparsity(obj: nn.Module | Tensor, *, layers: Sequence[str] | None = None,
                     scheme: Scheme | None = None) -> float:
    """Fraction of input-channel slices ``w[:, k, ...]`` that are entirely zero (0 … 1).

    Arguments as :func:`weight_sparsity`.
    """
    zeros = total = 0
    for _, t in _tensors(obj, layers, scheme):
        z, n = _channel_counts(t)
        zeros += z
        total += n
    return zeros / total if total else 0.0


def weight_density(obj: nn.Module | Tensor, **kw: Any) -> float:
    """``1 − weight_sparsity``: fraction of non-zero weights."""
    return 1.0 - weight_sparsity(obj, **kw)


def channel_density(obj: nn.Module | Tensor, **kw: Any) -> float:
    """``1 − channel_sparsity``: fraction of input channels with a non-zero weight."""
    return 1.0 - channel_sparsity(obj, **kw)


def sparsity_report(model: nn.Module, layers: Sequence[str] | None = None, *,
                    scheme: Scheme | None = None) -> list[dict[str, Any]]:
    """One JSON-ready row per measured layer, then a ``"total"`` row.

    Row keys: ``name``, ``shape``, ``numel``, ``zero_weights``,
    ``weight_sparsity``, ``channels``, ``zero_channels``,
    ``channel_sparsity``, ``distinct_values`` (``None`` in the total row).
    """
    rows: list[dict[str, Any]] = []
    tz = tn = cz = cn = 0
    for name, t in _tensors(model, layers, scheme):
        z = int((t == 0).sum())
        chz, chn = _channel_counts(t)
        rows.append({
            "name": name, "shape": list(t.shape), "numel": t.numel(), "zero_weights": z,
            "weight_sparsity": z / t.numel(), "channels": chn, "zero_channels": chz,
            "channel_sparsity": chz / chn, "distinct_values": int(torch.unique(t).numel()),
        })
        tz, tn, cz, cn = tz + z, tn + t.numel(), cz + chz, cn + chn
    rows.append({"name": "total", "shape": None, "numel": tn, "zero_weights": tz,
                 "weight_sparsity": tz / tn if tn else 0.0, "channels": cn,
                 "zero_channels": cz, "channel_sparsity": cz / cn if cn else 0.0,
                 "distinct_values": None})
    return rows


def format_sparsity_table(rows: list[dict[str, Any]], fmt: str = "text") -> str:
    """Render :func:`sparsity_report` rows as an aligned text table or JSON (``fmt="json"``)."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt != "text":
        raise ValueError(f"fmt must be 'text' or 'json', got {fmt!r}")
    head = f"{'layer':<40} {'shape':<18} {'w.sparsity':>10} {'ch.sparsity':>11} {'values':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else ""
        vals = "" if r["distinct_values"] is None else str(r["distinct_values"])
        lines.append(f"{r['name'][:40]:<40} {shape:<18} {100 * r['weight_sparsity']:>9.2f}% "
                     f"{100 * r['channel_sparsity']:>10.2f}% {vals:>7}")
    return "\n".join(lines)
