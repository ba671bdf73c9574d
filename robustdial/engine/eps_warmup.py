"""ε warm-up for a training attack: a :func:`fit` callback.

Adversarial training at a large ε from the first step can stall at chance
(MNIST at ε = 0.3 is the classic case). The usual remedy is to grow the
training attack's ε (and step size with it) linearly over the first steps.
This callback does that in place on the method's attack object, so it works
with every method that keeps its attacker in ``method.attack`` (PGD-AT, OAT,
FLOAT, RDI …).
"""
from __future__ import annotations

from typing import Any

__all__ = ["EpsWarmup"]


class EpsWarmup:
    """Grow ``attack.eps`` and ``attack.alpha`` linearly to their values over ``steps``.

    Args:
        attack: the training attack (its ``eps`` and ``alpha`` are changed in place
            while training; their values at construction are the targets).
        steps: warm-up length in optimizer steps (≥ 1). Step ``s`` (0-based)
            runs at ``min(1, (s + 1) / steps)`` of the final values.

    Use::

        warm = EpsWarmup(method.attack, steps=400)
        fit(model, method, data, cfg, callbacks=[warm])

    The attack is left at its target values until training starts, so
    ``run.json`` (written from ``method.config()`` before the first step)
    records the target ε, not the warm-up's first one. ``fit`` calls
    :meth:`on_train_start` with the first step to run, so a resumed run picks
    the warm-up up where it stopped, and :meth:`on_train_end` puts the targets
    back (a run shorter than the warm-up leaves no shrunk attack behind).
    """

    def __init__(self, attack: Any, steps: int) -> None:
        if int(steps) < 1:
            raise ValueError(f"EpsWarmup steps must be ≥ 1, got {steps}")
        if not hasattr(attack, "eps"):
            raise TypeError(f"{type(attack).__name__} has no 'eps' to warm up")
        self.attack, self.steps = attack, int(steps)
        self.eps = float(attack.eps)
        self.alpha = float(attack.alpha) if getattr(attack, "alpha", None) is not None else None

    def factor(self, step: int) -> float:
        """Fraction of the final ε used by 0-based optimizer step ``step``."""
        return min(1.0, (int(step) + 1) / self.steps)

    def at_step(self, step: int) -> None:
        """Set the attack for 0-based optimizer step ``step``."""
        f = self.factor(step)
        self.attack.eps = self.eps * f
        if self.alpha is not None:
            self.attack.alpha = self.alpha * f

    def restore(self) -> None:
        """Put the target ε (and step size) back on the attack."""
        self.attack.eps = self.eps
        if self.alpha is not None:
            self.attack.alpha = self.alpha

    def on_train_start(self, info: Any) -> None:
        """``fit`` hook: ``info.step`` steps are done (0, or the resumed step); prepare the next one."""
        self.at_step(info.step)

    def on_step_end(self, info: Any) -> None:
        """``fit`` hook: ``info.step`` steps are done; prepare the next one."""
        self.at_step(info.step)

    def on_train_end(self, info: Any) -> None:
        """``fit`` hook: training is over; the attack gets its target values back."""
        self.restore()
