"""Adversarial attacks: ``attack = PGD(eps=8/255, steps=10); x_adv = attack(model, x, y)``.

Every attack keeps ``x_adv`` in [0, 1] and inside its threat model, takes
gradients w.r.t. the input only (parameter ``.grad`` untouched) and leaves
``model.training`` alone — pick the BN mode with
:func:`robustdial.utils.train_mode`. Gradient attacks take a pluggable
per-sample ``loss(model, x_adv, y) -> (B,)``.
"""
from __future__ import annotations

from .autoattack import AutoAttack
from .base import Attack, LossFn, ce_loss
from .cw import CW
from .fgsm import FGSM
from .mifgsm import MIFGSM
from .multi_exit import (MaxAverage, RandomFusion, attack_forms, average_loss, random_fusion_loss,
                         single_exit_loss, worst_case)
from .parse import ATTACK_NAMES, parse_attack
from .pgd import PGD, oat_step_size
from .wrm import WRM

__all__ = [
    "ATTACK_NAMES",
    "Attack",
    "AutoAttack",
    "CW",
    "FGSM",
    "LossFn",
    "MIFGSM",
    "MaxAverage",
    "RandomFusion",
    "PGD",
    "WRM",
    "attack_forms",
    "average_loss",
    "ce_loss",
    "oat_step_size",
    "parse_attack",
    "random_fusion_loss",
    "single_exit_loss",
    "worst_case",
]
