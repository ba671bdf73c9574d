"""TRADES: clean cross-entropy plus β times a KL robustness regulariser.

Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off
between Robustness and Accuracy", ICML 2019, Eq. 5:
``min_f E[ CE(f(X), Y) + max_{X'∈B(X,ε)} KL(f(X) ‖ f(X')) / λ ]`` with β = 1/λ;
in the Binary-Relax paper's notation (Eq. 7) ``L_nat + β·(1/N)Σ_n l(f(x_n), f(x̃_n))``.

What :meth:`TRADES.loss` computes, step by step:

1. **Attack target.** One clean forward ``model(x)`` without gradient, in the
   attack's BN mode (``attack_bn_mode="eval"`` by default: running statistics,
   left unchanged), gives the fixed distribution ``p = softmax(f(x))``.
2. **Inner maximisation.** PGD (or FGSM) on the per-sample loss
   :class:`TradesKL` = ``KL(p ‖ softmax(f(x')))``, starting from PGD's uniform
   random start in ±ε. The authors' code starts at ``x + 0.001·N(0, 1)`` (at
   ``x`` itself the KL gradient vanishes, so some random start is needed) and
   recomputes the clean target at every PGD iteration; in eval mode it is the
   same ``p`` each time, so one forward is equivalent.
3. **Outer loss,** in train mode: a second clean forward ``model(x)`` gives the
   logits used both for ``CE(f(x), y)`` and as the first argument of the KL,
   with gradient through both arguments, and one forward of ``x_adv``:
   ``L = CE(f(x), y) + β·(1/B)·Σ_i KL(f(x_i) ‖ f(x_adv,i))`` (the authors'
   ``KLDivLoss(reduction="sum") / batch_size``). The authors' code runs
   ``model(x)`` twice here (once for CE, once inside the KL); the outputs and
   gradients are the same, but the BN running statistics see one clean batch
   per step instead of two.

So a step costs one no-grad clean forward, the k attack iterations, and two
training forwards (clean and adversarial) with one backward.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdial.attacks import PGD, Attack
from robustdial.utils import train_mode

from .base import Method, _check_weight, accuracy, attack_config, build_attack, ce_mean

__all__ = ["TRADES", "TradesKL", "kl_per_sample"]


def kl_per_sample(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """``KL(softmax(logits_p) ‖ softmax(logits_q))`` per sample.

    Shape:
        (B, K), (B, K) -> (B,), every entry ≥ 0 (up to rounding).
    """
    log_p = F.log_softmax(logits_p, dim=1)
    log_q = F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class TradesKL:
    """Attack loss ``loss(model, x_adv, y) -> KL(p_clean ‖ softmax(model(x_adv)))`` per sample.

    Args:
        clean_logits: (B, K) logits of the clean batch; detached, the target
            distribution the attack moves away from.
    """

    __name__ = "trades_kl"

    def __init__(self, clean_logits: Tensor) -> None:
        self.clean_logits = clean_logits.detach()

    def __call__(self, model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
        return kl_per_sample(self.clean_logits, model(x_adv))


def default_attack() -> PGD:
    """PGD-10, ε = 0.031, α = 0.007 (TRADES' CIFAR-10 setting, [0, 1] scale)."""
    return PGD(eps=0.031, alpha=0.007, steps=10)


class TRADES(Method):
    """``L = CE(f(x), y) + β·mean_i KL(f(x_i) ‖ f(x_adv,i))`` (see the module notes).

    Args:
        beta: weight β ≥ 0 of the KL term (paper: 6 for CIFAR-10, 1 for MNIST).
        attack: PGD or FGSM settings (instance, dict or spec string); each batch
            runs a shallow copy of it whose loss is :class:`TradesKL` (the
            configured attack itself is not changed). Default PGD-10,
            ε = 0.031, α = 0.007.
        attack_bn_mode: ``"eval"`` (as the authors' code) or ``"train"``.

    Metrics: ``loss``, ``loss_clean``, ``loss_kl``, ``acc_clean``, ``acc_adv``.
    """

    name = "trades"

    def __init__(self, beta: float = 6.0, attack: Attack | dict | str | None = None, *,
                 attack_bn_mode: str = "eval") -> None:
        self.beta = _check_weight("beta", beta)
        self.attack = build_attack(attack, default_attack())
        if not hasattr(self.attack, "loss"):
            raise ValueError(f"TRADES needs an attack with a pluggable loss, got {self.attack!r}")
        self._set_bn_mode(attack_bn_mode)

    def _kl_attack(self, target: Tensor) -> Attack:
        # A shallow copy with the KL loss: the configured attack itself stays unchanged.
        attack = copy.copy(self.attack)
        attack.loss = TradesKL(target)
        return attack

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        with torch.no_grad(), train_mode(model, self.attack_bn_mode == "train"):
            target = model(x)  # attack's KL target, under the attack's BN mode
        x_adv = self.adversarial(model, x, y, self._kl_attack(target))
        logits = model(x)  # (B, K), train mode
        logits_adv = model(x_adv)
        loss_clean = ce_mean(logits, y)
        loss_kl = kl_per_sample(logits, logits_adv).mean()  # 1/B Σ KL, as the paper's batchmean
        total = loss_clean + self.beta * loss_kl
        return total, {"loss": total.detach(), "loss_clean": loss_clean.detach(),
                       "loss_kl": loss_kl.detach(), "acc_clean": accuracy(logits, y),
                       "acc_adv": accuracy(logits_adv, y)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "attack": attack_config(self.attack),
                "attack_bn_mode": self.attack_bn_mode}


METHOD = TRADES
