"""Multiply-accumulates and FLOPs at a given dial.

Two counts, named explicitly wherever they are reported:

* ``conv_macs`` / ``linear_macs`` — multiply-accumulates per image, by forward
  hooks on every ``nn.Conv2d`` / ``nn.Linear`` (subclasses included), using the
  weight slice actually applied (slimmable widths) and, when
  ``density_effective=True``, scaled by the fraction of non-zero weights
  (irregular sparsity). RDI-Nets' "MFlops" are ``conv_macs / 2**20``.
* ``flops`` — total floating-point operations from
  ``torch.utils.flop_counter.FlopCounterMode`` (2 per MAC for convolutions and
  matrix products), for the whole forward at the current dial.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..condition import conditioned
from ..utils import model_device, train_mode

__all__ = ["LayerMacs", "MacsReport", "count_macs", "count_flops"]


@dataclasses.dataclass(frozen=True)
class LayerMacs:
    name: str
    kind: str  # "conv" | "linear"
    macs: float  # per image
    kernel: int
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    density: float


@dataclasses.dataclass(frozen=True)
class MacsReport:
    layers: tuple[LayerMacs, ...]

    @property
    def conv_macs(self) -> float:
        return sum(layer.macs for layer in self.layers if layer.kind == "conv")

    @property
    def linear_macs(self) -> float:
        return sum(layer.macs for layer in self.layers if layer.kind == "linear")

    @property
    def macs(self) -> float:
        return self.conv_macs + self.linear_macs

    @property
    def mflops_rdi(self) -> float:
        """RDI-Nets convention: conv MACs / 2**20."""
        return self.conv_macs / 2**20


def _weight_of(module: nn.Module) -> torch.Tensor:
    fn = getattr(module, "effective_weight", None)
    w = fn() if callable(fn) else module.weight
    return w.detach()


def count_macs(model: nn.Module, input_shape: Sequence[int], *, dials: dict | None = None,
               density_effective: bool = False) -> MacsReport:
    """MACs per image of every conv and linear layer at the given dials.

    Args:
        model: the model (left in its current mode afterwards).
        input_shape: one image's shape (C, H, W).
        dials: condition to count at (e.g. ``{"width": 0.5, "lam": 1.0}``).
        density_effective: scale each layer by its fraction of non-zero weights.

    Returns:
        A :class:`MacsReport` with per-layer entries in execution order.
    """
    device = model_device(model)
    x = torch.zeros((1, *input_shape), device=device)
    records: list[LayerMacs] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs, output) -> None:
        inp = inputs[0]
        out = output if isinstance(output, torch.Tensor) else output[0]
        if isinstance(module, nn.Conv2d):
            cin = inp.shape[1]
            cout = out.shape[1]
            # A depthwise conv keeps one group per (possibly slimmed) input channel.
            groups = cin if module.groups == module.in_channels > 1 else module.groups
            k = module.kernel_size[0] * module.kernel_size[1]
            hw = (out.shape[2], out.shape[3])
            macs = float(cout * (cin // groups) * k * hw[0] * hw[1])
            kind = "conv"
        else:
            cin, cout, k, hw = inp.shape[-1], out.shape[-1], 1, (1, 1)
            macs = float(cin * cout)
            kind = "linear"
        density = 1.0
        if density_effective:
            w = _weight_of(module)
            density = float(torch.count_nonzero(w)) / max(w.numel(), 1)
        records.append(LayerMacs(names.get(module, "?"), kind, macs * density, k, cin, cout, hw,
                                 density))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad(), train_mode(model, False), conditioned(model, **(dials or {})):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return MacsReport(tuple(records))


def count_flops(model: nn.Module, input_shape: Sequence[int], *, dials: dict | None = None) -> int:
    """FLOPs per image of one forward at the given dials (``torch.utils.flop_counter``)."""
    device = model_device(model)
    x = torch.zeros((1, *input_shape), device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), train_mode(model, False), conditioned(model, **(dials or {})), counter:
        model(x)
    return int(counter.get_total_flops())
