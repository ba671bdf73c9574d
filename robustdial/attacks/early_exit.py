"""Attacks on the early-exit decision of a multi-exit network.

RDI-Nets (Hu et al., ICLR 2020) attack multi-exit networks with *accuracy*
forms (:mod:`robustdial.attacks.multi_exit`) whose objective ignores which exit
a sample takes. Two attackers that target the adaptive policy itself:

* **Slowdown** (DeepSloth, Hong et al., ICLR 2021; ILFO, Haque et al., CVPR
  2020): an ε-bounded attack that pushes the output of every *early* exit
  towards the uniform distribution, so that no early exit is confident enough
  to fire and every input runs the whole network, erasing the compute saving.
  :func:`slowdown_loss` is DeepSloth's objective: minus the sum over the early
  exits of ``KL(u ‖ softmax(z_k)) = CE(u, softmax(z_k)) − log C``
  (``u`` uniform over the C classes), maximised by ascent. Unlike the entropy,
  its gradient does not vanish at confident (one-hot) outputs.
* **Exit-aware accuracy attack**: per sample, the cross-entropy of the exit the
  adaptive policy (entropy below the exit's threshold, first one wins) would
  take at the current ``x_adv`` — the function the deployed model computes.
  :func:`exit_aware_loss` re-decides the exit at every step.

Both are per-sample losses ``loss(model, x_adv, y) -> (B,)`` for any gradient
attack's ``loss=`` (``PGD(eps=8/255, steps=50, loss=slowdown_loss)``).
:class:`ExitSurrogate` exposes one attack form as an ordinary ``x -> logits``
module so that attack libraries that read logits themselves (AutoAttack's
APGD-CE / APGD-T) can attack that form.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.early_exit import resolve_thresholds, select_exits
from .base import LossFn

__all__ = ["ExitSurrogate", "exit_aware_loss", "slowdown_loss"]


def _exits(model: nn.Module, x: Tensor) -> list[Tensor]:
    fn = getattr(model, "forward_exits", None)
    if not callable(fn):
        raise TypeError(f"{type(model).__name__} is not a multi-exit model (no forward_exits); "
                        "build one with create_model(name, exits=True)")
    outs = list(fn(x))
    if len(outs) < 2:
        raise ValueError("an early-exit attack needs a model with at least one early exit")
    return outs


def slowdown_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """DeepSloth's slowdown objective: −Σ_{early exits k} KL(uniform ‖ softmax(z_k)), per sample.

    ``y`` is unused (the attack targets the exit decision, not the label).
    At its maximum (0) every early exit outputs the uniform distribution, whose
    entropy log C is above any sensible exit threshold.

    Shape:
        x: (B, C, H, W) -> (B,).
    """
    outs = _exits(model, x)[:-1]
    total = x.new_zeros(x.shape[0])
    for z in outs:
        logp = F.log_softmax(z.float(), dim=1)
        kl = -logp.mean(dim=1) - math.log(z.shape[1])  # CE(u, p) − log C = KL(u ‖ p) ≥ 0
        total = total - kl
    return total


def exit_aware_loss(thresholds: Sequence[float] | Tensor | None = None) -> LossFn:
    """Per-sample CE at the exit the adaptive policy takes for the current input.

    Args:
        thresholds: entropy thresholds (nats) of the early exits; default the
            model's stored ``exit_thresholds`` (or its ``thresholds`` dial).
    """

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        outs = _exits(model, x)
        if thresholds is not None:
            t = thresholds
        elif callable(getattr(model, "thresholds", None)):
            t = model.thresholds()
        else:
            t = resolve_thresholds(model)
        logits, _ = select_exits(outs, t)
        return F.cross_entropy(logits, y, reduction="none")

    loss.__name__ = "exit_aware_ce"
    return loss


class ExitSurrogate(nn.Module):
    """One attack form of a multi-exit model as a plain ``x -> logits`` module.

    Args:
        model: the multi-exit model (not copied; ``train()``/``eval()`` reach it).
        form: ``int k`` (single form on exit k, computing only the segments up
            to k; ``-1`` = main branch), ``"average"`` (logits = mean over the
            heads of their log-softmax, whose cross-entropy is the average
            form's mean CE up to a per-sample normaliser), or a weight sequence
            (one per exit: ``Σ_k w_k·log_softmax(z_k)``, the random-fusion form
            with fixed weights).

    The surrogate is what an attacker optimises; the result is judged on the
    deployed function (the adaptive model), not on the surrogate.
    """

    def __init__(self, model: nn.Module, form: int | str | Sequence[float]) -> None:
        super().__init__()
        n = getattr(model, "num_exits", None)
        if n is None:
            raise TypeError(f"{type(model).__name__} is not a multi-exit model (no num_exits)")
        self.model = model
        self.num_exits = int(n)
        self.weights: Tensor | None = None
        if isinstance(form, str):
            if form != "average":
                raise ValueError(f"form must be an exit index, 'average' or exit weights, got {form!r}")
            self.form: int | str = "average"
        elif isinstance(form, int):
            if not -self.num_exits <= form < self.num_exits:
                raise ValueError(f"exit {form} does not exist; valid 0..{self.num_exits - 1} or -1")
            self.form = form % self.num_exits
        else:
            w = torch.as_tensor(list(form), dtype=torch.float32)
            if w.numel() != self.num_exits or bool((w < 0).any()):
                raise ValueError(f"need {self.num_exits} non-negative exit weights, got {list(form)}")
            self.form = "fused"
            self.weights = w

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.form, int):
            fn = getattr(self.model, "forward_to", None)
            return fn(x, self.form) if callable(fn) else self.model.forward_exits(x)[self.form]
        logps = torch.stack([F.log_softmax(o, dim=1) for o in self.model.forward_exits(x)])
        if self.form == "average":
            return logps.mean(dim=0)
        w = self.weights.to(logps)
        return (w.view(-1, 1, 1) * logps).sum(dim=0)

    def extra_repr(self) -> str:
        return f"form={self.form!r}" + ("" if self.weights is None else f", weights={self.weights.tolist()}")
