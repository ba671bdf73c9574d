"""PGD adversarial training (PGD-AT), with an optional clean-loss mix.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018, Eq. 2.3 (saddle point
``min_θ E[max_{δ∈S} L(θ, x + δ, y)]``, inner maximisation by PGD). The λ mix
``(1 − λ)·CE(x) + λ·CE(x_adv)`` is the fixed-λ objective that OAT (Wang et al.
2020, Eq. 2) turns into a dial; λ = 1 is Madry's PGD-AT, λ = 0 standard
training.

Cost: with λ = 1 one PGD-k step is a forward plus an input-only backward
(≈ 2 units) and the training step a forward plus full backward (≈ 3 units), so
an epoch costs ≈ (2k + 3)/3 plain epochs; no clean forward is computed.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks import PGD, Attack
from robustdial.utils import train_mode

from .base import Method, _check_weight, accuracy, attack_config, build_attack, ce_mean

__all__ = ["PGDAT"]


def default_attack() -> PGD:
    """PGD-7, ε = 8/255, α = 2/255, random start (L∞, CIFAR setting)."""
    return PGD(eps=8 / 255, alpha=2 / 255, steps=7)


class PGDAT(Method):
    """``L = (1 − λ)·CE(f(x), y) + λ·CE(f(x_adv), y)``, x_adv from PGD.

    Args:
        lam: weight λ ∈ [0, 1] of the adversarial term (1: Madry PGD-AT; 0:
            standard training, no attack is run).
        attack: training attack: an :class:`~robustdial.attacks.Attack`, a dict
            (``{"name": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40}``) or a
            spec string; default PGD-7, ε = 8/255, α = 2/255 (on the [0, 1]
            scale). For MNIST pass e.g. ε = 0.3.
        attack_bn_mode: ``"eval"`` (attack uses BN running statistics and
            leaves them unchanged) or ``"train"`` (batch statistics, as Madry's
            original code).
        clean_metrics: with λ = 1, also report clean accuracy from an extra
            no-grad forward in eval mode (off by default: it costs ≈ 1 unit).

    Metrics: ``loss``, ``loss_adv``/``acc_adv`` when λ > 0,
    ``loss_clean``/``acc_clean`` when λ < 1 (or ``clean_metrics``).
    """

    name = "pgd_at"

    def __init__(self, lam: float = 1.0, attack: Attack | dict | str | None = None, *,
                 attack_bn_mode: str = "eval", clean_metrics: bool = False) -> None:
        self.lam = _check_weight("lam", lam, 0.0, 1.0)
        self.attack = build_attack(attack, default_attack())
        self._set_bn_mode(attack_bn_mode)
        self.clean_metrics = bool(clean_metrics)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        lam = self.lam
        metrics: dict[str, Tensor] = {}
        total: Tensor | None = None
        if lam < 1.0:
            logits = model(x)  # (B, K), train mode
            loss_clean = ce_mean(logits, y)
            total = (1.0 - lam) * loss_clean
            metrics.update(loss_clean=loss_clean.detach(), acc_clean=accuracy(logits, y))
        if lam > 0.0:
            x_adv = self.adversarial(model, x, y, self.attack)
            logits_adv = model(x_adv)  # separate forward: BN sees an adversarial batch
            loss_adv = ce_mean(logits_adv, y)
            total = lam * loss_adv if total is None else total + lam * loss_adv
            metrics.update(loss_adv=loss_adv.detach(), acc_adv=accuracy(logits_adv, y))
            if lam == 1.0 and self.clean_metrics:
                with torch.no_grad(), train_mode(model, False):
                    metrics["acc_clean"] = accuracy(model(x), y)
        assert total is not None
        metrics["loss"] = total.detach()
        return total, metrics

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lam": self.lam, "attack": attack_config(self.attack),
                "attack_bn_mode": self.attack_bn_mode, "clean_metrics": self.clean_metrics}


METHOD = PGDAT
