"""robustdial: adversarial robustness you can dial at inference time.

Train one model once; at inference choose the accuracy↔robustness trade-off
(λ), the width, the sparsity, the bit-width and the exit — without retraining.

The public names are imported lazily, so ``import robustdial`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # dials
    "Condition": "robustdial.condition",
    "set_condition": "robustdial.condition",
    "get_condition": "robustdial.condition",
    "conditioned": "robustdial.condition",
    "dial_specs": "robustdial.condition",
    # models
    "create_model": "robustdial.models",
    "list_models": "robustdial.models",
    "register_model": "robustdial.models",
    # data
    "load_dataset": "robustdial.data",
    # training
    "fit": "robustdial.engine",
    "FitConfig": "robustdial.engine",
    "FitResult": "robustdial.engine",
    "CheckpointError": "robustdial.engine",
    "load": "robustdial.engine",
    "save": "robustdial.engine",
    # evaluation
    "evaluate": "robustdial.evaluate",
}
_SUBPACKAGES = ("attacks", "compress", "cost", "data", "engine", "evaluate", "layers",
                "methods", "models", "utils", "condition")

__all__ = ["__version__", *_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"robustdial.{name}")
    raise AttributeError(f"module 'robustdial' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
