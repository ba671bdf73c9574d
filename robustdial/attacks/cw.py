"""Carlini & Wagner L2 attack (C&W-L2).

Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017. Section V-A: change of variables ``x_adv = ½(tanh(w) + 1)``
(always in [0, 1]), objective ``‖x_adv − x‖₂² + c·f(x_adv)`` (Eq. in §V-A)
with ``f = max(Z_y − max_{i≠y} Z_i, −κ)`` (untargeted; targeted:
``max(max_{i≠t} Z_i − Z_t, −κ)``), Adam on ``w`` and a binary search over the
constant ``c``, run per sample and vectorised over the batch. The result is
the successful adversarial with the smallest L2 distance found for each
sample, or the input itself where no success was found.

The Binary-Relax paper (Yin et al.) evaluates with Adam lr 0.0006 and 50
iterations: ``CW(lr=0.0006, steps=50)``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attack, _check_eps, _check_steps

__all__ = ["CW"]

_UPPER_INIT = 1e10  # "no success yet" marker of the binary search (as Carlini's code)


class CW(Attack):
    """C&W-L2 with per-sample binary search over ``c``.

    Args:
        c: initial trade-off constant between distance and margin loss.
        kappa: confidence margin κ ≥ 0 in logit units.
        steps: Adam iterations per binary-search step.
        lr: Adam learning rate on the tanh variable ``w``.
        binary_search_steps: rounds of the search over ``c`` (1 = fixed ``c``).
        targeted: ``y`` holds target labels.

    The attack uses the model's logits directly; the pluggable ``loss`` of
    the gradient attacks does not apply.
    """

    _repr_fields = ("c", "kappa", "steps", "lr", "binary_search_steps")

    def __init__(self, *, c: float = 1.0, kappa: float = 0.0, steps: int = 100,
                 lr: float = 0.01, binary_search_steps: int = 5, targeted: bool = False) -> None:
        super().__init__(targeted=targeted)
        self.c = _check_eps("c", c, allow_zero=False)
        self.kappa = _check_eps("kappa", kappa)
        self.steps = _check_steps("steps", steps)
        self.lr = _check_eps("lr", lr, allow_zero=False)
        self.binary_search_steps = _check_steps("binary_search_steps", binary_search_steps)

    def _margin(self, logits: Tensor, onehot: Tensor) -> Tensor:
        """``f`` of C&W: ≤ 0 once the (targeted) misclassification holds with margin κ."""
        real = (logits * onehot).sum(1)
        other = logits.masked_fill(onehot.bool(), float("-inf")).amax(1)
        diff = other - real if self.targeted else real - other
        return diff.clamp_min(-self.kappa)

    def _success(self, logits: Tensor, y: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
        if self.targeted:  # the target must win by κ
            return (logits - onehot * self.kappa).argmax(1) == y
        return (logits + onehot * self.kappa).argmax(1) != y  # y must lose by κ

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        B = x.shape[0]
        dims = tuple(range(1, x.dim()))
        view = (-1,) + (1,) * (x.dim() - 1)
        # w such that ½(tanh(w) + 1) = x, shrunk slightly so atanh stays finite
        w0 = torch.atanh((x * 2 - 1).clamp_(-1 + 1e-6, 1 - 1e-6))
        c = torch.full((B,), self.c, device=x.device, dtype=x.dtype)
        lower = torch.zeros_like(c)
        upper = torch.full_like(c, _UPPER_INIT)
        best_l2 = torch.full_like(c, float("inf"))
        best_adv = x.clone()
        onehot = None

        for _ in range(self.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(B, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                x_adv = (torch.tanh(w) + 1) * 0.5
                logits = model(x_adv)
                if onehot is None:
                    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
                l2 = (x_adv - x).pow(2).sum(dims)
                loss = (l2 + c * self._margin(logits, onehot)).sum()
                (w.grad,) = torch.autograd.grad(loss, w)
                # keep the smallest successful perturbation seen (vectorised, no sync)
                with torch.no_grad():
                    ok = self._success(logits, y) & (l2 < best_l2)
                    best_l2 = torch.where(ok, l2, best_l2)
                    best_adv = torch.where(ok.view(view), x_adv, best_adv)
                    found |= ok
                opt.step()
            # binary search on c (Carlini & Wagner's schedule), per sample
            upper = torch.where(found, torch.minimum(upper, c), upper)
            lower = torch.where(found, lower, torch.maximum(lower, c))
            no_upper = upper >= _UPPER_INIT
            c = torch.where(no_upper, c * 10, (lower + upper) / 2)
        return best_adv
