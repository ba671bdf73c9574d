"""Fast gradient sign method (FGSM) and its random-start variant (RS-FGSM).

Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015 (Eq. 3: ``x_adv = x + ε·sign(∇_x J(θ, x, y))``).
RS-FGSM: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial
training", ICLR 2020 (Alg. 3: uniform start in ±ε, one step of size α =
1.25·ε, projection back onto the ε-ball).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attack, LossFn, _check_eps, _check_step, linf_bounds, random_linf

__all__ = ["FGSM"]


class FGSM(Attack):
    """One signed-gradient step of size ε (L∞), clamped to [0, 1].

    Args:
        eps: L∞ radius on the [0, 1] scale (8/255, not 8).
        random_start: RS-FGSM: start uniformly in ±ε and take a step of size
            ``alpha`` (default 1.25·ε), then project onto the ε-ball ∩ [0, 1].
        alpha: RS-FGSM step size on the [0, 1] scale (ignored without
            ``random_start``, where the step is ε).
        loss: per-sample loss ``loss(model, x_adv, y) -> (B,)``; default CE.
        targeted: descend the loss towards target labels ``y``.
        generator: ``torch.Generator`` on the input's device for the random start.
    """

    _repr_fields = ("eps",)

    def __init__(self, *, eps: float = 8 / 255, random_start: bool = False,
                 alpha: float | None = None, loss: LossFn | None = None,
                 targeted: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__(loss=loss, targeted=targeted, generator=generator)
        self.eps = _check_eps("eps", eps, unit=True)
        self.random_start = bool(random_start)
        self.alpha = _check_step("alpha", 1.25 * self.eps if alpha is None else alpha, eps=self.eps)
        if self.random_start:
            self._repr_fields = ("eps", "random_start", "alpha")

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if not self.random_start:
            x_adv = x.clone()
            grad = self.input_grad(model, x_adv, y)
            return x_adv.detach().add_(grad.sign_(), alpha=self.eps).clamp_(0.0, 1.0)
        lo, hi = linf_bounds(x, self.eps)
        x_adv = random_linf(x, self.eps, self.generator)
        grad = self.input_grad(model, x_adv, y)
        return x_adv.detach().add_(grad.sign_(), alpha=self.alpha).clamp_(lo, hi)
