"""A tiny multi-exit net (the real ``MultiExitNet`` class) for fast RDI tests."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustdial.models.multi_exit import MultiExitNet


def tiny_multi_exit(num_classes: int = 5, seed: int = 0) -> MultiExitNet:
    """3 exits on (1, 12, 12) inputs; BN inside, so eval/train mode matters."""
    torch.manual_seed(seed)

    def head(c: int) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(1), nn.Linear(4 * c, num_classes))

    segments = [
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
    ]
    model = MultiExitNet(segments, [head(4), head(8), head(8)], input_size=(1, 12, 12),
                         exit_weights=(0.5, 0.7, 2.0))
    # scale the heads so entropies spread over a useful range
    for h in model.heads:
        h[-1].weight.data.mul_(60.0)
    return model.eval()


@pytest.fixture
def tiny_model() -> MultiExitNet:
    return tiny_multi_exit()


@pytest.fixture
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand((48, 1, 12, 12), generator=g)
    y = torch.randint(0, 5, (48,), generator=g)
    return x, y
