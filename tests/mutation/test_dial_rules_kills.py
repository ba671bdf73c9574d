"""Dial rules that the mutation check (scripts/mutation_check.py) found unpinned.

Each test pins one documented rule (the mutation ids it kills are in each docstring):

* an interval dial checks *every* per-sample λ against both bounds, and a refused
  condition leaves the model's condition as it was (contract 3: nothing half-applied);
* a slimmable layer at width w keeps ⌈w·C⌉ channels (``layers/slimmable.py``);
* an unset ``width`` dial means the widest width — also after ``conditioned(width=...)``
  restores the unset dial;
* EnResNet's feature noise is on (``"sample"``) whenever the ``noise`` dial is unset,
  also after ``conditioned(noise="off")`` restores it.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.condition import Condition
from robustdial.layers import DualBatchNorm2d
from robustdial.layers.noise_injection import NoiseInjection
from robustdial.layers.noisy import NoisyLinear
from robustdial.layers.slimmable import SlimmableConv2d, SlimmableLinear
from robustdial.layers.switchable_bn import SwitchableBatchNorm2d
from robustdial.models import build_layer_set


@pytest.mark.parametrize("make", [lambda: nn.Sequential(nn.Conv2d(1, 3, 1), DualBatchNorm2d(3)),
                                  lambda: nn.Sequential(NoisyLinear(4, 2))],
                         ids=["dual_bn", "noisy"])
@pytest.mark.parametrize("lam", [[0.0, 1.5], [0.2, 0.5, 1.01], [-0.1, 0.5]])
def test_every_per_sample_lambda_is_range_checked(make, lam):
    """Kills ``lambda-range-checks-min-only``: the largest λ is checked too, and nothing is applied."""
    net = make()
    rd.set_condition(net, lam=0.3)
    with pytest.raises(ValueError, match=r"outside its valid range \[0, 1\]"):
        rd.set_condition(net, lam=torch.tensor(lam))
    assert rd.get_condition(net) == Condition(lam=0.3)


def test_lambda_threshold_range_is_checked():
    net = nn.Sequential(DualBatchNorm2d(3))
    with pytest.raises(ValueError, match="lam_th"):
        rd.set_condition(net, lam=0.5, lam_th=1.0)  # λ_th ∈ [0, 0.999]: λ_th = 1 leaves no BN_a side


@pytest.mark.parametrize("C,w,expected", [(10, 0.75, 8), (5, 0.5, 3), (6, 0.25, 2), (16, 0.75, 12),
                                          (3, 0.1, 1)])
def test_slimmed_layers_keep_the_ceiling_of_w_times_c(C, w, expected):
    """Kills ``width-channels-floor``: ⌈w·C⌉ filters, BN channels and linear outputs (at least 1)."""
    widths = (w, 1.0)
    conv = SlimmableConv2d(2, C, 1, widths=widths)
    lin = SlimmableLinear(4, C, widths=widths)
    sbn = SwitchableBatchNorm2d(C, widths)
    rd.set_condition(conv, width=w)
    rd.set_condition(lin, width=w)
    rd.set_condition(sbn, width=w)
    out = conv(torch.rand(2, 2, 3, 3))
    assert out.shape[1] == expected
    assert lin(torch.rand(2, 4)).shape[1] == expected
    assert sbn.bns[0].num_features == expected and sbn(out).shape[1] == expected


def _slim_net() -> nn.Module:
    L = build_layer_set(None, widths=(0.5, 1.0))
    torch.manual_seed(0)
    return nn.Sequential(L.conv(1, 8, 3, padding=1), L.norm(8), nn.ReLU(),
                         L.conv(8, 8, 3, padding=1), L.norm(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), L.head(8, 3)).eval()


def test_unset_width_dial_is_the_widest_width():
    """Kills ``switchable-bn-default-narrowest``: width unset (never set, or restored) = width 1."""
    net = _slim_net()
    x = torch.rand(2, 1, 6, 6)
    with torch.no_grad():
        fresh = net(x)
        with rd.conditioned(net, width=1.0):
            full = net(x)
        with rd.conditioned(net, width=0.5):
            half = net(x)
        restored = net(x)  # conditioned() put the unset width back
        rd.set_condition(net, width=None)
        unset = net(x)
    assert not torch.allclose(half, full)
    for out in (fresh, restored, unset):
        torch.testing.assert_close(out, full, rtol=0, atol=0)
    sbns = [m for m in net.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert sbns and all(m.active is m.bns[-1] for m in sbns)


def test_unset_noise_dial_is_sample_mode_after_a_restore():
    """Kills ``feature-noise-default-off``: the unset noise dial means noise on, also once restored."""
    layer = NoiseInjection(0.5)
    net = nn.Sequential(layer)
    x = torch.randn(4, 8)
    with rd.conditioned(net, noise="off"):
        assert torch.equal(net(x), x)
    assert rd.get_condition(net).noise is None
    a, b = net(x), net(x)
    assert not torch.allclose(a, x) and not torch.allclose(a, b)  # fresh noise every forward
    rd.set_condition(net, noise=None)
    assert not torch.allclose(net(x), x)
