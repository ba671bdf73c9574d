"""Fast learnable once-for-all adversarial training (FLOAT).

Kundu, Sundaresan, Beerel et al., "FLOAT: Fast Learnable Once-for-All
Adversarial Training for Tunable Trade-off between Accuracy and Robustness",
WACV 2023, Algorithm 1: each batch is split into two halves; the clean half is
classified at λ = 0 (clean BN_C, noiseless weights θ), the other half is
attacked with PGD-k and classified at λ = 1 (adversarial BN_A, noisy weights
θ̂ = θ + α·η, Eq. 4, with η resampled on every forward). The attack itself
runs at λ = 1 with BN_A and sampled noise. Loss ``0.5·L_C + 0.5·L_A``.

Noise during the attack (``attack_noise``): ``"sample"`` (a fresh η on every
forward, PNI's practice, so every PGD iteration sees another network) or
``"step"`` (one η per training step, held through the PGD iterations and the
loss forward: the attack is white-box against exactly the noisy network that
is trained on, as a fixed-noise evaluation attack is).

The model must be built with ``conditioning="float"`` (noisy conv/linear layers
and dual BN, :mod:`robustdial.layers.noisy`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustdial.attacks import PGD, Attack
from robustdial.condition import conditioned
from robustdial.layers.noisy import resample_noise

from .base import Method, _check_weight, accuracy, attack_config, build_attack, ce_mean

__all__ = ["ATTACK_NOISE", "FLOAT", "default_attack"]

ATTACK_NOISE = ("sample", "step")


def default_attack() -> PGD:
    """PGD-7, ε = 8/255, α = 2/255 (FLOAT follows OAT's PGD-7 setting), random start."""
    return PGD(eps=8 / 255, alpha=2 / 255, steps=7)


class FLOAT(Method):
    """FLOAT objective: half batch clean at λ = 0, half adversarial at λ = 1.

    Args:
        attack: training attack (Attack, dict or spec string); default PGD-7,
            ε = 8/255, α = 2/255 on the [0, 1] scale.
        attack_bn_mode: ``"eval"`` (BN_A running statistics during the attack)
            or ``"train"``.
        lam_th: BN switch threshold λ_th used while training (λ = 0 -> BN_C,
            λ = 1 -> BN_A for any λ_th < 1; Eq. 6 only matters at inference).
        attack_noise: ``"sample"`` (η resampled every forward) or ``"step"``
            (one η per training step for the attack and the adversarial loss).

    Attributes:
        val_condition: dials the engine validates at (``{"lam": 1.0}``).

    Metrics: ``loss``, ``loss_clean`` / ``acc_clean`` (clean half),
    ``loss_adv`` / ``acc_adv`` (adversarial half).
    """

    name = "float"

    def __init__(self, attack: Attack | dict | str | None = None, *,
                 attack_bn_mode: str = "eval", lam_th: float = 0.0,
                 attack_noise: str = "sample") -> None:
        if attack_noise not in ATTACK_NOISE:
            raise ValueError(f"attack_noise must be one of {ATTACK_NOISE}, got {attack_noise!r}")
        self.attack_noise = attack_noise
        self.attack = build_attack(attack, default_attack())
        self._set_bn_mode(attack_bn_mode)
        self.lam_th = _check_weight("lam_th", lam_th, 0.0, 0.999)
        self.val_condition = {"lam": 1.0, "lam_th": self.lam_th}

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        B = x.shape[0]
        if B < 2:
            raise ValueError("FLOAT splits each batch into a clean and an adversarial half; "
                             f"use a batch size ≥ 2 (got {B})")
        half = B // 2
        x_c, y_c, x_a, y_a = x[:half], y[:half], x[half:], y[half:]

        # IFM_A: attack and classify at λ = 1 (BN_A, θ + α·η; η fresh per forward or per step)
        noise = "sample"
        if self.attack_noise == "step":
            resample_noise(model)  # a new η for this step, held for the attack and the loss
            noise = "hold"
        with conditioned(model, lam=1.0, lam_th=self.lam_th, noise=noise):
            x_adv = self.adversarial(model, x_a, y_a, self.attack)
            logits_a = model(x_adv)
        # IFM_C: λ = 0 (BN_C, noiseless θ: the noisy layers run as plain conv/linear)
        with conditioned(model, lam=0.0, lam_th=self.lam_th):
            logits_c = model(x_c)

        loss_c = ce_mean(logits_c, y_c)
        loss_a = ce_mean(logits_a, y_a)
        total = 0.5 * loss_c + 0.5 * loss_a
        metrics = {"loss": total.detach(), "loss_clean": loss_c.detach(),
                   "acc_clean": accuracy(logits_c, y_c), "loss_adv": loss_a.detach(),
                   "acc_adv": accuracy(logits_a, y_a)}
        return total, metrics

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "attack": attack_config(self.attack),
                "attack_bn_mode": self.attack_bn_mode, "lam_th": self.lam_th,
                "attack_noise": self.attack_noise}


METHOD = FLOAT
