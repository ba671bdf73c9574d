"""RDI-Nets' MNIST SmallCNN and its 2-exit RDI-SmallCNN.

Paper: T. Chen et al., "Triple Wins" (ICLR 2020, papers/triple-wins-rdi-nets.txt,
Appendix A/B), network from Chen et al. 2018 (four convs, three fc), with the
branch layers of the authors' ``mnist/models.py``:

* backbone (28×28 inputs, convs 3×3 without padding, with bias):
  conv 1→32, ReLU, [exit 1], conv 32→32, ReLU, MaxPool2, conv 32→64, ReLU,
  [exit 2], conv 64→64, ReLU, MaxPool2, fc 1024→200, ReLU, Dropout(0.5),
  fc 200→200, ReLU, fc 200→10. 312,202 parameters.
* exit 1: conv 32→16 3×3 stride 2, MaxPool2, flatten, fc 576→200,
  Dropout(0.5), fc 200→200, fc 200→10. Exit 2: MaxPool2, flatten, fc 1600→200,
  Dropout(0.5), fc 200→200, fc 200→10. The authors' branches have no ReLU
  between their fc layers; we keep that (it changes no count, and the released
  weights were trained that way). 836,846 parameters with exits; per-exit cost
  0.818, 7.00, 9.25 MFlops (conv MACs / 2²⁰, the paper truncates to 2 digits).
* loss weights {1, 1, 1}; entropy thresholds {0.023, 0.014}.
* init as the authors: Kaiming-normal conv weights, zero conv biases, final
  fc zero.

Conditioning: ``layers.cond(C)`` sits after each backbone conv, before its
ReLU (Identity by default, FiLM under OAT). The head convolution has none.
With ``batch_norm=True`` (not in the paper) each backbone conv loses its bias
and is followed by ``layers.norm(C)`` instead (BN; dual BN + FiLM under OAT,
dual BN under FLOAT), the placement REFERENCE.md gives for OAT/FLOAT nets.

State-dict mapping from the authors' checkpoint: ``conv{i}`` →
``segments.{s}.conv{i}`` (with exits: conv1 in segment 0, conv2/conv3 in 1,
conv4 in 2; without: all in 0); ``fc{i}`` → ``heads.{K-1}.fc{i}``;
``branch_layer{k}.{idx}`` → ``heads.{k-1}.{idx}`` (same Sequential indices).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._layers import LayerSet, plain_layer_set
from ._registry import register_model
from .multi_exit import MultiExitNet

__all__ = ["SmallCNN", "small_cnn"]

EXIT_THRESHOLDS = (0.023, 0.014)


def _conv_stage(layers: LayerSet, i: int, in_ch: int, out_ch: int,
                pool: bool, batch_norm: bool) -> list[tuple[str, nn.Module]]:
    if batch_norm:  # conv (no bias) → BN (dual BN + FiLM under OAT, dual BN under FLOAT)
        mods = [(f"conv{i}", layers.conv(in_ch, out_ch, 3, bias=False)), (f"bn{i}", layers.norm(out_ch))]
    else:  # the paper's network: conv with bias → conditioning point (FiLM under OAT)
        mods = [(f"conv{i}", layers.conv(in_ch, out_ch, 3, bias=True)), (f"cond{i}", layers.cond(out_ch))]
    mods.append((f"relu{i}", nn.ReLU()))
    if pool:
        mods.append((f"pool{i}", nn.MaxPool2d(2)))
    return mods


class SmallCNN(MultiExitNet):
    """MNIST SmallCNN, optionally with two early exits.

    Args:
        layers: layer factories.
        num_classes: classifier outputs.
        in_channels: image channels.
        exits: add the two early exits (3 outputs).
        dropout: dropout probability of the fc stacks (0.5 in the paper).
        batch_norm: put a BatchNorm after each backbone conv (conv bias dropped).
            Not in the paper; it gives OAT/FLOAT their dual-BN half (and OAT
            its FiLM-after-BN placement) on MNIST-sized experiments. Off by
            default, so counts and the authors' weights are unchanged.

    Shape:
        (B, in_channels, 28, 28) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, *, num_classes: int = 10, in_channels: int = 1,
                 exits: bool = False, dropout: float = 0.5, batch_norm: bool = False) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        parts = [
            _conv_stage(layers, 1, in_channels, 32, pool=False, batch_norm=batch_norm),
            _conv_stage(layers, 2, 32, 32, pool=True, batch_norm=batch_norm)
            + _conv_stage(layers, 3, 32, 64, pool=False, batch_norm=batch_norm),
            _conv_stage(layers, 4, 64, 64, pool=True, batch_norm=batch_norm),
        ]
        final = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten(1)), ("fc1", layers.linear(64 * 4 * 4, 200)),
            ("relu1", nn.ReLU()), ("drop", nn.Dropout(dropout)),
            ("fc2", layers.linear(200, 200)), ("relu2", nn.ReLU()),
            ("fc3", layers.head(200, num_classes)),
        ]))
        if exits:
            segments = [nn.Sequential(OrderedDict(p)) for p in parts]
            heads = [
                nn.Sequential(layers.conv(32, 16, 3, stride=2, bias=True), nn.MaxPool2d(2),
                              nn.Flatten(1), layers.linear(16 * 6 * 6, 200), nn.Dropout(dropout),
                              layers.linear(200, 200), layers.head(200, num_classes)),
                nn.Sequential(nn.MaxPool2d(2), nn.Flatten(1), layers.linear(64 * 5 * 5, 200),
                              nn.Dropout(dropout), layers.linear(200, 200),
                              layers.head(200, num_classes)),
                final,
            ]
        else:
            segments = [nn.Sequential(OrderedDict(p for part in parts for p in part))]
            heads = [final]
        super().__init__(segments, heads, input_size=(in_channels, 28, 28),
                         exit_thresholds=EXIT_THRESHOLDS if exits else None,
                         fixed_input_size=True)
        self._init_like_authors()

    @torch.no_grad()
    def _init_like_authors(self) -> None:
        for m in self.modules():
            w = m._parameters.get("weight")
            if w is not None and w.dim() == 4:
                nn.init.kaiming_normal_(w)
                b = m._parameters.get("bias")
                if b is not None:
                    b.zero_()
        fc3 = self.heads[-1].fc3
        for name in ("weight", "bias"):
            p = getattr(fc3, name, None)
            if isinstance(p, torch.Tensor):
                p.zero_()


@register_model
def small_cnn(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 1,
              exits: bool = False, dropout: float = 0.5, batch_norm: bool = False) -> SmallCNN:
    """MNIST SmallCNN (312,202 params); ``exits=True``: RDI-SmallCNN (836,846 params).

    ``batch_norm=True`` adds a BN after each backbone conv (see :class:`SmallCNN`).
    """
    return SmallCNN(layers or plain_layer_set(), num_classes=num_classes,
                    in_channels=in_channels, exits=exits, dropout=dropout, batch_norm=batch_norm)
