"""Weight / channel sparsity on tensors and models with known values."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustdial.compress.metrics import (
    channel_density, channel_sparsity, format_sparsity_table, sparsity_report,
    weight_density, weight_sparsity,
)


def _known_weight():
    # (out=2, in=4, 2, 2): input channels 1 and 3 entirely zero; channel 0 has a single non-zero
    w = torch.ones(2, 4, 2, 2)
    w[:, 1] = 0
    w[:, 3] = 0
    w[:, 0] = 0
    w[1, 0, 1, 1] = 0.5
    return w  # zeros: 8 + 8 + 7 = 23 of 32


def test_tensor_metrics_exact():
    w = _known_weight()
    assert weight_sparsity(w) == pytest.approx(23 / 32)
    assert weight_density(w) == pytest.approx(9 / 32)
    assert channel_sparsity(w) == pytest.approx(2 / 4)
    assert channel_density(w) == pytest.approx(2 / 4)


def test_linear_weight_channels_are_columns():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    assert channel_sparsity(w) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="≥ 2 dims"):
        channel_sparsity(torch.zeros(5))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 2, 2, bias=False)   # 32 weights, 4 channels
        self.conv2 = nn.Conv2d(2, 3, 1, bias=False)   # 6 weights, 2 channels (1×1, not a shortcut)
        self.shortcut = nn.Conv2d(4, 3, 1, bias=False)  # float, not measured
        self.fc = nn.Linear(3, 2)


def test_model_totals_and_report():
    net = _Net()
    with torch.no_grad():
        net.conv1.weight.copy_(_known_weight())
        net.conv2.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]).view(3, 2, 1, 1))
        net.shortcut.weight.zero_()
    # zeros: 23 + 4 = 27 of 38; zero channels: 2 + 1 = 3 of 6
    assert weight_sparsity(net) == pytest.approx(27 / 38)
    assert channel_sparsity(net) == pytest.approx(3 / 6)
    assert weight_sparsity(net, layers=["conv2"]) == pytest.approx(4 / 6)
    rows = sparsity_report(net)
    assert [r["name"] for r in rows] == ["conv1.weight", "conv2.weight", "total"]
    assert rows[0]["distinct_values"] == 3 and rows[1]["distinct_values"] == 3
    assert rows[0]["shape"] == [2, 4, 2, 2]
    tot = rows[-1]
    assert (tot["zero_weights"], tot["numel"], tot["zero_channels"], tot["channels"]) == (27, 38, 3, 6)
    assert json.loads(format_sparsity_table(rows, "json"))[-1]["channel_sparsity"] == 0.5
    text = format_sparsity_table(rows)
    assert "conv1.weight" in text and "50.00%" in text


def test_scheme_measures_projection_without_changing_model():
    net = _Net()
    before = net.conv1.weight.detach().clone()
    ws = weight_sparsity(net, scheme="ternary")
    assert 0 < ws < 1
    assert weight_sparsity(net) == 0.0  # random float weights: no exact zeros
    assert torch.equal(net.conv1.weight, before)


def test_bad_input():
    with pytest.raises(TypeError, match="nn.Module or a Tensor"):
        weight_sparsity([1, 2, 3])
