"""Training-time weight transforms and their metrics.

BinaryConnect / Binary-Relax with binary, ternary, 4-bit and k-bit
projections (:mod:`.projections`, :mod:`.binary_relax`), export of integer
levels (:mod:`.export`), sparsity metrics (:mod:`.metrics`), sparse-momentum
masks (:mod:`.sparse`) and channel pruning (:mod:`.channel_prune`).

Transforms plug into the engine: ``fit(model, method, data, cfg,
transforms=[BinaryRelax("ternary", cutoff_epoch=120)])``.
"""
from __future__ import annotations

from typing import Any

from .binary_relax import BinaryConnect, BinaryRelax
from .channel_prune import ChannelPrune, channel_importance, prune_channels
from .export import export_quantized, load_quantized, storage_bits
from .metrics import (channel_density, channel_sparsity, format_sparsity_table, sparsity_report,
                      weight_density, weight_sparsity)
from .projections import SCHEMES, bits_of, normalize_scheme, quantize, quantize_levels, quantized_layers
from .sparse import SparseMomentum

__all__ = ["SCHEMES", "BinaryConnect", "BinaryRelax", "ChannelPrune", "SparseMomentum",
           "bits_of", "build_transform", "channel_density", "channel_importance",
           "channel_sparsity", "export_quantized", "format_sparsity_table", "load_quantized",
           "normalize_scheme", "prune_channels", "quantize", "quantize_levels",
           "quantized_layers", "sparsity_report", "storage_bits", "weight_density",
           "weight_sparsity"]

# recipe name -> transform class (read-only)
_TRANSFORMS: dict[str, type] = {"sparse_momentum": SparseMomentum, "channel_prune": ChannelPrune,
                                "binary_relax": BinaryRelax, "binary_connect": BinaryConnect}


def build_transform(name: str, **kwargs: Any) -> Any:
    """A training transform by recipe name, e.g. ``build_transform("sparse_momentum", density=0.1, epochs=200)``."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(_TRANSFORMS)}")
    return _TRANSFORMS[key](**kwargs)
