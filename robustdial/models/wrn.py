"""Pre-activation Wide ResNets WRN-16-8, WRN-40-2, WRN-34-10.

Paper: S. Zagoruyko and N. Komodakis, "Wide Residual Networks" (BMVC 2016), as
used by OAT (papers/oat-once-for-all-adversarial-training.txt: WRN-16-8,
WRN-40-2) and by the adversarial-training literature (WRN-34-10). WRN-d-k:
n = (d − 4)/6 blocks per stage; conv stem 3→16; stages 16k/32k/64k with
stride 1/2/2; block = BN1-ReLU-conv3×3-BN2-ReLU-(dropout)-conv3×3 + shortcut,
where a shape change takes a 1×1 conv shortcut from the pre-activated input;
final BN-ReLU-global avg-pool-fc. No input normalization. Parameters (10
classes): WRN-16-8 10,961,370; WRN-40-2 2,243,546; WRN-34-10 46,160,474.

BN roles: ``bn1``/``bn2`` of each block are ``layers.norm`` (OAT's FiLM goes
there); the final BN is ``layers.aux_norm``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layers import LayerSet, plain_layer_set
from ._registry import register_model

__all__ = ["WideBlock", "WideResNet", "wrn16_8", "wrn34_10", "wrn40_2"]


class WideBlock(nn.Module):
    """Pre-activation wide basic block.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
    """

    def __init__(self, layers: LayerSet, in_ch: int, out_ch: int, stride: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = layers.norm(in_ch)
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(out_ch)
        self.conv2 = layers.conv(out_ch, out_ch, 3, stride=1, padding=1)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = layers.conv(in_ch, out_ch, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.conv1(act)))
        out = self.conv2(self.dropout(out))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """WRN-depth-widen.

    Args:
        layers: layer factories.
        depth: 6n + 4.
        widen: width factor k.
        num_classes: classifier outputs.
        in_channels: image channels.
        dropout: dropout probability between the block convs (0 = none).

    Shape:
        (B, in_channels, H, W) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, depth: int, widen: int, *, num_classes: int = 10,
                 in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 (16, 28, 34, 40 …), got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        self.conv1 = layers.conv(in_channels, 16, 3, stride=1, padding=1)
        in_ch = 16
        for s, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            blocks = []
            for j in range(n):
                stride = 2 if (s > 0 and j == 0) else 1
                blocks.append(WideBlock(layers, in_ch, width, stride, dropout))
                in_ch = width
            setattr(self, f"block{s + 1}", nn.Sequential(*blocks))
        self.bn = layers.aux_norm(in_ch)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = layers.head(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def _make(depth: int, widen: int, num_classes: int, layers: LayerSet | None, in_channels: int,
          dropout: float) -> WideResNet:
    return WideResNet(layers or plain_layer_set(), depth, widen, num_classes=num_classes,
                      in_channels=in_channels, dropout=dropout)


@register_model
def wrn16_8(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
            dropout: float = 0.0) -> WideResNet:
    """WRN-16-8 (10,961,370 parameters for 10 classes)."""
    return _make(16, 8, num_classes, layers, in_channels, dropout)


@register_model
def wrn40_2(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
            dropout: float = 0.0) -> WideResNet:
    """WRN-40-2 (2,243,546 parameters for 10 classes)."""
    return _make(40, 2, num_classes, layers, in_channels, dropout)


@register_model
def wrn34_10(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
             dropout: float = 0.0) -> WideResNet:
    """WRN-34-10 (46,160,474 parameters for 10 classes)."""
    return _make(34, 10, num_classes, layers, in_channels, dropout)
