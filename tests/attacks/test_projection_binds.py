"""Deterministic ε-ball and box checks that *bind*: the projection must act, or the test fails.

The models here are linear with a known input-gradient sign: logits
``(w·x, −w·x)`` with every ``|w_i| = c``. The cross-entropy of class 0 ascends
along ``−sign(w)``, that of class 1 along ``+sign(w)``, whatever the point, so
every step of every attack pushes each pixel the same way. With ``α·steps ≫ ε``
an attack that forgets its projection walks far outside the ball; one that
projects ends *exactly* at ``clip(x + ε·d, 0, 1)`` (L∞) or at ``x + ε·ĝ``
(L2), which the tests assert, together with inputs on and near both box edges
so a missing ``[0, 1]`` clamp fails as well.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustdial.attacks import (CW, FGSM, MIFGSM, PGD, WRM, MaxAverage, RandomFusion,
                                average_loss)

from _attack_testlib import AUTOATTACK_HOW, require

C = 0.05  # |w_i|: |2·w·x| ≤ 6.4, so the CE gradient never underflows to 0
B, SHAPE = 8, (1, 8, 8)
N = 64


def _w(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(N, generator=g) < 0.5, -C, C)


class SignModel(nn.Module):
    """logits = (w·x, −w·x); CE(class 0) ascends along −sign(w), CE(class 1) along +sign(w)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(N, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.stack([w, -w]))

    def forward(self, x):
        return self.lin(x.flatten(1))


class TwoExitSignModel(nn.Module):
    """A 2-exit model whose heads are both sign models (scaled 1 and 3): every form ascends alike."""

    num_exits = 2

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = SignModel(w), SignModel(3 * w)

    def forward_exits(self, x):
        return [self.a(x), self.b(x)]

    def forward(self, x):
        return self.b(x)


def _data(seed: int = 0, *, edges: bool = False):
    """x (B, 1, 8, 8), y alternating 0/1, and the ascent sign d per pixel."""
    g = torch.Generator().manual_seed(seed)
    if edges:  # every pixel on or within 0.01 of an edge of the box
        x = torch.tensor([0.0, 0.004, 0.996, 1.0])[torch.randint(0, 4, (B, *SHAPE), generator=g)]
    else:  # interior: x ± ε stays inside [0, 1] for ε ≤ 0.2
        x = 0.3 + 0.4 * torch.rand(B, *SHAPE, generator=g)
    y = torch.arange(B) % 2
    d = _w().sign().view(1, *SHAPE) * torch.where(y == 1, 1.0, -1.0).view(-1, 1, 1, 1)
    return x, y, d


def _linf_expected(x, d, eps):
    return (x + eps * d).clamp(0.0, 1.0)


EPS = 0.05
# name -> (factory(eps), "linf" | "l2" | None); every bounded one has α·steps ≥ 4ε
LINF = {
    "pgd": lambda e: PGD(eps=e, alpha=e, steps=8, generator=torch.Generator().manual_seed(1)),
    "pgd_nostart": lambda e: PGD(eps=e, alpha=e, steps=8, random_start=False),
    "fgsm": lambda e: FGSM(eps=e),
    "rs_fgsm_2eps": lambda e: FGSM(eps=e, random_start=True, alpha=2 * e,
                                   generator=torch.Generator().manual_seed(1)),
    "mifgsm": lambda e: MIFGSM(eps=e, alpha=e, steps=8, decay=1.0),
    "max_average": lambda e: MaxAverage(lambda loss: PGD(eps=e, alpha=e, steps=8, loss=loss,
                                                         random_start=False)),
    "random_fusion": lambda e: RandomFusion(lambda loss: PGD(eps=e, alpha=e, steps=8, loss=loss,
                                                             random_start=False),
                                            generator=torch.Generator().manual_seed(1)),
    "average_form": lambda e: PGD(eps=e, alpha=e, steps=8, loss=average_loss, random_start=False),
}
MULTI_EXIT = {"max_average", "random_fusion", "average_form"}


def _model(name: str) -> nn.Module:
    return (TwoExitSignModel if name in MULTI_EXIT else SignModel)(_w()).eval()


@pytest.mark.parametrize("name", sorted(LINF))
def test_linf_attack_ends_exactly_on_the_projected_corner(name):
    """α·steps ≫ ε: every pixel reaches x ± ε exactly — not further (projection), not less."""
    x, y, d = _data()
    x_adv = LINF[name](EPS)(_model(name), x, y)
    delta = x_adv - x
    assert delta.abs().amax() <= EPS + 1e-6, f"{name} left the ε-ball: projection missing"
    torch.testing.assert_close(x_adv, _linf_expected(x, d, EPS), atol=1e-6, rtol=0)
    assert (delta.abs() >= EPS - 1e-6).all()  # the ball's surface is reached everywhere


@pytest.mark.parametrize("name", sorted(LINF))
def test_linf_attack_stays_in_the_box_at_the_edges(name):
    """Pixels on / next to 0 and 1, pushed outwards by ε ≫ distance to the edge: clamp must act."""
    x, y, d = _data(1, edges=True)
    x_adv = LINF[name](0.1)(_model(name), x, y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().amax() <= 0.1 + 1e-6
    torch.testing.assert_close(x_adv, _linf_expected(x, d, 0.1), atol=1e-6, rtol=0)
    # the clamp acted: some pixels sit exactly on 0 and on 1 after moving
    assert ((x_adv == 0) & (x > 0)).any() and ((x_adv == 1) & (x < 1)).any()


def test_rs_fgsm_default_step_is_projected():
    """RS-FGSM, α = 1.25ε: start u ∈ [−ε, ε] plus a 1.25ε step overshoots wherever u·d > −0.25ε."""
    x, y, d = _data()
    attack = FGSM(eps=EPS, random_start=True, generator=torch.Generator().manual_seed(3))
    assert attack.alpha == pytest.approx(1.25 * EPS)
    delta = attack(_model("fgsm"), x, y) - x
    assert delta.abs().amax() <= EPS + 1e-6, "RS-FGSM left the ε-ball: projection missing"
    on_surface = (delta * d - EPS).abs() <= 1e-6
    # P(u·d > −0.25ε) = 0.625 for uniform u; 512 pixels
    assert 0.5 < on_surface.float().mean() < 0.75
    assert ((delta * d) >= -EPS - 1e-6).all()


@pytest.mark.parametrize("random_start", [False, True])
def test_l2_pgd_ends_on_the_sphere_along_the_gradient(random_start):
    """L2: steps of 0.5 × 20 against ε = 0.25 — the rescaling onto the ball must act."""
    eps = 0.25
    x, y, d = _data()
    attack = PGD(eps=eps, alpha=0.5, steps=20, norm="l2", random_start=random_start,
                 generator=torch.Generator().manual_seed(2))
    delta = (attack(SignModel(_w()).eval(), x, y) - x).flatten(1)
    norms = delta.norm(dim=1)
    assert (norms <= eps + 1e-6).all(), "L2 PGD left the ball: projection missing"
    torch.testing.assert_close(norms, torch.full((B,), eps), atol=1e-5, rtol=0)
    g_hat = d.flatten(1) / d.flatten(1).norm(dim=1, keepdim=True)  # the normalised ascent direction
    if random_start:  # the start is forgotten up to O(ε/(α·steps))
        assert (torch.nn.functional.cosine_similarity(delta, g_hat) > 0.99).all()
    else:
        torch.testing.assert_close(delta, eps * g_hat, atol=1e-6, rtol=0)


def test_l2_pgd_stays_in_the_box_at_the_edges():
    eps = 1.0
    x, y, d = _data(1, edges=True)
    x_adv = PGD(eps=eps, alpha=0.5, steps=20, norm="l2", random_start=False)(
        SignModel(_w()).eval(), x, y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert ((x_adv - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()
    assert ((x_adv == 0) & (x > 0)).any() and ((x_adv == 1) & (x < 1)).any()


def test_wrm_is_clamped_to_the_box():
    """WRM has no ball, but a small γ pushes far outside [0, 1]: the clamp must act."""
    x, y, _ = _data(1, edges=True)
    x_adv = WRM(gamma=0.01, steps=5)(SignModel(_w()).eval(), x, y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert ((x_adv == 0) & (x > 0)).any() and ((x_adv == 1) & (x < 1)).any()


def test_cw_stays_in_the_box():
    x, y, _ = _data(1, edges=True)
    x_adv = CW(steps=10, lr=0.5, binary_search_steps=1, c=100.0)(SignModel(_w()).eval(), x, y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    with torch.no_grad():  # and it did move somewhere (the check is not vacuous)
        assert (x_adv != x).any()


def test_autoattack_stays_in_the_ball_and_box():
    require("pyautoattack", AUTOATTACK_HOW)
    from robustdial.attacks import AutoAttack

    x, y, _ = _data(1, edges=True)
    x_adv = AutoAttack(eps=0.1, attacks=("apgd-ce",))(SignModel(_w()).eval(), x, y)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().amax() <= 0.1 + 1e-6
