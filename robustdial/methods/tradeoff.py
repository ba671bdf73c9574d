"""The trade-off loss ``α·CE(x) + β·CE(x_adv)`` of the Binary-Relax / EnResNet paper.

Yin (Jack) Xin et al., "Towards an Efficient and Robust Deep Neural Network:
Binary-Relax, EnResNet and a Trade-off Loss" (papers/binary-relax-enresnet-tradeoff.txt),
Eq. 8: ``L = α·L_nat + β·L_rob``. α = 0, β = 1 is PGD adversarial training;
the paper's tables use α = 1, β = 8 with PGD-10, ε = 0.031, step 0.007.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustdial.attacks import PGD, Attack

from .base import Method, _check_weight, accuracy, attack_config, build_attack, ce_mean

__all__ = ["Tradeoff"]


def default_attack() -> PGD:
    """PGD-10, ε = 0.031, α = 0.007 on the [0, 1] scale (paper, Sec. 5)."""
    return PGD(eps=0.031, alpha=0.007, steps=10)


class Tradeoff(Method):
    """``L = α·CE(f(x), y) + β·CE(f(x_adv), y)`` (paper Eq. 8).

    Args:
        alpha: weight α ≥ 0 of the natural loss (paper: 1).
        beta: weight β ≥ 0 of the adversarial loss (paper: 8).
        attack: training attack (instance, dict or spec string); default PGD-10,
            ε = 0.031, α = 0.007.
        attack_bn_mode: ``"eval"`` or ``"train"`` BN during the attack.

    Metrics: ``loss``, ``loss_clean``/``acc_clean`` when α > 0,
    ``loss_adv``/``acc_adv`` when β > 0.
    """

    name = "tradeoff"

    def __init__(self, alpha: float = 1.0, beta: float = 8.0,
                 attack: Attack | dict | str | None = None, *, attack_bn_mode: str = "eval") -> None:
        self.alpha = _check_weight("alpha", alpha)
        self.beta = _check_weight("beta", beta)
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta are both 0: the loss would be constant; "
                             "use alpha=1, beta=8 (paper) or alpha=0, beta=1 (PGD-AT)")
        self.attack = build_attack(attack, default_attack())
        self._set_bn_mode(attack_bn_mode)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        metrics: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        if self.alpha > 0:
            logits = model(x)  # (B, K)
            loss_clean = ce_mean(logits, y)
            terms.append(self.alpha * loss_clean)
            metrics.update(loss_clean=loss_clean.detach(), acc_clean=accuracy(logits, y))
        if self.beta > 0:
            x_adv = self.adversarial(model, x, y, self.attack)
            logits_adv = model(x_adv)
            loss_adv = ce_mean(logits_adv, y)
            terms.append(self.beta * loss_adv)
            metrics.update(loss_adv=loss_adv.detach(), acc_adv=accuracy(logits_adv, y))
        total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        metrics["loss"] = total.detach()
        return total, metrics

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "beta": self.beta,
                "attack": attack_config(self.attack), "attack_bn_mode": self.attack_bn_mode}


METHOD = Tradeoff
