"""Cost models: parameters, storage at b bits, MACs/FLOPs, ASIC delay, measured latency."""
from __future__ import annotations

from .delay import DelayReport, HardwareModel, conv_delay, model_delay
from .early_exit import MFLOP_MACS, exit_costs_mflops, exit_histogram, expected_cost, plot_exit_histograms
from .latency import Latency, measure_latency
from .macs import LayerMacs, MacsReport, count_flops, count_macs
from .params import ParamCount, count_params, storage_bytes
from .summary import cost_report

__all__ = ["MFLOP_MACS", "DelayReport", "HardwareModel", "Latency", "LayerMacs", "MacsReport",
           "ParamCount", "conv_delay", "cost_report", "count_flops", "count_macs", "count_params",
           "exit_costs_mflops", "exit_histogram", "expected_cost", "measure_latency",
           "model_delay", "plot_exit_histograms", "storage_bytes"]
