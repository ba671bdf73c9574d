"""Cost models: parameters, storage at b bits, MACs/FLOPs, ASIC delay, measured latency."""
from __future__ import annotations

import importlib
from typing import Any

from .delay import DelayReport, HardwareModel, conv_delay, model_delay
from .latency import Latency, measure_latency
from .macs import LayerMacs, MacsReport, count_flops, count_macs
from .params import ParamCount, count_params, storage_bytes
from .report import cost_report

_LAZY = {
    "MFLOP_MACS": "early_exit",
    "exit_costs_mflops": "early_exit",
    "exit_histogram": "early_exit",
    "expected_cost": "early_exit",
    "plot_exit_histograms": "early_exit",
}

__all__ = ["DelayReport", "HardwareModel", "Latency", "LayerMacs", "MacsReport", "ParamCount",
           "conv_delay", "cost_report", "count_flops", "count_macs", "count_params",
           "measure_latency", "model_delay", "storage_bytes", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'robustdial.cost' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)
