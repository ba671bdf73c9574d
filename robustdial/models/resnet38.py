"""RDI-Nets' CIFAR ResNet-38 and its 6-exit RDI-ResNet38.

Paper: T. Chen et al., "Triple Wins" (ICLR 2020,
papers/triple-wins-rdi-nets.txt), Sec. 4.1 and Appendix B, with details from the
authors' released model (``cifar/models.py``, ``cifar10_resnet_38``):

* backbone: 3×3 stem conv 3→16 + BN + ReLU; post-activation basic blocks
  [6, 6, 6] with widths 16/32/64 (conv-BN-ReLU-conv-BN, + shortcut, ReLU); the
  first block of stages 2 and 3 has stride 2 and a 1×1 conv + BN
  ``downsample``; global avg-pool; fc 64→classes. 564,122 parameters.
* ``exits=True``: six exits after block 1 and block 4 (0-based) of each stage,
  692,310 parameters in all. Stage-1 heads: MaxPool2, conv5×5 16→64 (pad 2),
  BN, ReLU, MaxPool2, conv3×3 64→32 (pad 1), BN, avg-pool, flatten, fc 32→C
  (no ReLU after the second BN, as the authors). Stage-2 heads: MaxPool2, a
  basic block 32→32, avg-pool, flatten, fc 32→C. Stage-3 heads: avg-pool,
  flatten, fc 64→C. Every avg-pool is global (adaptive), which equals the
  authors' AvgPool(8) on 32×32 inputs and also runs on 28×28.
* loss weights {0.5, 0.5, 0.7, 0.7, 0.9, 0.9, 2} and entropy thresholds
  {0.32, 0.36, 0.39, 0.83, 1.12, 1.35} (Appendix A / Sec. 4) are the defaults.
  Per-exit conv cost (MFlops = MACs/2²⁰): 16.79, 30.29, 36.54, 50.04, 61.42,
  74.92, 79.42.

State-dict mapping from the authors' checkpoint (after stripping ``module.``):
``conv1``/``bn1`` → ``segments.0.conv1``/``segments.0.bn1``;
``group{g}_layer{i}.*`` → ``segments.{s}.group{g}_layer{i}.*`` (same inner
names ``conv1, bn1, conv2, bn2, downsample.0, downsample.1``) with ``s`` the
segment holding that block (:func:`segment_of_block`);
``branch_layer{k}.{idx}.*`` → ``heads.{k-1}.{idx}.*`` (same Sequential indices);
``fc.*`` → ``heads.{K-1}.2.*``. :func:`authors_key` applies it.

BN roles: every BN except the ``downsample`` BN is ``layers.norm``; the
``downsample`` BN is ``layers.aux_norm``.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn

from ..layers.exits import pooled_linear_head
from ._layers import LayerSet, plain_layer_set
from ._registry import register_model
from .multi_exit import MultiExitNet

__all__ = ["ResNet38", "RDIBasicBlock", "authors_key", "resnet38", "segment_of_block"]

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 6
EXIT_BLOCKS = (1, 4)  # 0-based block index within each stage after which an exit attaches
EXIT_WEIGHTS = (0.5, 0.5, 0.7, 0.7, 0.9, 0.9, 2.0)
EXIT_THRESHOLDS = (0.32, 0.36, 0.39, 0.83, 1.12, 1.35)


class RDIBasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN + (downsample) shortcut, ReLU.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
    """

    def __init__(self, layers: LayerSet, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = layers.norm(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = layers.conv(out_ch, out_ch, 3, stride=1, padding=1)
        self.bn2 = layers.norm(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(layers.conv(in_ch, out_ch, 1, stride=stride),
                                            layers.aux_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def segment_of_block(stage: int, block: int, *, exits: bool = True) -> int:
    """Index of the segment holding block ``block`` of stage ``stage`` (both 0-based)."""
    if not exits:
        return 0
    pos = stage * BLOCKS_PER_STAGE + block  # 0..17
    cuts = [g * BLOCKS_PER_STAGE + b for g in range(3) for b in EXIT_BLOCKS]  # 1, 4, 7, …
    return sum(pos > c for c in cuts)


def authors_key(key: str, *, exits: bool = True) -> str:
    """Rename one key of the authors' ResNet-38 state dict to this module's layout.

    Args:
        key: e.g. ``"module.group1_layer0.downsample.0.weight"``.
        exits: whether the target model was built with ``exits=True``.

    Returns:
        e.g. ``"segments.2.group1_layer0.downsample.0.weight"``.
    """
    key = key.removeprefix("module.")
    num_exits = 3 * len(EXIT_BLOCKS) + 1 if exits else 1
    if m := re.fullmatch(r"group(\d)_layer(\d+)\.(.+)", key):
        g, i = int(m.group(1)), int(m.group(2))
        return f"segments.{segment_of_block(g, i, exits=exits)}.{key}"
    if m := re.fullmatch(r"branch_layer(\d+)\.(.+)", key):
        if not exits:
            raise KeyError(f"{key} belongs to an exit; build the model with exits=True")
        return f"heads.{int(m.group(1)) - 1}.{m.group(2)}"
    if key.startswith("fc."):
        return f"heads.{num_exits - 1}.2.{key[3:]}"
    if key.startswith(("conv1.", "bn1.")):
        return f"segments.0.{key}"
    raise KeyError(f"unexpected key {key!r} in an RDI ResNet-38 state dict")


def _stage1_head(layers: LayerSet, num_classes: int) -> nn.Sequential:
    # Indices match the authors' branch_layer1/2: 0 pool … 9 fc.
    return nn.Sequential(nn.MaxPool2d(2), layers.conv(16, 64, 5, padding=2), layers.norm(64),
                         nn.ReLU(), nn.MaxPool2d(2), layers.conv(64, 32, 3, padding=1),
                         layers.norm(32), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         layers.head(32, num_classes))


def _stage2_head(layers: LayerSet, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.MaxPool2d(2), RDIBasicBlock(layers, 32, 32), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(1), layers.head(32, num_classes))


class ResNet38(MultiExitNet):
    """CIFAR ResNet-38, optionally with RDI-Nets' six early exits.

    Args:
        layers: layer factories.
        num_classes: classifier outputs.
        in_channels: image channels.
        exits: add the six early exits (7 outputs).

    Shape:
        (B, in_channels, H, W) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, *, num_classes: int = 10, in_channels: int = 3,
                 exits: bool = False) -> None:
        named: list[tuple[str, nn.Module]] = [
            ("conv1", layers.conv(in_channels, 16, 3, padding=1)),
            ("bn1", layers.norm(16)),
            ("relu", nn.ReLU()),
        ]
        cut_after: list[int] = []  # positions in `named` after which an exit attaches
        heads: list[nn.Module] = []
        in_ch = 16
        for g, width in enumerate(STAGE_WIDTHS):
            for i in range(BLOCKS_PER_STAGE):
                stride = 2 if (g > 0 and i == 0) else 1
                named.append((f"group{g}_layer{i}", RDIBasicBlock(layers, in_ch, width, stride)))
                in_ch = width
                if exits and i in EXIT_BLOCKS:
                    cut_after.append(len(named))
                    heads.append(_stage1_head(layers, num_classes) if g == 0 else
                                 _stage2_head(layers, num_classes) if g == 1 else
                                 pooled_linear_head(layers, 64, num_classes))
        bounds = [0, *cut_after, len(named)]
        segments = [nn.Sequential(OrderedDict(named[a:b])) for a, b in zip(bounds, bounds[1:])]
        heads.append(pooled_linear_head(layers, 64, num_classes))
        super().__init__(segments, heads, input_size=(in_channels, 32, 32),
                         exit_weights=EXIT_WEIGHTS if exits else None,
                         exit_thresholds=EXIT_THRESHOLDS if exits else None)


@register_model
def resnet38(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
             exits: bool = False) -> ResNet38:
    """RDI-Nets' CIFAR ResNet-38 (564,122 params); ``exits=True``: RDI-ResNet38 (692,310)."""
    return ResNet38(layers or plain_layer_set(), num_classes=num_classes,
                    in_channels=in_channels, exits=exits)
