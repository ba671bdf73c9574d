"""Projected gradient descent (PGD), L∞ and L2.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018 (Eq. 2: projected ascent
``x^{t+1} = Π_{x+S}(x^t + α·sign(∇_x L(θ, x, y)))``).

L∞: uniform random start in ±ε, signed-gradient steps, projection onto the
ε-ball ∩ [0, 1] as one fused clamp. L2: random start in the ε-ball,
L2-normalised gradient steps, rescaling onto the ball, clamp to [0, 1].
OAT (Wang et al. 2020) uses the step size :func:`oat_step_size`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import (
    Attack,
    LossFn,
    _check_eps,
    _check_step,
    _check_steps,
    l2_norm,
    linf_bounds,
    project_l2,
    random_l2,
    random_linf,
)

__all__ = ["PGD", "oat_step_size"]

_NORMS = ("linf", "l2")


def oat_step_size(eps: float, steps: int) -> float:
    """OAT's PGD step size ``min(1.25·ε, ε + 4/255) / steps`` (REFERENCE.md).

    ≈ 1.43/255 for ε = 8/255 and 7 steps, although the paper's text says 2/255.
    """
    return min(1.25 * eps, eps + 4 / 255) / steps


class PGD(Attack):
    """PGD attack (Madry et al. 2018), L∞ or L2.

    Args:
        eps: radius of the threat model on the [0, 1] scale (L∞: 8/255, at
            most 1; L2: e.g. 0.5).
        alpha: step size > 0 on the same scale (L∞: per-pixel sign step; L2:
            step length of the normalised gradient).
        steps: number of gradient steps (≥ 1).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a random point in the ball (uniform in ±ε
            for L∞, random direction and radius for L2).
        loss: per-sample loss ``loss(model, x_adv, y) -> (B,)`` to ascend;
            default cross-entropy.
        targeted: descend the loss towards target labels ``y``.
        generator: ``torch.Generator`` on the input's device for the random start.

    Example::

        attack = PGD(eps=8/255, alpha=2/255, steps=10)
        with train_mode(model, False):
            x_adv = attack(model, x, y)
    """

    _repr_fields = ("eps", "alpha", "steps", "norm", "random_start")

    def __init__(self, *, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 norm: str = "linf", random_start: bool = True, loss: LossFn | None = None,
                 targeted: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__(loss=loss, targeted=targeted, generator=generator)
        norm = norm.lower() if isinstance(norm, str) else norm
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        # an L∞ radius lives in [0, 1]; an L2 radius may exceed 1 (e.g. 2.0 on MNIST)
        self.eps = _check_eps("eps", eps, unit=norm == "linf")
        self.alpha = _check_step("alpha", alpha, eps=self.eps)
        self.steps = _check_steps("steps", steps)
        self.norm = norm
        self.random_start = bool(random_start)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.norm == "linf":
            return self._linf(model, x, y)
        return self._l2(model, x, y)

    def _linf(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        lo, hi = linf_bounds(x, self.eps)  # ε-ball ∩ [0, 1], one clamp per step
        x_adv = random_linf(x, self.eps, self.generator) if self.random_start else x.clone()
        for _ in range(self.steps):
            grad = self.input_grad(model, x_adv, y)
            # x ← Π(x + α·sign(g)): in place on the detached buffer, no clones.
            x_adv = x_adv.detach().add_(grad.sign_(), alpha=self.alpha).clamp_(lo, hi)
        return x_adv

    def _l2(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_adv = random_l2(x, self.eps, self.generator) if self.random_start else x.clone()
        for _ in range(self.steps):
            grad = self.input_grad(model, x_adv, y)
            grad.div_(l2_norm(grad).clamp_min_(1e-12))
            delta = x_adv.detach().add_(grad, alpha=self.alpha).sub_(x)
            # rescale into the ball, then clamp to [0, 1] (which only shrinks δ)
            x_adv = project_l2(delta, self.eps).add_(x).clamp_(0.0, 1.0)
        return x_adv
