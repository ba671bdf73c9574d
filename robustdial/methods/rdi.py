"""RDI-Nets: adversarial training of every exit of a multi-exit network.

Hu, Chen, Wang, Wang, "Triple Wins: Boosting Accuracy, Robustness and
Efficiency Together by Enabling Input-Adaptive Inference", ICLR 2020.

Eq. 1 (with Eq. 5's choice of x_adv)::

    L_RDI = Σ_{i=1}^{K+1} w_i [ CE(f_i(x), y) + CE(f_i(x_adv), y) ]

x_adv comes from one attack form (Sec. 3.2, :mod:`robustdial.attacks.multi_exit`):
``"main"`` (single attack on the final head, the paper's "Main Branch"
defence), ``"average"`` (Eq. 3) or ``"max-average"`` (Eq. 4). Weights default
to the model's ``exit_weights`` (ResNet-38: {0.5, 0.5, 0.7, 0.7, 0.9, 0.9, 2};
SmallCNN: all 1, App. B).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks import PGD, Attack
from robustdial.attacks.multi_exit import (
    MaxAverage,
    average_loss,
    single_exit_loss,
    with_loss,
)

from .base import Method, accuracy, attack_config, build_attack, ce_mean

__all__ = ["DEFENCES", "RDI"]

DEFENCES = ("main", "average", "max-average")


class RDI(Method):
    """Multi-exit adversarial training, RDI-Nets Eq. 1.

    Args:
        defence: attack form that makes x_adv: ``"main"``, ``"average"`` or
            ``"max-average"``.
        weights: per-exit loss weights w_i (one per exit); ``None`` uses
            ``model.exit_weights`` (all ones if the model has none).
        attack: the attacker algorithm (an ``Attack``, a dict such as
            ``{"name": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40}`` or a
            spec string); its loss is replaced by the form's. Default PGD-10,
            ε = 8/255, step 2/255 (the paper's CIFAR-10 defence).
        attack_bn_mode: ``"eval"`` or ``"train"`` BN while attacking.

    Metrics: ``loss_clean`` and ``loss_adv`` (weighted sums), ``acc_clean``
    and ``acc_adv`` (final head), ``acc_clean_exit{k}`` (every head).
    """

    name = "rdi"

    def __init__(self, defence: str = "max-average", *, weights: Sequence[float] | None = None,
                 attack: Attack | Mapping[str, Any] | str | None = None,
                 attack_bn_mode: str = "eval") -> None:
        defence = defence.lower().replace("_", "-")
        if defence in ("main-branch", "single"):
            defence = "main"
        if defence not in DEFENCES:
            raise ValueError(f"defence must be one of {DEFENCES}, got {defence!r}")
        self.defence = defence
        self.weights = None if weights is None else [float(w) for w in weights]
        if self.weights is not None and any(w < 0 for w in self.weights):
            raise ValueError(f"exit weights must be ≥ 0, got {self.weights}")
        self.attack = build_attack(attack, PGD(eps=8 / 255, alpha=2 / 255, steps=10))
        self._set_bn_mode(attack_bn_mode)

    def form_attack(self, model: nn.Module) -> Attack:
        """The attack making x_adv for this defence (the configured attacker, form's loss)."""
        if self.defence == "main":
            return with_loss(self.attack, single_exit_loss(-1))
        if self.defence == "average":
            return with_loss(self.attack, average_loss)
        return MaxAverage(lambda loss: with_loss(self.attack, loss))

    def exit_weights(self, model: nn.Module, n: int, like: Tensor) -> Tensor:
        """The w_i as a tensor (n,) on ``like``'s device."""
        w = self.weights
        if w is None:
            w = getattr(model, "exit_weights", None)
        if w is None:
            return like.new_ones(n)
        w = torch.as_tensor(w, dtype=like.dtype, device=like.device).reshape(-1)
        if w.numel() != n:
            raise ValueError(f"{w.numel()} exit weights for a {n}-exit model; pass weights= "
                             f"with {n} values")
        return w

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        x_adv = self.adversarial(model, x, y, self.form_attack(model))
        clean = model.forward_exits(x)  # list of (B, classes), earliest first
        adv = model.forward_exits(x_adv)
        w = self.exit_weights(model, len(clean), clean[0])
        ce_clean = torch.stack([ce_mean(o, y) for o in clean])  # (N,)
        ce_adv = torch.stack([ce_mean(o, y) for o in adv])
        loss_clean, loss_adv = (w * ce_clean).sum(), (w * ce_adv).sum()
        metrics = {
            "loss_clean": loss_clean.detach(),
            "loss_adv": loss_adv.detach(),
            "acc_clean": accuracy(clean[-1], y),
            "acc_adv": accuracy(adv[-1], y),
        }
        for k, o in enumerate(clean):
            metrics[f"acc_clean_exit{k}"] = accuracy(o, y)
        return loss_clean + loss_adv, metrics

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "defence": self.defence, "weights": self.weights,
                "attack": attack_config(self.attack), "attack_bn_mode": self.attack_bn_mode}


METHOD = RDI
