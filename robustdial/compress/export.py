"""Export a quantized model as integer levels + per-tensor scales; storage at b bits.

Format (directory ``out_dir``):

* ``quantized.safetensors`` — for each quantized weight ``<name>``:
  ``<name>:levels`` (int8, the integers ``q`` of ``Q(w) = s·q``; int16/int32
  for > 8 bits) and ``<name>:scale`` (float32 0-dim); every other
  ``state_dict`` entry (float remainder: fc, BN, shortcuts, buffers) under its
  own name, unchanged.
* ``quantized.json`` — scheme, bits per weight, the quantized names with their
  shapes, and :func:`storage_bits`.

Levels are stored one per byte (no bit packing); :func:`storage_bits` reports
the storage a packed format would need. :func:`load_quantized` rebuilds the
weights ``s·q`` into a model of the same architecture.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .projections import Scheme, bits_of, normalize_scheme, quantize_levels, quantized_layers

__all__ = ["export_quantized", "load_quantized", "storage_bits"]

log = logging.getLogger(__name__)

_FORMAT = "robustdial-quantized"
_VERSION = 1
_SCALE_BITS = 32  # one float32 scale per quantized tensor


def _scheme_and_layers(transform_or_scheme: Any, layers: list[str] | None
                       ) -> tuple[str | int, list[str] | None]:
    if hasattr(transform_or_scheme, "scheme"):  # a BinaryConnect / BinaryRelax transform
        return transform_or_scheme.scheme, layers if layers is not None else getattr(
            transform_or_scheme, "layers", None)
    return normalize_scheme(transform_or_scheme), layers


def _decompose(w: torch.Tensor, scheme: str | int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(levels, scale)`` of ``Q(w)``; a ``w`` that is already ``s·levels`` is kept exact.

    Needed because the ternary scale (mean over all elements) is not
    idempotent: re-projecting a finalized ternary tensor would shrink it.
    """
    levels, scale = quantize_levels(w, scheme)
    lf = levels.to(w.dtype)
    denom = (lf * lf).sum()
    if denom > 0:
        s_ls = (w * lf).sum() / denom  # least-squares scale onto these levels
        if torch.allclose(lf * s_ls, w, rtol=1e-6, atol=1e-12):
            return levels, s_ls
    return levels, scale


def storage_bits(model: nn.Module, scheme: Scheme, *, layers: list[str] | None = None,
                 include_buffers: bool = False) -> int:
    """Bits to store the model with its quantized layers at the scheme's bit-width.

    Quantized weights cost ``bits·numel + 32`` (one float32 scale each);
    every other parameter 32 bits per element; buffers (BN running stats) too
    when ``include_buffers``. Float (≥ 32 bits) counts everything at 32 bits.

    Args:
        model: the network.
        scheme: ``"binary"`` (1 bit), ``"ternary"`` (2), ``"4bit"`` (4), int k, ``"float"``.
        layers: explicit quantized names; default the paper's rule.
        include_buffers: add floating-point buffers at 32 bits.
    """
    b = bits_of(scheme)
    qnames = set(quantized_layers(model, layers=layers)) if b < 32 else set()
    total = 0
    for name, p in model.named_parameters():
        total += b * p.numel() + _SCALE_BITS if name in qnames else 32 * p.numel()
    if include_buffers:
        total += sum(32 * t.numel() for t in model.buffers() if t.is_floating_point())
    return total


def export_quantized(model: nn.Module, transform_or_scheme: Any, out_dir: str | Path, *,
                     layers: list[str] | None = None) -> Path:
    """Write ``Q(w)`` as integer levels + scales and the float remainder to ``out_dir``.

    Args:
        model: the trained model, float ``w`` (exported as ``Q(w)``) or
            already finalized (exported exactly, up to float rounding of the
            scale).
        transform_or_scheme: a :class:`~robustdial.compress.BinaryConnect` /
            :class:`~robustdial.compress.BinaryRelax` (its scheme and layers)
            or a scheme.
        out_dir: directory (created).
        layers: override the quantized names.

    Returns:
        ``out_dir`` as a Path.
    """
    from safetensors.torch import save_file

    scheme, layers = _scheme_and_layers(transform_or_scheme, layers)
    if scheme == 32:
        raise ValueError("scheme 'float' has nothing to quantize; save the model with "
                         "robustdial.save instead")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = quantized_layers(model, layers=layers)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, Any] = {}
    for name in names:
        levels, scale = _decompose(state[name].detach(), scheme)
        tensors[f"{name}:levels"] = levels.contiguous().cpu()
        tensors[f"{name}:scale"] = scale.detach().float().reshape(()).cpu()
        described[name] = {"shape": list(levels.shape), "levels_dtype": str(levels.dtype)
                           .replace("torch.", ""), "dtype": str(state[name].dtype)
                           .replace("torch.", "")}
    remainder = [k for k in state if k not in described]
    for k in remainder:
        tensors[k] = state[k].detach().contiguous().cpu().clone()
    save_file(tensors, str(out / "quantized.safetensors"))
    meta = {
        "format": _FORMAT, "version": _VERSION, "scheme": scheme, "bits": bits_of(scheme),
        "quantized": described, "float_keys": remainder,
        "storage_bits": storage_bits(model, scheme, layers=names),
        "value": "weight = scale * levels (per tensor)",
    }
    (out / "quantized.json").write_text(json.dumps(meta, indent=2))
    log.info("exported %d quantized tensors (%s) to %s", len(names), scheme, out)
    return out


def load_quantized(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load an :func:`export_quantized` directory into ``model`` (same architecture).

    Quantized weights become ``scale · levels`` in the parameter's dtype.

    Raises:
        FileNotFoundError: ``path`` lacks ``quantized.json`` / ``quantized.safetensors``.
        ValueError: the files are not this format.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta_file, data_file = path / "quantized.json", path / "quantized.safetensors"
    for f in (meta_file, data_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: pass the directory written by "
                                    "export_quantized(model, scheme, out_dir)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{meta_file} is not a {_FORMAT} export (format={meta.get('format')!r})")
    tensors = load_file(str(data_file))
    ref = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name in meta["quantized"]:
        levels, scale = tensors[f"{name}:levels"], tensors[f"{name}:scale"]
        dtype = ref[name].dtype if name in ref else torch.float32
        state[name] = levels.to(dtype) * scale.to(dtype)
    for k in meta["float_keys"]:
        state[k] = tensors[k]
    model.load_state_dict(state, strict=strict)
    return model
