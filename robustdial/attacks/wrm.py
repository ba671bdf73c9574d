"""Wasserstein robust model (WRM) attack.

Sinha, Namkoong, Duchi, "Certifying Some Distributional Robustness with
Principled Adversarial Training", ICLR 2018 (Eq. 5: the Lagrangian relaxation
``φ_γ(θ; x₀) = sup_x ℓ(θ; x) − γ·‖x − x₀‖₂²``, solved by gradient ascent).

As in the authors' code, the ascent direction is ``∇φ / (2γ) =
∇ℓ / (2γ) − (x − x₀)`` (their ``eps = 1/(2γ)``: eps = 0.3 is the "perturbation
size 0.3" of RDI-Nets Table 8, i.e. γ = 1/0.6), the first step starts at
``x₀`` with step 1 and later steps use ``1/√(t+1)``; unlike the original,
every iterate is clamped to [0, 1] (ARCHITECTURE.md, contract 1). The
perturbation is unbounded: the penalty γ sets its size.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .base import Attack, LossFn, _check_eps, _check_steps

__all__ = ["WRM"]


class WRM(Attack):
    """Gradient ascent on ``ℓ(x) − γ‖x − x₀‖²`` (Sinha et al. 2018).

    Args:
        gamma: Lagrange penalty γ > 0 on the squared L2 distance (pixels in
            [0, 1]); the authors' ``eps`` equals ``1/(2γ)``. Default γ = 1/0.6
            (eps = 0.3).
        steps: ascent steps after the initial one (authors: 15).
        lr: constant step size for the normalised direction ``∇φ/(2γ)``;
            ``None`` uses the authors' schedule ``1/√(t+1)``, t = 1, 2, ….
        loss: per-sample loss ``loss(model, x_adv, y) -> (B,)``; default CE.
        targeted: descend the loss towards target labels ``y``.
    """

    _repr_fields = ("gamma", "steps", "lr")

    def __init__(self, *, gamma: float = 1 / 0.6, steps: int = 15, lr: float | None = None,
                 loss: LossFn | None = None, targeted: bool = False) -> None:
        super().__init__(loss=loss, targeted=targeted)
        self.gamma = _check_eps("gamma", gamma, allow_zero=False)
        self.steps = _check_steps("steps", steps)
        self.lr = None if lr is None else _check_eps("lr", lr, allow_zero=False)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        scale = 1.0 / (2.0 * self.gamma)
        x_adv = x.clone()
        for t in range(self.steps + 1):
            eta = (1.0 if t == 0 else 1.0 / math.sqrt(t + 1)) if self.lr is None else self.lr
            grad = self.input_grad(model, x_adv, y)
            x_adv = x_adv.detach()
            # ∇φ/(2γ) = ∇ℓ/(2γ) − (x − x₀)
            direction = grad.mul_(scale).sub_(x_adv).add_(x)
            x_adv = x_adv.add_(direction, alpha=eta).clamp_(0.0, 1.0)
        return x_adv
