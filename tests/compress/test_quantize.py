"""Projections (binary, ternary, 4-bit, k-bit) and the layer-selection rule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustdial.compress.projections import (
    bits_of, normalize_scheme, quantize, quantize_levels, quantized_layers,
)


def test_binary_is_mean_abs_times_sign():
    w = torch.tensor([[0.5, -1.5], [2.0, -0.2]])
    q = quantize(w, "binary")
    scale = w.abs().mean()
    assert torch.allclose(q, scale * torch.sign(w))
    assert torch.unique(q).numel() == 2


def test_binary_zero_maps_to_plus_scale():
    q = quantize(torch.tensor([0.0, 1.0, -1.0]), "binary")
    assert torch.unique(q).numel() == 2 and q[0] > 0


def test_ternary_matches_reference_definition():
    w = torch.tensor([0.1, -0.9, 0.5, -0.05, 1.2, 0.0, -0.4, 0.3])
    delta = 0.7 * w.abs().mean()
    mask = (w.abs() >= delta).float()
    scale = (w.abs() * mask).mean()  # mean over ALL elements
    expected = scale * mask * torch.sign(w)
    assert torch.allclose(quantize(w, "ternary"), expected)
    levels, s = quantize_levels(w, "tnn")
    assert set(levels.tolist()) <= {-1, 0, 1} and torch.isclose(s, scale)


def test_4bit_levels_follow_the_interval_rule():
    # max|w| = 15 -> δ = 1; levels: |w| ≤ 1 -> 0; (1,3] -> 1; (3,5] -> 2; > 13 -> 7
    w = torch.tensor([0.5, 1.0, 1.01, 3.0, -3.5, 5.0, 12.9, 13.5, -15.0])
    levels, scale = quantize_levels(w, "4bit")
    assert levels.tolist() == [0, 0, 1, 1, -2, 2, 6, 7, -7]
    q = levels.abs().float()
    assert torch.isclose(scale, (w.abs() * q).sum() / (q * q).sum())
    assert torch.allclose(quantize(w, 4), scale * levels.float())


def test_4bit_scale_is_least_squares_optimal():
    torch.manual_seed(1)
    w = torch.randn(64, 16, 3, 3)
    levels, scale = quantize_levels(w, "4bit")
    err = lambda s: (w - s * levels.float()).pow(2).sum()  # noqa: E731
    assert err(scale) <= err(scale * 1.01) and err(scale) <= err(scale * 0.99)
    assert torch.unique(levels).numel() <= 15


@pytest.mark.parametrize("k", [3, 5, 8])
def test_kbit_uniform_levels_and_error(k):
    torch.manual_seed(0)
    w = torch.randn(32, 8, 3, 3)
    q = quantize(w, k)
    assert torch.unique(q).numel() <= 2 ** k - 1
    step = w.abs().max() / (2 ** (k - 1) - 1)
    assert (q - w).abs().max() <= step / 2 + 1e-6


def test_32bit_quantization_equals_float():
    w = torch.randn(4, 3, 3, 3)
    assert torch.equal(quantize(w, 32), w)
    assert torch.equal(quantize(w, "float"), w)
    assert bits_of("float") == 32 and bits_of("ternary") == 2


def test_projection_is_idempotent_and_does_not_touch_input():
    w = torch.randn(8, 4, 3, 3)
    w0 = w.clone()
    for s in ("binary", "4bit", 6):
        q = quantize(w, s)
        assert torch.allclose(quantize(q, s), q, atol=1e-6), s
    assert torch.equal(w, w0)


def test_ternary_scale_is_mean_over_all_elements_so_reprojection_shrinks_it():
    # REFERENCE.md's ternary scale averages over ALL elements: re-projecting a
    # ternary tensor keeps its support but multiplies the scale by the density.
    w = torch.randn(8, 4, 3, 3)
    q = quantize(w, "ternary")
    lv1, _ = quantize_levels(w, "ternary")
    lv2, _ = quantize_levels(q, "ternary")
    assert torch.equal(lv1, lv2)
    density = (q != 0).float().mean()
    assert torch.allclose(quantize(q, "ternary"), density * q, atol=1e-6)


def test_bad_scheme_errors():
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        normalize_scheme("5bits")
    with pytest.raises(ValueError, match="≥ 1"):
        normalize_scheme(0)


class _PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride > 1 else None


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block = _PreActBlock(8, 16, 2)
        self.pw = nn.Conv2d(16, 16, 1)  # pointwise, not a shortcut
        self.fc = nn.Linear(16, 10)


def test_layer_rule_default_and_options():
    net = _Net()
    assert quantized_layers(net) == ["conv1.weight", "block.conv1.weight", "block.conv2.weight",
                                     "pw.weight"]
    assert "conv1.weight" not in quantized_layers(net, include_first=False)
    assert "block.shortcut.weight" in quantized_layers(net, exclude_1x1_shortcut=False)
    assert "fc.weight" in quantized_layers(net, exclude_linear=False)
    assert quantized_layers(net, layers=["fc", "block.conv2.weight"]) == [
        "fc.weight", "block.conv2.weight"]
    with pytest.raises(ValueError, match="not a module with a weight"):
        quantized_layers(net, layers=["nope"])
