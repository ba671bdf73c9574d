"""Small classifier heads shared by early exits and final classifiers.

RDI-Nets (Chen et al., ICLR 2020, Appendix B) append "a few pooling
operations, light-weight convolutions and fully-connected layers" to each
branch. Every layer is built through a :class:`~robustdial.models.LayerSet`
so conditional variants (OAT, FLOAT, slimmable) apply to heads too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from ..models._layers import LayerSet

__all__ = ["conv_bn_relu_head", "pooled_linear_head"]


def pooled_linear_head(layers: "LayerSet", in_ch: int, num_classes: int) -> nn.Sequential:
    """Global average pool, flatten, classifier: ``0 pool, 1 flatten, 2 fc``.

    Shape:
        (B, in_ch, H, W) -> (B, num_classes)
    """
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         layers.head(in_ch, num_classes))


def conv_bn_relu_head(layers: "LayerSet", in_ch: int, mid_ch: int, num_classes: int, *,
                      kernel_size: int = 3, stride: int = 1, pre_pool: int = 1) -> nn.Sequential:
    """``[MaxPool(pre_pool)] → conv → BN → ReLU → global avg-pool → flatten → fc``.

    Args:
        layers: layer factories.
        in_ch: channels of the feature map the exit reads.
        mid_ch: channels of the head's convolution.
        num_classes: classifier outputs.
        kernel_size: head conv kernel (padding ``kernel_size // 2``).
        stride: head conv stride.
        pre_pool: max-pool size before the conv (1 = none).

    Shape:
        (B, in_ch, H, W) -> (B, num_classes)
    """
    mods: list[nn.Module] = []
    if pre_pool > 1:
        mods.append(nn.MaxPool2d(pre_pool))
    mods += [layers.conv(in_ch, mid_ch, kernel_size, stride=stride, padding=kernel_size // 2),
             layers.norm(mid_ch), nn.ReLU()]
    mods += list(pooled_linear_head(layers, mid_ch, num_classes))
    return nn.Sequential(*mods)
