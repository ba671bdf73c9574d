"""Conditional building blocks, each a drop-in ``nn.Module``."""
from __future__ import annotations

import importlib
from typing import Any

from .dual_bn import DualBatchNorm2d
from .normalize import Normalize

# Names provided by sibling files, imported on first use.
_LAZY = {
    "FiLM": "film",
    "LambdaEncoding": "film",
    "NoisyConv2d": "noisy",
    "NoisyLinear": "noisy",
    "resample_noise": "noisy",
    "SlimmableConv2d": "slimmable",
    "SlimmableLinear": "slimmable",
    "SlimmableNoisyConv2d": "slimmable",
    "SlimmableNoisyLinear": "slimmable",
    "SwitchableBatchNorm2d": "switchable_bn",
    "NoiseInjection": "noise_injection",
}

__all__ = ["DualBatchNorm2d", "Normalize", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'robustdial.layers' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)
