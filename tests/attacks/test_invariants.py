"""Invariants every attack keeps, checked with hypothesis over small random models.

‖x_adv − x‖ ≤ ε in the attack's norm, x_adv ∈ [0, 1], ``model.training``
unchanged, parameter ``.grad`` unchanged (None stays None, set grads keep their
values), BN running statistics unchanged in eval mode, and determinism with a
fixed generator.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustdial.attacks import CW, FGSM, MIFGSM, PGD, WRM

from _attack_testlib import MODELS

# (factory(eps, generator) -> attack, norm of its ball or None for unbounded).
# Every bounded attack moves α·steps ≥ 3× its radius (RS-FGSM: start ±ε plus a 1.25ε
# step), so its projection acts on most pixels: without it the ball check fails.
ATTACKS = {
    "pgd_linf": (lambda e, g: PGD(eps=e, alpha=e / 2, steps=6, generator=g), "linf"),
    "pgd_linf_nostart": (lambda e, g: PGD(eps=e, alpha=e, steps=3, random_start=False), "linf"),
    "pgd_l2": (lambda e, g: PGD(eps=4 * e, alpha=4 * e, steps=3, norm="l2", generator=g), "l2"),
    "fgsm": (lambda e, g: FGSM(eps=e), "linf"),
    "rs_fgsm": (lambda e, g: FGSM(eps=e, random_start=True, generator=g), "linf"),
    "mifgsm": (lambda e, g: MIFGSM(eps=e, alpha=e, steps=3), "linf"),
    "wrm": (lambda e, g: WRM(gamma=1.0, steps=3), None),
    "cw": (lambda e, g: CW(steps=3, binary_search_steps=2, lr=0.05), None),
}

# max_examples per attack: the test is parametrized by attack, so each one gets its
# own draws (12 examples spread over 8 attacks caught a missing RS-FGSM projection
# in only 6 of 10 seeds).
EXAMPLES_PER_ATTACK = 10
common = settings(max_examples=EXAMPLES_PER_ATTACK, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


def _radius(attack_name: str, eps: float) -> float:
    return 4 * eps if attack_name == "pgd_l2" else eps


def _dist(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _bn_stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in model.named_buffers()]


@pytest.mark.parametrize("attack_name", sorted(ATTACKS))
@common
@given(arch=st.sampled_from(sorted(MODELS)), seed=st.integers(0, 10_000),
       eps=st.floats(1 / 255, 0.3), training=st.booleans(), batch=st.integers(2, 6))
def test_attack_invariants(attack_name, arch, seed, eps, training, batch):
    factory, norm = ATTACKS[attack_name]
    model = MODELS[arch](seed)
    model.train(training)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 8, 8, generator=g)
    x[0, 0, :2] = 0.0  # pixels on both edges of the box
    x[0, 0, -2:] = 1.0
    y = torch.randint(0, 10, (batch,), generator=g)

    # half the parameters carry a gradient, the rest have none
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.randn(p.shape, generator=g) if i % 2 == 0 else None
    grads_before = [None if p.grad is None else p.grad.clone() for p in params]
    stats_before = _bn_stats(model)
    modes_before = [m.training for m in model.modules()]

    attack = factory(eps, torch.Generator().manual_seed(seed + 1))
    x_adv = attack(model, x, y)

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if norm is not None:
        assert (_dist(x_adv - x, norm) <= _radius(attack_name, eps) + 1e-6).all()
    assert [m.training for m in model.modules()] == modes_before
    for p, before in zip(params, grads_before):
        if before is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, before)
    if not training:
        for a, b in zip(_bn_stats(model), stats_before):
            assert torch.equal(a, b)


# short attacks (α·steps < ε) for the determinism test: a binding projection would pull
# different random starts onto the same corner of the ball
RANDOM_START = {
    "pgd_linf": lambda e, g: PGD(eps=e, alpha=e / 4, steps=2, generator=g),
    "pgd_l2": lambda e, g: PGD(eps=4 * e, alpha=e, steps=2, norm="l2", generator=g),
    "rs_fgsm": lambda e, g: FGSM(eps=e, random_start=True, alpha=e / 2, generator=g),
}


@pytest.mark.parametrize("attack_name", sorted(RANDOM_START))
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_random_start_is_deterministic_with_a_generator(attack_name, seed):
    factory = RANDOM_START[attack_name]
    model = MODELS["conv"](seed).eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(4)
    a1 = factory(8 / 255, torch.Generator().manual_seed(seed))
    a2 = factory(8 / 255, torch.Generator().manual_seed(seed))
    torch.manual_seed(1)
    r1 = a1(model, x, y)
    torch.manual_seed(2)  # the global RNG must not matter
    r2 = a2(model, x, y)
    assert torch.equal(r1, r2)
    r3 = factory(8 / 255, torch.Generator().manual_seed(seed + 1))(model, x, y)
    assert not torch.equal(r1, r3)


def test_attacks_work_under_no_grad_and_refuse_inference_mode():
    model = MODELS["mlp"](0).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    attack = PGD(eps=0.1, alpha=0.05, steps=2, random_start=False)
    with torch.no_grad():
        x_adv = attack(model, x, y)
    assert (x_adv - x).abs().amax() > 0
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="inference_mode"):
            attack(model, x, y)


def test_custom_loss_is_used_and_checked():
    model = MODELS["mlp"](0).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    calls = []

    def logit_of_zero(m, xa, ya):  # per-sample: push class 0's logit up
        calls.append(xa.shape)
        return m(xa)[:, 0]

    attack = PGD(eps=0.1, alpha=0.05, steps=3, random_start=False, loss=logit_of_zero)
    x_adv = attack(model, x, y)
    assert len(calls) == 3
    with torch.no_grad():
        assert (model(x_adv)[:, 0] > model(x)[:, 0]).all()
    assert "loss=logit_of_zero" in repr(attack)

    bad = PGD(eps=0.1, steps=1, loss=lambda m, xa, ya: m(xa).sum())
    with pytest.raises(ValueError, match="one value per sample"):
        bad(model, x, y)


def test_targeted_pgd_moves_towards_the_target():
    model = MODELS["mlp"](3).eval()
    x = torch.rand(8, 1, 8, 8)
    target = torch.full((8,), 7)
    x_adv = PGD(eps=0.5, alpha=0.05, steps=20, random_start=False, targeted=True)(model, x, target)
    with torch.no_grad():
        before = torch.log_softmax(model(x), 1)[:, 7]
        after = torch.log_softmax(model(x_adv), 1)[:, 7]
    assert (after > before).all()


@pytest.mark.parametrize("bad", [dict(eps=-0.1), dict(eps=float("nan")), dict(steps=0),
                                 dict(norm="l1"), dict(steps=2.5)])
def test_bad_hyper_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        PGD(**bad)


def test_bad_inputs_are_rejected():
    model = MODELS["mlp"](0).eval()
    attack = FGSM(eps=0.1)
    with pytest.raises(TypeError, match="255"):
        attack(model, torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.arange(2))
    with pytest.raises(ValueError, match="batch size"):
        attack(model, torch.rand(2, 1, 8, 8), torch.arange(3))
