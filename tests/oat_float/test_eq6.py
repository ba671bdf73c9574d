"""FLOAT Eq. 6 at thresholds where a wrong denominator shows: λ_th = 0.3 and 0.8.

REFERENCE.md (FLOAT, "Inference"): BN_A when λ_n > λ_th, else BN_C; the noise
scale is rescaled so both sides span [0, 1]: ``m = λ/λ_th`` for λ ≤ λ_th and
``m = (λ − λ_th)/(1 − λ_th)`` above (λ_th = 0.5 gives the paper's 2λ and
2(λ − 0.5)). At λ_th ∈ {0, 0.5} the slips ``(λ − th)/th``, ``λ/(1 − th)`` or
swapped branches give the same numbers, so every value here is worked out by
hand at λ_th = 0.3 and 0.8, where they do not.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import robustdial as rd
from robustdial.condition import Condition
from robustdial.layers import DualBatchNorm2d
from robustdial.layers.noisy import NoisyConv2d, NoisyLinear
from _nets import TinyNet

# (λ_n, λ_th, m) with m worked out by hand
EQ6_CASES = [
    # λ_th = 0.3: BN_C side m = λ/0.3, BN_A side m = (λ − 0.3)/0.7
    (0.0, 0.3, 0.0),
    (0.15, 0.3, 0.5),     # 0.15 / 0.3
    (0.3, 0.3, 1.0),      # λ = λ_th is still the BN_C side: 0.3 / 0.3
    (0.44, 0.3, 0.2),     # 0.14 / 0.7
    (0.65, 0.3, 0.5),     # 0.35 / 0.7   [(λ−th)/th would give 1.1667]
    (1.0, 0.3, 1.0),      # 0.7 / 0.7
    # λ_th = 0.8: BN_C side m = λ/0.8, BN_A side m = (λ − 0.8)/0.2
    (0.2, 0.8, 0.25),     # 0.2 / 0.8    [λ/(1−th) would give 1.0]
    (0.4, 0.8, 0.5),      # 0.4 / 0.8
    (0.8, 0.8, 1.0),
    (0.85, 0.8, 0.25),    # 0.05 / 0.2
    (0.9, 0.8, 0.5),      # 0.1 / 0.2    [(λ−th)/th would give 0.125]
    (1.0, 0.8, 1.0),
]


@pytest.mark.parametrize("lam,th,m", EQ6_CASES)
def test_noise_multiplier_matches_hand_values(lam, th, m):
    cond = Condition(lam=lam, lam_th=th)
    assert cond.noise_multiplier == pytest.approx(m, abs=1e-9)
    assert cond.use_adv_bn == (lam > th)


def _conv(seed: int = 0) -> NoisyConv2d:
    torch.manual_seed(seed)
    return NoisyConv2d(16, 32, 3, padding=1, bias=False, alpha_init=0.25, noise_seed=7)


@pytest.mark.parametrize("lam,th,m", [c for c in EQ6_CASES if c[2] > 0])
def test_noisy_conv_forward_scales_the_noise_by_eq6(lam, th, m):
    """Fixed η: out(λ, λ_th) − conv(x, θ) is exactly m times the λ = 1 (m = 1) noise response."""
    layer = _conv().eval()
    x = torch.randn(2, 16, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = F.conv2d(x, layer.weight, padding=1)
        rd.set_condition(layer, lam=1.0, lam_th=0.0, noise="fixed")
        unit = layer(x) - plain  # the response to α·σ(θ)·η, m = 1
        rd.set_condition(layer, lam=lam, lam_th=th, noise="fixed")
        out = layer(x) - plain
        delta_w = layer.effective_weight() - layer.weight
    assert layer.noise_multiplier == pytest.approx(m, abs=1e-9)
    torch.testing.assert_close(out, m * unit, atol=1e-5, rtol=1e-4)
    # the weight noise: std = m·α·std(θ) (α = 0.25; 4,608 draws of a standard normal η)
    expected_std = m * 0.25 * layer.weight.std().item()
    assert delta_w.std().item() == pytest.approx(expected_std, rel=0.05)
    assert abs(delta_w.mean().item()) < 0.1 * expected_std


@pytest.mark.parametrize("lam,th,m", [(0.15, 0.3, 0.5), (0.65, 0.3, 0.5), (0.2, 0.8, 0.25),
                                      (0.85, 0.8, 0.25)])
def test_sampled_noise_std_follows_eq6(lam, th, m):
    """noise="sample": fresh η each forward; the weight-noise std is m·α·std(θ) all the same."""
    layer = NoisyLinear(300, 200)
    rd.set_condition(layer, lam=lam, lam_th=th, noise="sample")
    torch.manual_seed(3)
    with torch.no_grad():
        delta = layer.effective_weight() - layer.weight  # 60,000 draws
    assert delta.std().item() == pytest.approx(m * 0.25 * layer.weight.std().item(), rel=0.03)


@pytest.mark.parametrize("th", [0.3, 0.8])
def test_dual_bn_switches_exactly_above_the_threshold(th):
    dual = DualBatchNorm2d(3)
    with torch.no_grad():  # two BNs that give visibly different outputs
        dual.bn_c.running_mean.fill_(1.0)
        dual.bn_a.running_mean.fill_(-1.0)
    dual.eval()
    x = torch.randn(4, 3, 2, 2)
    for lam, side in [(th - 0.01, "c"), (th, "c"), (th + 0.01, "a"), (1.0, "a")]:
        rd.set_condition(dual, lam=lam, lam_th=th)
        ref = dual.bn_a(x) if side == "a" else dual.bn_c(x)
        assert torch.equal(dual(x), ref), (lam, th, side)


@pytest.mark.parametrize("lam,th,m", [(0.15, 0.3, 0.5), (0.44, 0.3, 0.2), (0.9, 0.8, 0.5)])
def test_float_model_applies_eq6_in_every_noisy_layer(lam, th, m):
    net = TinyNet("float").eval()
    rd.set_condition(net, lam=lam, lam_th=th, noise="fixed")
    noisy = [mod for mod in net.modules() if isinstance(mod, (NoisyConv2d, NoisyLinear))]
    assert len(noisy) == 4
    for mod in noisy:
        assert mod.noise_multiplier == pytest.approx(m, abs=1e-9)
    ran = []  # which BN of each dual pair normalises the batch
    for mod in net.modules():
        if isinstance(mod, DualBatchNorm2d):
            mod.bn_c.register_forward_hook(lambda *_: ran.append("c"))
            mod.bn_a.register_forward_hook(lambda *_: ran.append("a"))
    with torch.no_grad():
        net(torch.rand(2, 1, 12, 12))
    assert ran == ["a" if lam > th else "c"] * 3
