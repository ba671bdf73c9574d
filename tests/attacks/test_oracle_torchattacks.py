"""Our PGD / FGSM / RS-FGSM / MI-FGSM equal torchattacks' step for step.

Batches of 16 (a power of two) make torchattacks' mean-reduced CE gradient an
exact rescaling of our summed per-sample gradient, so the signs agree exactly.

Two kinds of cases: α·steps < ε, where only the steps are compared, and
α·steps ≫ ε, where the ε-ball projection acts on most pixels and must agree
too. Random starts are compared by seeding both sides identically:
torchattacks draws from the global RNG (PGD: ``empty_like(x).uniform_(−ε, ε)``;
PGDL2: ``normal_()`` then one ``uniform_(0, 1)`` radius per sample; FFGSM:
``randn_like(x).uniform_(−ε, ε)``, whose ``randn_like`` consumes one normal
draw first), ours from a ``torch.Generator`` seeded with the same value.

torchattacks is the oracle, in the ``dev`` extra (``pip install -e ".[dev]"``,
which ``scripts/env.sh`` runs) at 3.3.0, its last release that declares no
dependencies (later ones pull torchvision and another torch). Under ``CI=true``
a missing torchattacks fails this module instead of skipping it.
"""
from __future__ import annotations

import pytest
import torch

from robustdial.attacks import FGSM, MIFGSM, PGD

from _attack_testlib import IN_CI, tiny_conv

try:
    import torchattacks
except ImportError:  # pragma: no cover - depends on the environment
    _HOW = ('torchattacks (the attack oracle) is not installed: pip install -e ".[dev]" '
            '(or pip install "torchattacks==3.3.0"; later releases pull torchvision and another torch)')
    if IN_CI:
        raise ImportError(f"CI=true: {_HOW}") from None
    pytest.skip(_HOW, allow_module_level=True)


def _setup(seed: int):
    model = tiny_conv(seed).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return model, x, y


def _on_surface(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> float:
    """Fraction of pixels whose L∞ perturbation is exactly ε or that sit on a box edge."""
    d = (x_adv - x).abs()
    edge = (x_adv == 0) | (x_adv == 1)
    return ((d >= eps - 1e-6) | edge).float().mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps,alpha,steps", [
    (8 / 255, 2 / 255, 10),  # α·steps = 2.5ε
    (0.1, 0.01, 7),          # α·steps < ε: projection idle
    (4 / 255, 2 / 255, 20),  # α·steps = 10ε: the projection acts on most pixels
])
def test_pgd_matches_torchattacks(seed, eps, alpha, steps):
    model, x, y = _setup(seed)
    ours = PGD(eps=eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert (ours - x).abs().amax() > 0  # the attack did move
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    if alpha * steps >= 2 * eps:
        assert _on_surface(ours, x, eps) > 0.5  # the projection did act


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps,alpha,steps", [(8 / 255, 2 / 255, 10), (4 / 255, 2 / 255, 20)])
def test_pgd_random_start_matches_torchattacks_when_both_are_seeded(seed, eps, alpha, steps):
    model, x, y = _setup(seed)
    ours = PGD(eps=eps, alpha=alpha, steps=steps,
               generator=torch.Generator().manual_seed(100 + seed))(model, x, y)
    torch.manual_seed(100 + seed)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # and the start really was random: without it the result differs
    plain = PGD(eps=eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    assert not torch.allclose(ours, plain, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_fgsm_matches_torchattacks(seed):
    model, x, y = _setup(seed)
    ours = FGSM(eps=8 / 255)(model, x, y)
    theirs = torchattacks.FGSM(model, eps=8 / 255)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha_over_eps", [1.25, 2.0])
def test_rs_fgsm_matches_torchattacks_ffgsm_when_both_are_seeded(seed, alpha_over_eps):
    """RS-FGSM (Wong et al. 2020) = torchattacks.FFGSM; α > ε, so the projection acts."""
    model, x, y = _setup(seed)
    eps = 8 / 255
    alpha = alpha_over_eps * eps
    g = torch.Generator().manual_seed(200 + seed)
    torch.randn(x.shape, generator=g)  # FFGSM's randn_like(x) consumes one normal draw first
    ours = FGSM(eps=eps, random_start=True, alpha=alpha, generator=g)(model, x, y)
    torch.manual_seed(200 + seed)
    theirs = torchattacks.FFGSM(model, eps=eps, alpha=alpha)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert (ours - x).abs().amax() <= eps + 1e-6
    assert _on_surface(ours, x, eps) > 0.5


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps,alpha,steps", [(8 / 255, 2 / 255, 10), (4 / 255, 2 / 255, 10)])
def test_mifgsm_matches_torchattacks(seed, eps, alpha, steps):
    model, x, y = _setup(seed)
    ours = MIFGSM(eps=eps, alpha=alpha, steps=steps, decay=1.0)(model, x, y)
    theirs = torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps, decay=1.0)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    if alpha * steps >= 2 * eps:
        assert _on_surface(ours, x, eps) > 0.5


@pytest.mark.parametrize("eps,alpha,steps", [(0.5, 0.1, 10), (0.3, 0.2, 20)])
def test_pgd_l2_matches_torchattacks_without_random_start(eps, alpha, steps):
    model, x, y = _setup(3)
    ours = PGD(eps=eps, alpha=alpha, steps=steps, norm="l2", random_start=False)(model, x, y)
    theirs = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    if alpha * steps >= 4 * eps:  # the projection acted: every sample on the sphere
        norms = (ours - x).flatten(1).norm(dim=1)  # (the [0, 1] clamp only shrinks δ a little)
        assert (norms > 0.9 * eps).all() and (norms <= eps + 1e-5).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_pgd_l2_random_start_matches_torchattacks_when_both_are_seeded(seed):
    model, x, y = _setup(seed)
    eps, alpha, steps = 0.3, 0.2, 20
    ours = PGD(eps=eps, alpha=alpha, steps=steps, norm="l2",
               generator=torch.Generator().manual_seed(300 + seed))(model, x, y)
    torch.manual_seed(300 + seed)
    theirs = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
