"""Momentum iterative FGSM (MI-FGSM).

Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with
Momentum", CVPR 2018 (Alg. 1, Eq. 6–7):
``g_{t+1} = μ·g_t + ∇J / ‖∇J‖₁`` and ``x_{t+1} = Π(x_t + α·sign(g_{t+1}))``.
The L1 normalisation uses the per-sample mean absolute gradient (the L1
norm divided by the constant input size, as torchattacks), which leaves the
signs unchanged for μ = 0 and scales every sample alike otherwise.
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import Attack, LossFn, _check_eps, _check_step, _check_steps, linf_bounds

__all__ = ["MIFGSM"]


class MIFGSM(Attack):
    """MI-FGSM, L∞ (no random start).

    Args:
        eps: L∞ radius on the [0, 1] scale (OAT's evaluation: 8/255).
        alpha: step size on the [0, 1] scale; default ``None`` = ε / steps (Dong
            et al., Alg. 1).
        steps: number of iterations (OAT's evaluation: 10).
        decay: momentum factor μ (1.0 in the paper).
        loss: per-sample loss ``loss(model, x_adv, y) -> (B,)``; default CE.
        targeted: descend the loss towards target labels ``y``.
    """

    _repr_fields = ("eps", "alpha", "steps", "decay")

    def __init__(self, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, loss: LossFn | None = None, targeted: bool = False) -> None:
        super().__init__(loss=loss, targeted=targeted)
        self.eps = _check_eps("eps", eps, unit=True)
        self.steps = _check_steps("steps", steps)
        # Dong et al. (Alg. 1): α = ε / T, so T steps can just reach the ε-ball's surface
        self.alpha = _check_step("alpha", self.eps / self.steps if alpha is None else alpha,
                                 eps=self.eps)
        self.decay = _check_eps("decay", decay)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        lo, hi = linf_bounds(x, self.eps)
        dims = tuple(range(1, x.dim()))
        x_adv = x.clone()
        momentum = None
        for _ in range(self.steps):
            grad = self.input_grad(model, x_adv, y)
            grad.div_(grad.abs().mean(dim=dims, keepdim=True).clamp_min_(1e-12))
            momentum = grad if momentum is None else grad.add_(momentum, alpha=self.decay)
            x_adv = x_adv.detach().add_(momentum.sign(), alpha=self.alpha).clamp_(lo, hi)
        return x_adv
