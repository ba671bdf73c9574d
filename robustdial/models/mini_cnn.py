"""MiniCNN: a small BN network for small images, on which every dial composes.

Not from the papers: the backbone of ``robustdial demo`` and of the fast
learning tests, sized so that adversarial training and AutoAttack of a whole
model run in seconds on one CPU core (about 2 M MACs per 14×14 image).
Every layer comes from the :class:`~robustdial.models.LayerSet`, so the same
file gives the λ dial (``conditioning="oat"``: dual BN + FiLM after each BN;
``"float"``: noisy conv/linear weights + dual BN), slimmable widths
(``widths=(0.5, 1.0)``: slimmable convs, switchable BN per width) and early
exits (``exits=True``: RDI-Nets' multi-exit form, one global-pool head per stage).

Layout (3×3 convs, padding 1; "s2" = stride 2)::

    stage 1: conv in→c1, BN, ReLU; conv c1→c2 s2, BN, ReLU      [exit 1]
    stage 2: conv c2→c3 s2, BN, ReLU; conv c3→c3, BN, ReLU      [exit 2]
    stage 3: conv c3→c4 s2, BN, ReLU; conv c4→c4, BN, ReLU      final head
    heads:   global average pool → flatten → fc

with (c1, c2, c3, c4) = (16, 32, 64, 128). Any input size ≥ 8×8 works (the
heads pool globally). The later stages hold most of the compute, so an early
exit saves a real share of it: at 14×14 the exits cost 0.25, 1.14 and 2.02 M
conv MACs (13 %, 56 % and 100 % of the backbone); 283,386 parameters.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..layers.exits import pooled_linear_head
from ._layers import LayerSet, plain_layer_set
from ._registry import register_model
from .multi_exit import MultiExitNet

__all__ = ["MiniCNN", "mini_cnn"]

CHANNELS = (16, 32, 64, 128)


def _conv_bn(layers: LayerSet, name: str, cin: int, cout: int, stride: int) -> list[tuple[str, nn.Module]]:
    return [(f"conv{name}", layers.conv(cin, cout, 3, stride=stride, padding=1)),
            (f"bn{name}", layers.norm(cout)), (f"relu{name}", nn.ReLU())]


class MiniCNN(MultiExitNet):
    """The MiniCNN backbone, optionally with two early exits.

    Args:
        layers: layer factories (conditioning and widths come in through them).
        num_classes: classifier outputs.
        in_channels: image channels.
        exits: add the exits after stages 1 and 2 (3 outputs).
        input_size: (H, W) of the dummy input used for cost counting.

    Shape:
        (B, in_channels, H, W) -> (B, num_classes), H, W ≥ 8.
    """

    def __init__(self, layers: LayerSet, *, num_classes: int = 10, in_channels: int = 1,
                 exits: bool = False, input_size: tuple[int, int] = (14, 14)) -> None:
        c1, c2, c3, c4 = CHANNELS
        stages = [
            _conv_bn(layers, "1", in_channels, c1, 1) + _conv_bn(layers, "2", c1, c2, 2),
            _conv_bn(layers, "3", c2, c3, 2) + _conv_bn(layers, "4", c3, c3, 1),
            _conv_bn(layers, "5", c3, c4, 2) + _conv_bn(layers, "6", c4, c4, 1),
        ]
        if exits:
            segments = [nn.Sequential(OrderedDict(s)) for s in stages]
            heads = [pooled_linear_head(layers, c, num_classes) for c in (c2, c3, c4)]
        else:
            segments = [nn.Sequential(OrderedDict(p for s in stages for p in s))]
            heads = [pooled_linear_head(layers, c4, num_classes)]
        super().__init__(segments, heads, input_size=(in_channels, *input_size))


@register_model
def mini_cnn(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 1,
             exits: bool = False, input_size: tuple[int, int] = (14, 14)) -> MiniCNN:
    """MiniCNN (283,386 params at 1 channel / 10 classes; the demo's backbone); ``exits=True`` adds two early exits."""
    return MiniCNN(layers or plain_layer_set(), num_classes=num_classes, in_channels=in_channels,
                   exits=exits, input_size=tuple(input_size))
