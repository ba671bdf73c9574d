"""EnResNet: noise injection after residual adds (the `noise` dial) and logit ensembles."""
from __future__ import annotations

import pytest
import torch

from robustdial.condition import conditioned, set_condition
from robustdial.layers.noise_injection import NoiseInjection
from robustdial.models import create_model
from robustdial.models.preact_resnet import LogitEnsemble


def pair(**kw):
    """A noisy pre-act ResNet-20 and a noiseless one with the same weights."""
    noisy = create_model("preact_resnet20", noise_injection=0.1, **kw)
    clean = create_model("preact_resnet20", **kw)
    clean.load_state_dict(noisy.state_dict())  # noise layers hold no state
    return noisy, clean


def test_injection_layer_count_and_no_parameters():
    noisy, clean = pair()
    layers = [m for m in noisy.modules() if isinstance(m, NoiseInjection)]
    assert len(layers) == 9  # one per residual block of ResNet-20
    assert len({m.seed for m in layers}) == 9
    assert sum(p.numel() for p in noisy.parameters()) == sum(p.numel() for p in clean.parameters())


@pytest.mark.parametrize("train", [False, True])
def test_noise_off_equals_the_model_without_injection(train):
    noisy, clean = pair()
    noisy.train(train), clean.train(train)
    x = torch.rand(4, 3, 32, 32)
    with conditioned(noisy, noise="off"):
        torch.testing.assert_close(noisy(x), clean(x), rtol=0, atol=0)


def test_sample_mode_is_on_by_default_in_eval_and_differs_between_calls():
    noisy, clean = pair()
    noisy.eval(), clean.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        a, b, ref = noisy(x), noisy(x), clean(x)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, ref)


def test_fixed_mode_is_deterministic_and_differs_from_off():
    noisy, _ = pair()
    noisy.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        with conditioned(noisy, noise="fixed"):
            a = noisy(x)
            torch.randn(10)  # global RNG use in between must not matter
            b = noisy(x)
        with conditioned(noisy, noise="off"):
            off = noisy(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, off)


def test_bad_noise_mode_lists_the_valid_ones():
    noisy, _ = pair()
    with pytest.raises(ValueError, match="sample"):
        set_condition(noisy, noise="gaussian")


def test_noise_scale_is_c_times_the_feature_std():
    layer = NoiseInjection(0.1)
    x = 3.0 * torch.randn(64, 16, 8, 8) + 1.0
    noise = layer(x) - x
    assert noise.mean().abs() < 0.01
    assert noise.std().item() == pytest.approx(0.1 * x.std().item(), rel=0.02)


def test_noise_does_not_back_propagate_through_the_std():
    layer = NoiseInjection(0.5)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(x))


def test_zero_coefficient_is_identity_and_negative_is_rejected():
    x = torch.randn(3, 4)
    assert NoiseInjection(0.0)(x) is x
    with pytest.raises(ValueError, match=">= 0"):
        NoiseInjection(-0.1)


def test_ensemble_averages_its_members():
    model = create_model("preact_resnet20", ensemble=3).eval()
    assert isinstance(model, LogitEnsemble) and len(model.members) == 3
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([m(x) for m in model.members]).mean(0)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    # Members are independently initialized, so the mean is not any one member.
    assert not torch.allclose(model.members[0].fc.weight, model.members[1].fc.weight)


def test_en2_resnet20_size_and_member_noise_seeds():
    model = create_model("preact_resnet20", ensemble=2, noise_injection=0.1)
    assert sum(p.numel() for p in model.parameters()) == 544_564
    seeds = [m.seed for m in model.modules() if isinstance(m, NoiseInjection)]
    assert len(seeds) == 18 and len(set(seeds)) == 18


def test_ensemble_must_have_members():
    with pytest.raises(ValueError, match="positive"):
        create_model("preact_resnet20", ensemble=0)


def test_noisy_ensemble_trains_a_step():
    model = create_model("preact_resnet20", ensemble=2, noise_injection=0.1).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    with conditioned(model, noise="fixed"):
        before = torch.nn.functional.cross_entropy(model(x), y)
        before.backward()
        opt.step()
        after = torch.nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(before) and after < before
