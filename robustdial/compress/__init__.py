"""Training-time weight transforms and their metrics.

BinaryConnect / Binary-Relax with binary, ternary, 4-bit and k-bit
projections (:mod:`.quantize`, :mod:`.binary_relax`), export of integer
levels (:mod:`.export`), sparsity metrics (:mod:`.metrics`), sparse-momentum
masks (:mod:`.sparse`) and channel pruning (:mod:`.channel_prune`).

Transforms plug into the engine: ``fit(model, method, data, cfg,
transforms=[BinaryRelax("ternary", cutoff_epoch=120)])``. Names are imported
lazily so one file's absence or cost never slows the others.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # projections and layer selection
    "quantize": "quantize", "quantize_levels": "quantize", "quantized_layers": "quantize",
    "normalize_scheme": "quantize", "bits_of": "quantize", "SCHEMES": "quantize",
    # transforms
    "BinaryConnect": "binary_relax", "BinaryRelax": "binary_relax",
    # metrics
    "weight_sparsity": "metrics", "channel_sparsity": "metrics", "weight_density": "metrics",
    "channel_density": "metrics", "sparsity_report": "metrics",
    "format_sparsity_table": "metrics",
    # export and storage
    "export_quantized": "export", "load_quantized": "export", "storage_bits": "export",
    # sparse learning (compress/sparse.py) and channel pruning (compress/channel_prune.py)
    "SparseMomentum": "sparse",
    "channel_importance": "channel_prune", "prune_channels": "channel_prune",
    "ChannelPrune": "channel_prune",
}

_TRANSFORMS = {"sparse_momentum": "SparseMomentum", "channel_prune": "ChannelPrune",
               "binary_relax": "BinaryRelax", "binary_connect": "BinaryConnect"}

__all__ = sorted([*_EXPORTS, "build_transform"])


def build_transform(name: str, **kwargs: Any) -> Any:
    """A training transform by recipe name, e.g. ``build_transform("sparse_momentum", density=0.1, epochs=200)``."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(_TRANSFORMS)}")
    return __getattr__(_TRANSFORMS[key])(**kwargs)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        try:
            return getattr(module, name)
        except AttributeError:
            raise AttributeError(f"robustdial.compress.{_EXPORTS[name]} does not define "
                                 f"{name!r}") from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
