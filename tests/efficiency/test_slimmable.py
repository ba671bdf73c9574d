"""Slimmable layers, switchable BN and the slimmable training methods."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustdial as rd
from robustdial.cost import count_macs
from robustdial.layers.noisy import NoisyConv2d
from robustdial.layers.slimmable import (SlimmableConv2d, SlimmableLinear, make_slimmable,
                                         scaled_channels)
from robustdial.layers.switchable_bn import SwitchableBatchNorm2d


def test_width_one_equals_plain_conv():
    plain = nn.Conv2d(6, 10, 3, padding=1, bias=True)
    slim = SlimmableConv2d(6, 10, 3, padding=1, bias=True, widths=(0.5, 1.0))
    slim.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 8, 8)
    assert torch.equal(slim(x), plain(x))
    lin, slin = nn.Linear(12, 7), SlimmableLinear(12, 7, widths=(0.5, 1.0))
    slin.load_state_dict(lin.state_dict())
    v = torch.randn(3, 12)
    assert torch.equal(slin(v), lin(v))


def test_sliced_output_equals_manual_slice():
    conv = SlimmableConv2d(8, 16, 3, padding=1, bias=True, widths=(0.25, 0.5, 1.0))
    rd.set_condition(conv, width=0.5)
    x = torch.randn(2, 4, 8, 8)  # the previous layer at width 0.5 gives 4 channels
    ref = F.conv2d(x, conv.weight[:8, :4], conv.bias[:8], padding=1)
    out = conv(x)
    assert out.shape == (2, 8, 8, 8)
    torch.testing.assert_close(out, ref)
    assert conv.effective_weight().shape == (8, 4, 3, 3)
    # depthwise follows the input; the head keeps its outputs
    dw = SlimmableConv2d(8, 8, 3, padding=1, groups=8, bias=False, widths=(0.5, 1.0))
    rd.set_condition(dw, width=0.5)
    torch.testing.assert_close(dw(x), F.conv2d(x, dw.weight[:4], None, padding=1, groups=4))
    head = SlimmableLinear(16, 10, widths=(0.5, 1.0), fixed_out=True)
    rd.set_condition(head, width=0.5)
    assert head(torch.randn(2, 8)).shape == (2, 10)


def test_noisy_slim_uses_full_tensor_noise():
    noisy = NoisyConv2d(8, 8, 3, padding=1, bias=False, noise_seed=3)
    slim = make_slimmable(NoisyConv2d(8, 8, 3, padding=1, bias=False, noise_seed=3), (0.5, 1.0))
    slim.load_state_dict(noisy.state_dict())
    rd.set_condition(noisy, lam=1.0, noise="fixed")
    rd.set_condition(slim, lam=1.0, noise="fixed", width=0.5)
    x = torch.randn(1, 4, 6, 6)
    full = noisy.effective_weight()
    torch.testing.assert_close(slim(x), F.conv2d(x, full[:4, :4], None, padding=1))


def test_untrained_width_lists_trained_widths():
    model = rd.create_model("preact_resnet20", widths=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"0\.5, 1"):
        rd.set_condition(model, width=0.3)


def test_switchable_bn_private_per_width():
    sbn = SwitchableBatchNorm2d(16, (0.5, 1.0))
    assert [bn.num_features for bn in sbn.bns] == [8, 16]
    rd.set_condition(sbn, width=0.5)
    sbn.train()
    sbn(torch.randn(4, 8, 3, 3) + 5)
    assert sbn.bns[0].running_mean.mean() > 0.1 and torch.all(sbn.bns[1].running_mean == 0)
    with pytest.raises(ValueError, match="expects 8 channels"):
        sbn(torch.randn(2, 16, 3, 3))


@pytest.mark.parametrize("conditioning", [None, "oat", "float"])
def test_macs_quarter_at_half_width(conditioning):
    model = rd.create_model("preact_resnet20", widths=(0.5, 1.0), conditioning=conditioning)
    full = count_macs(model, (3, 32, 32), dials={"width": 1.0})
    half = count_macs(model, (3, 32, 32), dials={"width": 0.5})
    # inner convs (all but the stem, whose input stays 3 channels) scale by exactly 1/4
    for a, b in zip(full.layers[1:], half.layers[1:], strict=True):
        if a.kind == "conv":
            assert b.macs == pytest.approx(a.macs / 4)
    assert half.conv_macs / full.conv_macs == pytest.approx(0.25, abs=0.01)


def test_oats_model_has_film_per_width():
    model = rd.create_model("preact_resnet20", conditioning="oat", widths=(0.5, 0.75, 1.0))
    sbn = model.layer1[0].bn1
    assert isinstance(sbn, SwitchableBatchNorm2d)
    assert [blk[1].num_features for blk in sbn.bns] == [scaled_channels(16, w) for w in (0.5, 0.75, 1)]
    encodings = {id(m.encoding) for m in model.modules() if hasattr(m, "encoding")}
    assert len(encodings) == 1  # one λ encoding shared by every FiLM of every width


@pytest.mark.parametrize("name,cond,kw,reduction", [
    ("oats", "oat", {"lam_values": (0.0, 1.0)}, "mean"),  # OAT paper Alg. 2: average loss
    ("float_slim", "float", {}, "sum"),  # FLOAT Sec. 3.2: one backward per width
    ("pgd_ats", None, {"lam": 1.0}, "mean"),  # OATS' baseline, averaged like OATS
    ("slimmable", None, {"inner": "pgd_at", "lam": 1.0}, "sum"),  # Yu et al. Alg. 1
])
def test_slimmable_methods_combine_widths_as_their_paper(name, cond, kw, reduction):
    from robustdial.methods import build_method

    attack = {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}
    method = build_method(name, widths=(0.5, 1.0), attack=attack, **kw)
    assert method.reduction == reduction and method.config()["reduction"] == reduction
    model = rd.create_model("small_cnn", in_channels=1, conditioning=cond, widths=(0.5, 1.0))
    model.train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.manual_seed(1)
    loss, metrics = method.loss(model, (x, y))
    per_width = metrics["loss@w0.5"] + metrics["loss@w1"]
    assert torch.isclose(loss, per_width if reduction == "sum" else per_width / 2)
    assert torch.isclose(metrics["loss"], loss.detach())
    loss.backward()
    # the 0.5-width switchable BNs / hidden weights receive gradients
    grads = [p.grad for n, p in model.named_parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert method.val_condition["width"] == 1.0


def test_reduction_can_be_chosen_and_is_checked():
    from robustdial.methods import FLOATSlim, OATS, Slimmable

    assert OATS(reduction="sum").reduction == "sum" and FLOATSlim(reduction="mean").reduction == "mean"
    with pytest.raises(ValueError, match="reduction must be one of"):
        Slimmable("pgd_at", reduction="max")


def test_float_slim_gradient_equals_one_backward_per_width():
    """FLOAT slim's summed loss gives exactly the accumulated gradients of one backward per width."""
    from robustdial.methods import FLOATSlim
    from robustdial.methods.float import FLOAT

    attack = {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}
    model = rd.create_model("small_cnn", in_channels=1, conditioning="float", widths=(0.5, 1.0)).train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.manual_seed(2)
    loss, _ = FLOATSlim(widths=(0.5, 1.0), attack=attack).loss(model, (x, y))
    loss.backward()
    joint = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    inner = FLOAT(attack=attack)
    for w in (1.0, 0.5):  # widest first, as the method
        with rd.conditioned(model, width=w):
            inner.loss(model, (x, y))[0].backward()
    for n, g in joint.items():
        torch.testing.assert_close(g, model.get_parameter(n).grad, msg=n)
