"""CIFAR MobileNetV2 and RDI-Nets' 2-exit RDI-MobileNetV2.

Papers: M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks" (CVPR 2018), in the CIFAR form of kuangliu/pytorch-cifar used by
RDI-Nets (Chen et al., ICLR 2020, papers/triple-wins-rdi-nets.txt, Table 1
and Fig. 5):

* stem conv3×3 3→32 stride 1 + BN + ReLU; inverted residual blocks
  (expansion t, out c, repeats n, stride s) = (1,16,1,1), (6,24,2,1),
  (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1) — the second
  stage has stride 1 (not 2) for 32×32 inputs; each block: 1×1 expand conv-BN-
  ReLU, 3×3 depthwise conv-BN-ReLU, 1×1 project conv-BN; residual only when
  stride 1 (1×1 conv + BN shortcut when the channels change, identity
  otherwise); then 1×1 conv 320→1280 + BN + ReLU, global avg-pool, linear.
  ReLU (not ReLU6), as in that code. Backbone cost 86.91 MFlops
  (conv MACs / 2²⁰), 2,296,922 parameters (10 classes).
* ``exits=True``: exits after the 3rd and the 11th inverted residual block
  (paper, Fig. 5). The paper does not give the branch layers; our heads (a
  documented choice, "light-weight convolutions", < 2 % extra cost as the
  paper states) are
  exit 1 (24 ch, 32×32): MaxPool2, conv3×3 24→64 stride 2, BN, ReLU, avg-pool,
  fc 64→C (0.84 MFlops); exit 2 (96 ch, 8×8): conv1×1 96→128, BN, ReLU,
  avg-pool, fc 128→C (0.75 MFlops). Loss weights {0.5, 0.5, 1} and entropy
  thresholds {0.267, 0.765} are the paper's, stored as defaults.

BN roles: block BNs and the head BNs are ``layers.norm``; the shortcut BN is
``layers.aux_norm``; the stem and last 1×1 conv BNs are ``layers.norm``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..layers.exits import conv_bn_relu_head, pooled_linear_head
from ._layers import LayerSet, plain_layer_set
from ._registry import register_model
from .multi_exit import MultiExitNet

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# (expansion, out_channels, repeats, first stride): kuangliu/pytorch-cifar's CIFAR cfg.
CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
       (6, 160, 3, 2), (6, 320, 1, 1))
EXIT_AFTER = (3, 11)  # 1-based inverted-residual block indices (paper, Fig. 5)
EXIT_WEIGHTS = (0.5, 0.5, 1.0)
EXIT_THRESHOLDS = (0.267, 0.765)


class InvertedResidual(nn.Module):
    """Expand 1×1 → depthwise 3×3 → project 1×1 (linear bottleneck) + shortcut.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
    """

    def __init__(self, layers: LayerSet, in_ch: int, out_ch: int, expansion: int,
                 stride: int) -> None:
        super().__init__()
        mid = expansion * in_ch
        self.stride = stride
        self.conv1 = layers.conv(in_ch, mid, 1)
        self.bn1 = layers.norm(mid)
        self.conv2 = layers.conv(mid, mid, 3, stride=stride, padding=1, groups=mid)
        self.bn2 = layers.norm(mid)
        self.conv3 = layers.conv(mid, out_ch, 1)
        self.bn3 = layers.norm(out_ch)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Sequential()
        if stride == 1 and in_ch != out_ch:
            self.shortcut = nn.Sequential(layers.conv(in_ch, out_ch, 1), layers.aux_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(MultiExitNet):
    """CIFAR MobileNetV2, optionally with two early exits.

    Args:
        layers: layer factories.
        num_classes: classifier outputs.
        in_channels: image channels.
        exits: add the two early exits (3 outputs).

    Shape:
        (B, in_channels, H, W) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, *, num_classes: int = 10, in_channels: int = 3,
                 exits: bool = False) -> None:
        named: list[tuple[str, nn.Module]] = [
            ("conv1", layers.conv(in_channels, 32, 3, stride=1, padding=1)),
            ("bn1", layers.norm(32)),
            ("relu1", nn.ReLU()),
        ]
        cut_after: list[int] = []
        channels_at_cut: list[int] = []
        in_ch, index = 32, 0
        for expansion, out_ch, repeats, first_stride in CFG:
            for r in range(repeats):
                index += 1
                named.append((f"block{index}", InvertedResidual(
                    layers, in_ch, out_ch, expansion, first_stride if r == 0 else 1)))
                in_ch = out_ch
                if exits and index in EXIT_AFTER:
                    cut_after.append(len(named))
                    channels_at_cut.append(out_ch)
        named += [("conv2", layers.conv(320, 1280, 1)), ("bn2", layers.norm(1280)),
                  ("relu2", nn.ReLU())]
        bounds = [0, *cut_after, len(named)]
        segments = [nn.Sequential(OrderedDict(named[a:b])) for a, b in zip(bounds, bounds[1:])]
        heads: list[nn.Module] = []
        if exits:
            heads.append(conv_bn_relu_head(layers, channels_at_cut[0], 64, num_classes,
                                           kernel_size=3, stride=2, pre_pool=2))
            heads.append(conv_bn_relu_head(layers, channels_at_cut[1], 128, num_classes,
                                           kernel_size=1))
        heads.append(pooled_linear_head(layers, 1280, num_classes))
        super().__init__(segments, heads, input_size=(in_channels, 32, 32),
                         exit_weights=EXIT_WEIGHTS if exits else None,
                         exit_thresholds=EXIT_THRESHOLDS if exits else None)


@register_model
def mobilenet_v2(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
                 exits: bool = False) -> MobileNetV2:
    """CIFAR MobileNetV2 (86.91 MFlops); ``exits=True``: RDI-MobileNetV2 (2 early exits)."""
    return MobileNetV2(layers or plain_layer_set(), num_classes=num_classes,
                       in_channels=in_channels, exits=exits)
