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
    "PGD",
    "WRM",
    "ce_loss",
    "oat_step_size",
    "parse_attack",
]
