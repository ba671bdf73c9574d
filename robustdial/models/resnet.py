"""CIFAR ResNet-18/34 (post-activation basic blocks), the OAT / FLOAT backbone.

Papers: K. He et al., "Deep Residual Learning for Image Recognition" (CVPR
2016), in the CIFAR form used by OAT (Wang et al., NeurIPS 2020,
papers/oat-once-for-all-adversarial-training.txt) and FLOAT
(papers/float-fast-learnable-once-for-all-adversarial-training.txt): 3×3 stem
conv with 64 channels + BN (no max-pool), basic blocks [2,2,2,2] / [3,4,6,3]
with widths 64/128/256/512, 1×1 conv + BN shortcut when the shape changes,
global average pool, linear classifier. No input normalization (inputs in
[0, 1]). ResNet-34 has 21,282,122 parameters (10 classes).

BN roles (for conditional variants): the stem BN and both BNs of every block
are ``layers.norm`` (OAT adds FiLM there: 33 in ResNet-34); shortcut BNs are
``layers.aux_norm``. The final pool is adaptive, so 28×28 inputs also work.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._layers import LayerSet, plain_layer_set
from ._registry import register_model

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34"]


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
    """

    def __init__(self, layers: LayerSet, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = layers.norm(out_ch)
        self.conv2 = layers.conv(out_ch, out_ch, 3, stride=1, padding=1)
        self.bn2 = layers.norm(out_ch)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(layers.conv(in_ch, out_ch, 1, stride=stride),
                                          layers.aux_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with basic blocks (kuangliu/pytorch-cifar layout).

    Args:
        layers: layer factories.
        num_blocks: blocks per stage (4 stages, widths 64/128/256/512).
        num_classes: classifier outputs.
        in_channels: image channels.

    Shape:
        (B, in_channels, H, W) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, num_blocks: Sequence[int], *, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_channels, 64, 3, stride=1, padding=1)
        self.bn1 = layers.norm(64)
        self.relu = nn.ReLU()
        in_ch = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(layers, in_ch, width, stride))
                in_ch = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = layers.head(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))


@register_model
def resnet18(*, num_classes: int = 10, layers: LayerSet | None = None,
             in_channels: int = 3) -> ResNet:
    """CIFAR ResNet-18 (11,173,962 parameters for 10 classes)."""
    return ResNet(layers or plain_layer_set(), (2, 2, 2, 2), num_classes=num_classes,
                  in_channels=in_channels)


@register_model
def resnet34(*, num_classes: int = 10, layers: LayerSet | None = None,
             in_channels: int = 3) -> ResNet:
    """CIFAR ResNet-34 (21,282,122 parameters for 10 classes), OAT's backbone."""
    return ResNet(layers or plain_layer_set(), (3, 4, 6, 3), num_classes=num_classes,
                  in_channels=in_channels)
