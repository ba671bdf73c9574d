"""Measured inference latency and throughput at a dial."""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..condition import conditioned
from ..utils import model_device, train_mode

__all__ = ["Latency", "measure_latency"]


@dataclasses.dataclass(frozen=True)
class Latency:
    """Wall-clock timings of ``model(x)`` for one batch (seconds)."""

    batch_size: int
    median_s: float
    min_s: float
    repeats: int

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 64,
                    dials: dict | None = None, warmup: int = 3, repeats: int = 20) -> Latency:
    """Median latency of one eval-mode forward of a ``batch_size`` batch at ``dials``."""
    device = model_device(model)
    x = torch.rand((batch_size, *input_shape), device=device)
    times = []
    with torch.inference_mode(), train_mode(model, False), conditioned(model, **(dials or {})):
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            _sync(device)  # timing needs the device to finish
            times.append(time.perf_counter() - t0)
    return Latency(batch_size, statistics.median(times), min(times), repeats)
