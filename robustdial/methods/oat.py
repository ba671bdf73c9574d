"""Once-for-all adversarial training (OAT).

Wang, Chen, Gui, Hu, Liu, Wang, "Once-for-All Adversarial Training: In-Situ
Tradeoff between Robustness and Accuracy for Free", NeurIPS 2020.

Objective (Eq. 3, per sample, λ drawn from a training set S):
``L = mean_i[(1 − λ_i)·CE(f(x_i; λ_i), y_i) + λ_i·CE(f(x_adv,i; λ_i), y_i)]``
with λ fed to every FiLM layer (Sec. 3.1) and λ = 0 samples normalised by the
clean BN, the rest by the adversarial BN (dual BN, Sec. 3.2). Sampling follows
the authors' code: ⌈B/|S|⌉ samples of each batch get λ = 0, the rest are drawn
uniformly from the non-zero values of S. Only λ ≠ 0 samples are attacked (their
adversarial term would be multiplied by 0), with the attack run under their own
per-sample λ (so through BN_a and the matching FiLM modulation).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdial.attacks import PGD, Attack, oat_step_size
from robustdial.condition import conditioned

from .base import Method, accuracy, attack_config, build_attack

__all__ = ["OAT", "default_attack"]


def default_attack() -> PGD:
    """PGD-7, ε = 8/255, OAT step ``min(1.25·ε, ε + 4/255)/7`` ≈ 1.43/255, random start."""
    eps = 8 / 255
    return PGD(eps=eps, alpha=oat_step_size(eps, 7), steps=7)


class OAT(Method):
    """OAT objective with per-sample λ.

    Args:
        lam_values: the training set S of λ values in [0, 1] (OAT: {0, .1, .2, .3, .4, 1}).
            Must match the model's FiLM encoding.
        attack: training attack (an Attack, dict or spec string); default PGD-7,
            ε = 8/255, OAT step size (all on the [0, 1] scale).
        attack_bn_mode: ``"eval"`` (BN running statistics during the attack, as
            the original) or ``"train"``.
        seed: seed of the λ sampler (a ``torch.Generator``); default
            ``torch.initial_seed()`` when the first batch arrives, i.e. the
            global seed the engine set. The sampler's state is part of
            :meth:`state_dict`, so a resumed run draws the λ an uninterrupted
            run would have drawn.

    Attributes:
        val_condition: the dials the engine validates at (``{"lam": 1.0}``).

    Metrics: ``loss``, ``loss_clean`` (mean over the batch of CE(x)),
    ``loss_adv`` / ``acc_adv`` (over the attacked samples), ``acc_clean``.
    """

    name = "oat"

    def __init__(self, lam_values: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0),
                 attack: Attack | dict | str | None = None, *, attack_bn_mode: str = "eval",
                 seed: int | None = None) -> None:
        vals = sorted({float(v) for v in lam_values})
        if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
            raise ValueError(f"lam_values must be numbers in [0, 1], got {lam_values!r}")
        self.lam_values = tuple(vals)
        self.attack = build_attack(attack, default_attack())
        self._set_bn_mode(attack_bn_mode)
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.val_condition = {"lam": max(vals)}

    # -- λ sampling ---------------------------------------------------------------
    def _lam_generator(self) -> torch.Generator:
        if self._generator is None:
            seed = torch.initial_seed() if self.seed is None else self.seed
            self._generator = torch.Generator().manual_seed(int(seed) % (2**63))
        return self._generator

    def sample_lam(self, batch_size: int) -> Tensor:
        """Per-sample λ on the CPU: ⌈B/|S|⌉ zeros first, the rest uniform over S∖{0}.

        Returns:
            (B,) float32 tensor, zeros first (the order inside a batch is irrelevant).
        """
        generator = self._lam_generator()
        nonzero = torch.tensor([v for v in self.lam_values if v != 0.0])
        n_zero = math.ceil(batch_size / len(self.lam_values)) if 0.0 in self.lam_values else 0
        if len(nonzero) == 0:
            n_zero = batch_size
        n_zero = min(n_zero, batch_size)
        idx = torch.randint(len(nonzero) if len(nonzero) else 1, (batch_size - n_zero,),
                            generator=generator)
        rest = nonzero[idx] if len(nonzero) else torch.zeros(0)
        return torch.cat([torch.zeros(n_zero), rest]).float()

    # -- objective ----------------------------------------------------------------
    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        B = x.shape[0]
        lam_cpu = self.sample_lam(B)
        n_zero = int((lam_cpu == 0).sum())
        lam = lam_cpu.to(x.device, non_blocking=True)  # (B,)

        metrics: dict[str, Tensor] = {}
        # clean forward of the whole batch, each sample at its own λ (λ=0 -> BN_c)
        with conditioned(model, lam=lam):
            logits = model(x)  # (B, K)
        ce_clean = F.cross_entropy(logits, y, reduction="none")  # (B,)
        total = ((1.0 - lam) * ce_clean).sum()
        metrics.update(loss_clean=ce_clean.detach().mean(), acc_clean=accuracy(logits, y))

        if n_zero < B:  # attack only λ ≠ 0 samples, under their own λ (BN_a)
            x_a, y_a, lam_a = x[n_zero:], y[n_zero:], lam[n_zero:]
            with conditioned(model, lam=lam_a):
                x_adv = self.adversarial(model, x_a, y_a, self.attack)
                logits_adv = model(x_adv)  # (B − n_zero, K), train mode
            ce_adv = F.cross_entropy(logits_adv, y_a, reduction="none")
            total = total + (lam_a * ce_adv).sum()
            metrics.update(loss_adv=ce_adv.detach().mean(), acc_adv=accuracy(logits_adv, y_a))
        total = total / B  # mean over the batch; λ = 0 samples add only their clean CE
        metrics["loss"] = total.detach()
        return total, metrics

    def state_dict(self) -> dict[str, Any]:
        """The λ sampler's generator state (once it exists) and the attacks' generators."""
        state = super().state_dict()
        if self._generator is not None:
            state["lam_generator"] = self._generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("lam_generator") is not None:
            self._lam_generator().set_state(state["lam_generator"])

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lam_values": list(self.lam_values),
                "attack": attack_config(self.attack), "attack_bn_mode": self.attack_bn_mode,
                "seed": self.seed}


METHOD = OAT
