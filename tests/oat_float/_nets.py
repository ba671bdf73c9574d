"""Tiny conditional nets for the OAT / FLOAT tests (built through LayerSet, like the zoo)."""
from __future__ import annotations

from torch import nn

from robustdial.models import build_layer_set


class TinyNet(nn.Module):
    """conv-norm-relu ×2, aux_norm, pooled head: every LayerSet factory is used."""

    def __init__(self, conditioning: str | None = None, in_ch: int = 1, width: int = 8,
                 num_classes: int = 10, **opts) -> None:
        super().__init__()
        L = build_layer_set(conditioning, **opts)
        self.features = nn.Sequential(
            L.conv(in_ch, width, 3, padding=1), L.norm(width), nn.ReLU(),
            L.conv(width, 2 * width, 3, stride=2, padding=1), L.norm(2 * width), nn.ReLU(),
            L.aux_norm(2 * width), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.hidden = L.linear(8 * width, 32)
        self.head = L.head(32, num_classes)

    def forward(self, x):
        return self.head(self.hidden(self.features(x)).relu())
