"""Weight-decay groups and per-iteration LR schedules."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.engine.optim import build_optimizer, build_scheduler, lr_lambda, no_decay_names


class Marked(nn.Module):
    """Conv + BN + Linear, a module-level no-decay name and a flagged parameter."""

    no_weight_decay = {"alpha"}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=True)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 2)
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.ones(1))
        self.beta._no_weight_decay = True
        self.gamma = nn.Parameter(torch.ones(1))  # an ordinary parameter: decayed


def test_no_decay_names():
    names = no_decay_names(Marked())
    assert names == {"conv.bias", "bn.weight", "bn.bias", "fc.bias", "alpha", "beta"}


def test_decay_acts_only_on_decayed_parameters():
    """One SGD step with zero loss gradient: only weight decay moves parameters."""
    m = Marked()
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    opt = build_optimizer(m, lr=0.1, momentum=0.0, weight_decay=0.5)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in m.named_parameters():
        if name in {"conv.weight", "fc.weight", "gamma"}:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p, before[name]), name


def test_float_noise_scale_and_bn_not_decayed():
    m = rd.create_model("small_cnn", conditioning="float")
    skip = no_decay_names(m)
    alphas = [n for n, _ in m.named_parameters() if n.endswith("alpha")]
    assert alphas and set(alphas) <= skip
    assert all(n in skip for n, p in m.named_parameters() if n.endswith("bias"))


def test_tied_and_frozen_parameters():
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    m[1].weight = m[0].weight
    m[0].bias.requires_grad_(False)
    opt = build_optimizer(m, lr=0.1)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == 2  # shared weight once, frozen bias out


def _lrs(schedule: str, total: int, **kw) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = build_scheduler(opt, schedule, total, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_shape():
    lrs = _lrs("cosine", 100)
    assert lrs[0] == pytest.approx(0.2)
    assert lrs[50] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_multistep_and_constant():
    lrs = _lrs("multistep", 30, milestones=[10, 20], gamma=0.1)
    assert lrs[:10] == pytest.approx([0.2] * 10)
    assert lrs[10:20] == pytest.approx([0.02] * 10)
    assert lrs[20:] == pytest.approx([0.002] * 10)
    assert _lrs("constant", 5) == pytest.approx([0.2] * 5)
    with pytest.raises(ValueError, match="cosine, multistep, constant or cyclic"):
        lr_lambda("linear", 10)


def test_cyclic_is_one_triangle_peaking_at_two_fifths():
    # Wong et al. 2020: linear up to the peak at 2/5 of the run, linear down to 0 at the end
    f = lr_lambda("cyclic", 10)
    assert [round(f(t), 4) for t in range(11)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.8333, 0.6667,
                                                    0.5, 0.3333, 0.1667, 0.0]
    g = lr_lambda("cyclic", 1000)
    vals = [g(t) for t in range(1000)]
    assert max(vals) == pytest.approx(1.0) and vals.index(max(vals)) == 399
    assert all(a <= b for a, b in zip(vals[:399], vals[1:400]))  # rising
    assert all(a >= b for a, b in zip(vals[400:], vals[401:]))   # falling
    assert vals[-1] < 0.01
