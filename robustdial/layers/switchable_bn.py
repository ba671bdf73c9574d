"""Switchable batch normalization: one (dual) BN per width (slimmable networks, OATS, FLOATS slim).

Yu et al., "Slimmable Neural Networks", ICLR 2019 (S-BN: private BN statistics
and affine parameters per width); OAT paper Sec. 3.3: "each BN (either BN_c or
BN_a) in OAT is replaced with a switchable batch normalization", so every
width gets its own BN_c / BN_a pair.

**FiLM in OATS (decision).** The OAT ``norm`` factory produces
``Sequential(DualBN(C), FiLM(C))``; :class:`SwitchableBatchNorm2d` holds one
such block per width, i.e. *one FiLM per width*, built for ⌈w·C⌉ channels. The
OATS paper only says that every BN becomes an S-BN; FiLM is the affine part
that follows the BN, and a separate FiLM per width matches S-BN's private
affine parameters per width (a shared, sliced FiLM would tie the modulation of
the 0.5-width channels to the full network's). It costs little: FiLM sizes
scale with w², so the extra widths add ≈ (0.5² + 0.75²)× the full FiLM
parameters.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..condition import Choices, Condition, DialSpec
from ._widths import check_widths, scaled_channels, width_index

__all__ = ["SwitchableBatchNorm2d"]


class SwitchableBatchNorm2d(nn.Module):
    """One normalization block per width, selected by the ``width`` dial.

    Args:
        num_features: channels C at full width.
        widths: the trained width factors.
        inner_factory: builds the block for ``⌈w·C⌉`` channels
            (``nn.BatchNorm2d``, ``DualBatchNorm2d`` or OAT's DualBN + FiLM).

    Attributes:
        bns: ``nn.ModuleList``, one block per width (ascending widths).
        channels: ``⌈w·C⌉`` per width.

    Shape:
        (B, ⌈w·C⌉, H, W) -> (B, ⌈w·C⌉, H, W)
    """

    def __init__(self, num_features: int, widths: Sequence[float],
                 inner_factory: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.widths = check_widths(widths)
        self.channels = tuple(scaled_channels(self.num_features, w) for w in self.widths)
        self.bns = nn.ModuleList(inner_factory(c) for c in self.channels)
        self._index = len(self.widths) - 1

    @property
    def active(self) -> nn.Module:
        """The block of the width in force."""
        return self.bns[self._index]

    def apply_condition(self, cond: Condition) -> None:
        self._index = width_index(self.widths, cond.width)

    def dial_specs(self) -> dict[str, DialSpec]:
        return {"width": Choices(self.widths)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = self.channels[self._index]
        if x.shape[1] != C:
            raise ValueError(f"switchable BN at width {self.widths[self._index]:g} expects {C} "
                             f"channels, got {x.shape[1]}; set the width with "
                             "robustdial.set_condition(model, width=...) on the whole model")
        return self.bns[self._index](x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, widths={self.widths}"
