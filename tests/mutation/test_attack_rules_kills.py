"""Attack rules that the mutation check (scripts/mutation_check.py) found unpinned.

Each test pins one documented rule with a closed-form expectation, so a one-line
slip in it fails here (the mutation ids it kills are in each docstring):

* MI-FGSM's default step α = ε / T (Dong et al. 2018, Alg. 1);
* WRM's Lagrangian ascent ``x ← x + η·(∇ℓ/(2γ) − (x − x₀))``: with a loss of
  constant gradient ``c`` the first step (η = 1) lands on the fixed point
  ``x₀ + c/(2γ)`` and every later step stays there;
* C&W returns, per sample, the successful iterate with the smallest L2 distance
  it evaluated (Carlini & Wagner 2017, "the best adversarial found").
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustdial.attacks import CW, MIFGSM, WRM


def _constant_gradient_loss(c: torch.Tensor):
    """Per-sample loss ``Σ c·x``: its input gradient is ``c`` everywhere."""

    def loss(model, x, y):
        return (x * c).flatten(1).sum(1)

    return loss


class _Dummy(nn.Module):
    """A module with a parameter (attacks read the dtype from it); the loss ignores it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.flatten(1)[:, :2] * self.w


@pytest.mark.parametrize("eps,steps", [(0.1, 4), (8 / 255, 10)])
def test_mifgsm_default_step_is_eps_over_steps(eps, steps):
    """Kills ``mifgsm-default-step``: α defaults to ε/T, so T steps just reach the ball's surface."""
    attack = MIFGSM(eps=eps, steps=steps)
    assert attack.alpha == pytest.approx(eps / steps)
    # behaviour: with a constant gradient sign, after k < T steps every pixel moved k·ε/T
    c = torch.where(torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
    x = torch.full((2, 1, 4, 4), 0.5)
    k = steps // 2
    partial = MIFGSM(eps=eps, steps=steps, loss=_constant_gradient_loss(c))
    partial.steps = k  # run only the first k of the T steps the default α was set for
    x_adv = partial(_Dummy(), x, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(x_adv - x, c * k * eps / steps, atol=1e-6, rtol=0)


@pytest.mark.parametrize("gamma,lr", [(2.0, None), (5.0, None), (2.0, 0.5)])
def test_wrm_ascent_stops_at_the_penalised_optimum(gamma, lr):
    """Kills ``wrm-no-penalty``: sup_x c·x − γ‖x − x₀‖² is at x₀ + c/(2γ), and WRM stays there."""
    g = torch.Generator().manual_seed(1)
    c = torch.randn(3, 1, 5, 5, generator=g) * 0.2
    x0 = 0.3 + 0.4 * torch.rand(3, 1, 5, 5, generator=g)  # x0 + c/(2γ) stays inside [0, 1]
    attack = WRM(gamma=gamma, steps=6, lr=lr, loss=_constant_gradient_loss(c))
    x_adv = attack(_Dummy(), x0, torch.zeros(3, dtype=torch.long))
    expected = x0 + c / (2 * gamma)
    if lr is None:  # the first step has η = 1: exactly at the optimum, and no step leaves it
        torch.testing.assert_close(x_adv, expected, atol=1e-6, rtol=0)
    else:  # constant η: geometric approach, 1 − (1 − η)^(steps+1) of the way
        frac = 1 - (1 - lr) ** 7
        torch.testing.assert_close(x_adv, x0 + frac * (c / (2 * gamma)), atol=1e-6, rtol=0)


class _Recorder(nn.Module):
    """Wraps a model and records every input it is called with and the logits it returned."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x):
        out = self.model(x)
        self.seen.append((x.detach().clone(), out.detach().clone()))
        return out


def test_cw_returns_the_closest_successful_iterate():
    """Kills ``cw-keeps-largest``: per sample, the smallest-L2 misclassified iterate seen is returned."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.Tanh(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)  # every sample starts correctly classified
    rec = _Recorder(net).eval()
    x_adv = CW(c=2.0, steps=25, lr=0.05, binary_search_steps=3)(rec, x, y)
    dims = (1, 2, 3)
    best_l2 = torch.full((24,), float("inf"))
    best = x.clone()
    for xa, logits in rec.seen:
        l2 = (xa - x).pow(2).sum(dims)
        ok = (logits.argmax(1) != y) & (l2 < best_l2)
        best_l2 = torch.where(ok, l2, best_l2)
        best = torch.where(ok.view(-1, 1, 1, 1), xa, best)
    found = torch.isfinite(best_l2)
    assert found.float().mean() > 0.5  # the attack succeeds on most samples
    torch.testing.assert_close(x_adv, best, atol=0, rtol=0)
