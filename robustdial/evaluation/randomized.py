"""Attacks and predictions for randomized models (expectation over noise).

A model with noise on at test time — EnResNet's Gaussian noise after each
residual add (Wang, Shi, Osher, NeurIPS 2019; used in Li, Wang, Xin, LOD
2021) or FLOAT's noisy weights — gives a different output on every forward.
A white-box attack on one noisy forward under-estimates the attacker;
Expectation over Transformation (Athalye, Carlini, Wagner, ICML 2018, §4)
ascends ``E_noise[L(f(x_adv))]`` instead, estimated by averaging the loss of
``n`` forwards (so the input gradient is averaged too).

* :class:`EOT` wraps any attack: gradient attacks with a pluggable ``loss``
  (PGD, FGSM, MI-FGSM) get a loss that averages the per-sample loss over
  ``samples`` forwards; attacks that read the logits themselves (C&W) attack
  :class:`AveragedLogits`, the model whose logits are the n-sample mean.
* :func:`predict_averaged` evaluates with n-sample averaged logits.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks.base import Attack, LossFn, ce_loss

__all__ = ["EOT", "AveragedLogits", "eot_loss", "predict_averaged"]


def _check_samples(samples: int) -> int:
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer (noisy forwards to average), "
                         f"got {samples!r}")
    return int(samples)


def eot_loss(samples: int, base: LossFn | None = None) -> LossFn:
    """A per-sample loss averaging ``base`` over ``samples`` forwards (each draws new noise).

    Args:
        samples: forwards to average (n ≥ 1).
        base: ``loss(model, x_adv, y) -> (B,)``; default cross-entropy.
    """
    n = _check_samples(samples)
    fn = base if base is not None else ce_loss

    def loss(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
        total = fn(model, x_adv, y)
        for _ in range(n - 1):
            total = total + fn(model, x_adv, y)
        return total / n

    loss.__name__ = f"eot{n}_{getattr(fn, '__name__', type(fn).__name__)}"
    return loss


class AveragedLogits(nn.Module):
    """``forward(x)`` = mean of ``samples`` forwards of ``model`` (differentiable).

    Wraps without copying; ``train()``/``eval()`` reach the wrapped model.
    """

    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        self.model = model
        self.samples = _check_samples(samples)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        for _ in range(self.samples - 1):
            out = out + self.model(x)
        return out / self.samples


def _takes_loss(attack: Attack) -> bool:
    try:
        return "loss" in inspect.signature(type(attack).__init__).parameters
    except (TypeError, ValueError):
        return False


class EOT:
    """Expectation over noise for any attack: ``EOT(PGD(...), samples=10)(model, x, y)``.

    Args:
        attack: the attack to run (not modified; a shallow copy gets the
            averaged loss).
        samples: noisy forwards per gradient (n). ``samples=1`` is the plain
            attack.

    Gradient attacks that accept ``loss=`` ascend the n-forward mean of their
    own loss (default CE) — the EOT gradient estimate. Others (C&W-L2, which
    reads logits itself) attack :class:`AveragedLogits`.
    """

    def __init__(self, attack: Attack, *, samples: int = 10) -> None:
        if not callable(attack):
            raise TypeError(f"attack must be callable as attack(model, x, y), got {attack!r}")
        self.attack = attack
        self.samples = _check_samples(samples)
        self.uses_loss = isinstance(attack, Attack) and _takes_loss(attack)
        if self.uses_loss:
            self._inner: Any = copy.copy(attack)
            self._inner.loss = eot_loss(self.samples, attack.loss)
        else:
            self._inner = attack

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples against the expectation over the model's noise."""
        if self.uses_loss or self.samples == 1:
            return self._inner(model, x, y)
        return self._inner(AveragedLogits(model, self.samples), x, y)

    def __repr__(self) -> str:
        return f"EOT({self.attack!r}, samples={self.samples})"


@torch.no_grad()
def predict_averaged(model: nn.Module, x: Tensor, n: int = 10) -> Tensor:
    """Mean logits of ``n`` forwards (noise re-drawn each time); no gradient.

    Shape:
        x: (B, C, H, W) in [0, 1] -> (B, num_classes).
    """
    return AveragedLogits(model, n)(x)
