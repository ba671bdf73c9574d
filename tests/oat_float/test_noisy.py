"""Noisy weights (FLOAT / PNI): exact plain layer at λ=0, noise modes, Eq. 6, α training."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.condition import Condition
from robustdial.layers import DualBatchNorm2d
from robustdial.layers.noisy import NoisyConv2d, NoisyLinear
from _nets import TinyNet


def _pair():
    noisy = NoisyConv2d(3, 5, 3, padding=1, bias=True)
    plain = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    plain.load_state_dict({k: v for k, v in noisy.state_dict().items() if k != "alpha"})
    return noisy, plain


def test_state_dict_names():
    assert set(NoisyConv2d(3, 5, 3).state_dict()) == {"weight", "bias", "alpha"}
    assert set(NoisyLinear(4, 2).state_dict()) == {"weight", "bias", "alpha"}
    assert isinstance(NoisyConv2d(3, 5, 3), nn.Conv2d) and isinstance(NoisyLinear(4, 2), nn.Linear)


@pytest.mark.parametrize("train", [True, False])
def test_lambda_zero_is_exactly_the_plain_conv(train):
    noisy, plain = _pair()
    noisy.train(train)
    rd.set_condition(noisy, lam=0.0)
    x = torch.randn(2, 3, 6, 6)
    rng = torch.get_rng_state()
    out = noisy(x)
    assert torch.equal(torch.get_rng_state(), rng)  # no noise was even drawn
    assert torch.equal(out, plain(x))
    assert noisy.effective_weight() is noisy.weight


def test_unset_condition_and_noise_off_are_plain():
    noisy, plain = _pair()
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(noisy(x), plain(x))  # never conditioned: λ unset = 0
    rd.set_condition(noisy, lam=1.0, noise="off")
    assert torch.equal(noisy(x), plain(x))


def test_fixed_noise_is_deterministic_and_sampled_noise_differs():
    noisy, plain = _pair()
    x = torch.randn(2, 3, 6, 6)
    rd.set_condition(noisy, lam=1.0, noise="fixed")
    a, b = noisy(x), noisy(x)
    assert torch.equal(a, b) and not torch.allclose(a, plain(x))
    twin = NoisyConv2d(3, 5, 3, padding=1, noise_seed=0)
    twin.load_state_dict(noisy.state_dict())
    rd.set_condition(twin, lam=1.0, noise="fixed")
    assert torch.equal(twin(x), a)  # same seed, same draw (reproducible across instances)
    rd.set_condition(noisy, noise="sample")
    c, d = noisy(x), noisy(x)
    assert not torch.allclose(c, d)


def test_held_noise_stays_until_resampled():
    from robustdial.layers import NoiseInjection, resample_noise

    net = TinyNet("float").train()
    feat = NoiseInjection(0.5)
    x = torch.rand(4, 1, 12, 12)
    rd.set_condition(net, lam=1.0, noise="hold")
    rd.set_condition(feat, noise="hold")
    a, b = net(x), net(x)
    fa, fb = feat(x), feat(x)
    assert torch.equal(a, b) and torch.equal(fa, fb)  # one draw, held
    resample_noise(net)
    resample_noise(feat)
    c, fc = net(x), feat(x)
    assert not torch.allclose(a, c) and not torch.allclose(fa, fc)
    assert torch.equal(net(x), c)  # and the new draw is held again
    rd.set_condition(net, noise="fixed")
    fixed = net(x)
    assert not torch.allclose(fixed, c)  # "hold" never touches the seeded fixed draw
    resample_noise(net)
    assert torch.equal(net(x), fixed)


def test_eval_mode_defaults_to_fixed_train_mode_to_sampled():
    net = TinyNet("float")
    rd.set_condition(net, lam=1.0)
    x = torch.rand(4, 1, 12, 12)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.allclose(net(x), net(x))


def test_noise_statistics_and_eq6_multipliers():
    layer = NoisyLinear(300, 200)
    w = layer.weight.detach()
    for lam, th, m in [(1.0, 0.0, 1.0), (0.2, 0.0, 0.2), (0.2, 0.5, 0.4), (0.5, 0.5, 1.0),
                       (0.7, 0.5, 0.4), (1.0, 0.5, 1.0), (0.0, 0.5, 0.0)]:
        cond = Condition(lam=lam, lam_th=th, noise="fixed")
        assert cond.noise_multiplier == pytest.approx(m)
        rd.set_condition(layer, cond)
        delta = layer.effective_weight().detach() - w
        if m == 0:
            assert torch.equal(delta, torch.zeros_like(delta))
            continue
        # delta = m·α·η with η ~ N(0, std(w)²): its std is m·α·std(w) (60k samples)
        assert delta.std().item() == pytest.approx(m * 0.25 * w.std().item(), rel=0.03)
        assert abs(delta.mean().item()) < 0.03 * delta.std().item() + 1e-4


@pytest.mark.parametrize("pruning", ["random", "magnitude"])
def test_sparse_noise_std_is_that_of_the_surviving_weights(pruning):
    """FLOATS-i/-c/slim at density 0.1: the noise on surviving weights has std α·λ·std(surviving).

    Counting the pruned zeros in σ would make it ≈ √0.1 of that (random masks)
    or less (magnitude pruning keeps the large weights): noise much weaker than
    the dense FLOAT model's.
    """
    torch.manual_seed(0)
    layer = NoisyConv2d(64, 64, 3, bias=False)
    w = layer.weight.detach()
    if pruning == "random":
        keep = torch.rand_like(w) < 0.1
    else:
        keep = w.abs() >= w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
    with torch.no_grad():
        layer.weight.mul_(keep)
    alive = w[keep]
    for lam in (1.0, 0.4):
        rd.set_condition(layer, lam=lam, noise="sample")
        delta = torch.stack([(layer.effective_weight() - layer.weight).detach() for _ in range(20)])
        assert torch.all(delta[:, ~keep] == 0)  # pruned weights stay pruned
        assert delta[:, keep].std().item() == pytest.approx(lam * 0.25 * alive.std().item(), rel=0.02)


def test_dense_noise_std_equals_tensor_std_and_degenerate_cases():
    from robustdial.layers.noisy import _surviving_std

    w = torch.randn(50, 40)
    torch.testing.assert_close(_surviving_std(w, w != 0), w.std())
    z = torch.zeros(5, 5)
    assert _surviving_std(z, z != 0).item() == 0.0  # no survivors: no noise, no NaN
    one = z.clone()
    one[0, 0] = 3.0
    assert _surviving_std(one, one != 0).item() == 0.0


def test_alpha_is_learned_without_weight_decay_and_std_has_no_gradient():
    layer = NoisyConv2d(2, 3, 3)
    assert getattr(layer.alpha, "_no_weight_decay", False) and "alpha" in layer.no_weight_decay
    rd.set_condition(layer, lam=1.0, noise="fixed")
    layer(torch.randn(2, 2, 5, 5)).square().sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs().item() > 0
    # dθ̂/dθ is the identity: σ(θ) is treated as a constant (PNI)
    w = layer.weight.detach()
    g = torch.randn_like(w)
    layer.zero_grad()
    (layer.effective_weight() * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, g)
    from robustdial.engine import param_groups
    groups = param_groups(layer, weight_decay=5e-4)
    decayed = [p for grp in groups if grp["weight_decay"] > 0 for p in grp["params"]]
    assert all(p is not layer.alpha for p in decayed)


def test_float_layer_set_builds_noisy_layers_and_dual_bn():
    net = TinyNet("float")
    kinds = [type(m) for m in net.modules()]
    assert kinds.count(NoisyConv2d) == 2 and kinds.count(NoisyLinear) == 2
    assert kinds.count(DualBatchNorm2d) == 3 and nn.BatchNorm2d not in kinds[:1]
    seeds = [m.noise_seed for m in net.modules() if isinstance(m, (NoisyConv2d, NoisyLinear))]
    assert len(set(seeds)) == len(seeds)  # independent fixed draws per layer


def test_per_sample_mixed_lambda_is_refused_clearly():
    layer = NoisyLinear(4, 2)
    rd.set_condition(layer, lam=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one λ for the whole batch"):
        layer(torch.randn(2, 4))
