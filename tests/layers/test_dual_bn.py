"""DualBatchNorm2d: each route equals a plain BatchNorm2d; per-sample routing splits statistics."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.layers import DualBatchNorm2d


def _bn_pair(c=3):
    dual = DualBatchNorm2d(c)
    with torch.no_grad():
        for bn in (dual.bn_c, dual.bn_a):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return dual


@pytest.mark.parametrize("lam,route", [(0.0, "bn_c"), (0.5, "bn_a"), (1.0, "bn_a")])
def test_scalar_route_equals_plain_bn(lam, route):
    dual = _bn_pair()
    ref = copy.deepcopy(getattr(dual, route))
    x = torch.randn(6, 3, 4, 4)
    rd.set_condition(dual, lam=lam)
    assert torch.allclose(dual(x), ref(x), atol=1e-6)
    assert torch.allclose(getattr(dual, route).running_mean, ref.running_mean)
    other = dual.bn_a if route == "bn_c" else dual.bn_c
    assert int(other.num_batches_tracked) == 0  # the other BN saw nothing


def test_threshold_moves_the_switch():
    dual = _bn_pair()
    x = torch.randn(4, 3, 2, 2)
    dual.eval()
    rd.set_condition(dual, lam=0.4, lam_th=0.5)
    assert torch.allclose(dual(x), dual.bn_c(x))
    rd.set_condition(dual, lam=0.6, lam_th=0.5)
    assert torch.allclose(dual(x), dual.bn_a(x))


@pytest.mark.parametrize("lam", [[0.0, 1.0, 0.0, 0.3, 0.0, 0.1, 1.0, 0.0],   # interleaved: gather
                                 [0.0, 0.0, 0.0, 0.0, 0.3, 0.1, 1.0, 1.0]])  # clean first: slices
def test_per_sample_routing_equals_separate_batches(lam):
    dual = _bn_pair()
    ref = copy.deepcopy(dual)
    x = torch.randn(8, 3, 5, 5)
    lam = torch.tensor(lam)
    with rd.conditioned(dual, lam=lam):
        out = dual(x)
    clean = lam == 0
    assert torch.allclose(out[clean], ref.bn_c(x[clean]), atol=1e-6)
    assert torch.allclose(out[~clean], ref.bn_a(x[~clean]), atol=1e-6)
    assert torch.allclose(dual.bn_c.running_var, ref.bn_c.running_var)
    assert torch.allclose(dual.bn_a.running_mean, ref.bn_a.running_mean)


def test_per_sample_routing_gradients_flow_to_both():
    dual = _bn_pair()
    x = torch.randn(6, 3, 3, 3, requires_grad=True)
    with rd.conditioned(dual, lam=torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])):
        dual(x).square().sum().backward()
    assert dual.bn_c.weight.grad.abs().sum() > 0 and dual.bn_a.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_batch_size_mismatch_is_an_error():
    dual = _bn_pair()
    with rd.conditioned(dual, lam=torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match="per-sample"):
            dual(torch.randn(3, 3, 2, 2))


def test_inside_a_network_only_dual_layers_react():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), DualBatchNorm2d(2))
    net.eval()
    x = torch.randn(2, 1, 3, 3)
    with rd.conditioned(net, lam=1.0):
        adv = net(x)
    clean = net(x)
    assert torch.allclose(adv, net[1].bn_a(net[0](x)))
    assert torch.allclose(clean, net[1].bn_c(net[0](x)))
