"""Projections, Binary-Relax and the quantized export against numbers checked by hand.

Every expected value below is worked out in the comment next to it (REFERENCE.md,
Binary-Relax section), so none comes from ``robustdial.compress`` itself.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robustdial.compress.binary_relax import BinaryConnect, BinaryRelax
from robustdial.compress.export import export_quantized, load_quantized
from robustdial.compress.projections import quantize, quantize_levels

from _projections_by_hand import BY_HAND

# binary: mean|w| = (0.5 + 1.5 + 2.0 + 0.2)/4 = 1.05
W_BIN = [0.5, -1.5, 2.0, -0.2]
Q_BIN = [1.05, -1.05, 1.05, -1.05]
# ternary: mean|w| = 3.45/8 = 0.43125, δ = 0.7·0.43125 = 0.301875 -> kept: −0.9, 0.5, 1.2, −0.4
# (0.3 < δ is dropped); scale = (0.9 + 0.5 + 1.2 + 0.4)/8 = 0.375 (mean over ALL 8, not the 4 kept)
W_TER = [0.1, -0.9, 0.5, -0.05, 1.2, 0.0, -0.4, 0.3]
L_TER = [0, -1, 1, 0, 1, 0, -1, 0]
S_TER = 0.375
# 4-bit: δ = 15/15 = 1; 15 -> 7 (> 13δ), 7 -> 3 (5 < 7 ≤ 7), 2 -> 1 (1 < 2 ≤ 3), 0.9 -> 0 (≤ δ),
# 4.2 -> 2 (3 < 4.2 ≤ 5); scale = (15·7 + 7·3 + 2·1 + 4.2·2)/(49 + 9 + 1 + 0 + 4) = 136.4/63
W_4B = [15.0, -7.0, 2.0, 0.9, -4.2]
L_4B = [7, -3, 1, 0, -2]
S_4B = 136.4 / 63  # 2.165079365...
# 3-bit uniform: L = 3, s = 0.9/3 = 0.3; w/s = 3, −1.33, 0.67, −0.17, 1.67 -> 3, −1, 1, 0, 2
W_3B = [0.9, -0.4, 0.2, -0.05, 0.5]
Q_3B = [0.9, -0.3, 0.3, 0.0, 0.6]


def _t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_binary_by_hand():
    torch.testing.assert_close(quantize(_t(W_BIN), "binary"), _t(Q_BIN))
    levels, scale = quantize_levels(_t(W_BIN), "binary")
    assert levels.tolist() == [1, -1, 1, -1] and scale.item() == pytest.approx(1.05)
    # zero maps to +mean|w|: mean(0, 1, 1) = 2/3
    torch.testing.assert_close(quantize(_t([0.0, 1.0, -1.0]), "binary"), _t([2, 2, -2]) / 3)


def test_ternary_by_hand_scale_is_mean_over_all_elements():
    levels, scale = quantize_levels(_t(W_TER), "ternary")
    assert levels.tolist() == L_TER
    assert scale.item() == pytest.approx(S_TER)  # 0.75 would be the mean over kept weights
    torch.testing.assert_close(quantize(_t(W_TER), "tnn"), S_TER * _t(L_TER))


def test_4bit_by_hand():
    levels, scale = quantize_levels(_t(W_4B), "4bit")
    assert levels.tolist() == L_4B
    assert scale.item() == pytest.approx(S_4B, rel=1e-6)
    torch.testing.assert_close(quantize(_t(W_4B), 4), S_4B * _t(L_4B))


def test_kbit_uniform_by_hand():
    torch.testing.assert_close(quantize(_t(W_3B), 3), _t(Q_3B))


@pytest.mark.parametrize("scheme", sorted(BY_HAND))
def test_library_equals_the_projection_written_out(scheme):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, 3, 3, generator=g)
    torch.testing.assert_close(quantize(w, scheme), BY_HAND[scheme](w), atol=1e-6, rtol=1e-6)


def _conv_with(weights) -> nn.Module:
    """A model whose only quantized tensor is a 1×1×1×n conv weight set to ``weights``."""
    n = len(weights)
    net = nn.Sequential(nn.Conv2d(1, 1, (1, n), bias=False), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.copy_(_t(weights).view(1, 1, 1, n))
    return net


def test_binary_relax_u_by_hand():
    """u = (η·Q(w) + w)/(η + 1), η = η₀·ρ^epoch; from the cut-off epoch on u = Q(w)."""
    net = _conv_with(W_BIN)
    t = BinaryRelax("binary", rho=2.0, eta0=1.0, cutoff_epoch=2)
    t.on_train_start(net, None)
    expected = [
        [0.775, -1.275, 1.525, -0.625],           # η = 1: ((±1.05) + w)/2
        [2.6 / 3, -1.2, 4.1 / 3, -2.3 / 3],       # η = 2: (2·(±1.05) + w)/3
        Q_BIN,                                    # epoch 2 = cut-off: BinaryConnect
        Q_BIN,
    ]
    for epoch, u in enumerate(expected):
        t.before_forward(net)
        torch.testing.assert_close(net[0].weight.flatten(), _t(u), atol=1e-6, rtol=0)
        t.after_backward(net)
        torch.testing.assert_close(net[0].weight.flatten(), _t(W_BIN))  # float w restored
        t.on_epoch_end(epoch, net, None)


def test_binary_relax_paper_schedule_by_hand():
    """ρ = 1.05, η₀ = 1, M = 120: η at epoch 10 is 1.05¹⁰ = 1.628894627; epoch 119 still relaxed."""
    t = BinaryRelax("ternary")
    assert (t.rho, t.eta0, t.cutoff_epoch) == (1.05, 1.0, 120)
    t.epochs_done = 10
    assert t.eta == pytest.approx(1.628894627, rel=1e-8)
    net = _conv_with(W_TER)
    t.before_forward(net)
    eta = 1.628894627
    u = [(eta * S_TER * lv + w) / (eta + 1) for lv, w in zip(L_TER, W_TER)]
    torch.testing.assert_close(net[0].weight.flatten(), _t(u), atol=1e-6, rtol=0)
    t.after_backward(net)
    t.epochs_done = 119
    assert t.eta == pytest.approx(1.05 ** 119)
    t.epochs_done = 120
    assert t.eta is None


def test_binary_connect_uses_q_from_the_start():
    net = _conv_with(W_4B)
    t = BinaryConnect("4bit")
    t.before_forward(net)
    torch.testing.assert_close(net[0].weight.flatten(), S_4B * _t(L_4B))
    t.after_backward(net)
    torch.testing.assert_close(net[0].weight.flatten(), _t(W_4B))


@pytest.mark.parametrize("scheme,weights,levels,scale", [
    ("binary", W_BIN, [1, -1, 1, -1], 1.05),
    ("ternary", W_TER, L_TER, S_TER),
    ("4bit", W_4B, L_4B, S_4B),
])
def test_export_writes_hand_levels_and_scale(tmp_path, scheme, weights, levels, scale):
    net = _conv_with(weights)
    export_quantized(net, scheme, tmp_path / "q")
    tensors = load_file(str(tmp_path / "q" / "quantized.safetensors"))
    assert tensors["0.weight:levels"].flatten().tolist() == levels
    assert tensors["0.weight:levels"].dtype == torch.int8
    assert tensors["0.weight:scale"].item() == pytest.approx(scale, rel=1e-6)
    meta = json.loads((tmp_path / "q" / "quantized.json").read_text())
    assert list(meta["quantized"]) == ["0.weight"]
    assert sorted(meta["float_keys"]) == ["2.bias", "2.weight"]  # fc stays float
    other = load_quantized(_conv_with([0.0] * len(weights)), tmp_path / "q")
    torch.testing.assert_close(other[0].weight.flatten(), scale * _t(levels))
    torch.testing.assert_close(other[2].weight, net[2].weight)


def test_export_of_finalized_ternary_keeps_its_scale(tmp_path):
    """Re-projecting 0.375·levels would give scale 0.375·density = 0.1875; the export keeps 0.375."""
    net = _conv_with([S_TER * v for v in L_TER])
    export_quantized(net, "ternary", tmp_path / "q")
    tensors = load_file(str(tmp_path / "q" / "quantized.safetensors"))
    assert tensors["0.weight:levels"].flatten().tolist() == L_TER
    assert tensors["0.weight:scale"].item() == pytest.approx(S_TER, rel=1e-6)
