"""EpsWarmup grows the training attack's ε linearly inside fit()."""
from __future__ import annotations

import pytest
import torch

from robustdial.attacks import PGD
from robustdial.engine import EpsWarmup, FitConfig, fit
from robustdial.methods import PGDAT

from engine_helpers import digits, tiny_net


def test_factor_and_final_values():
    atk = PGD(eps=0.3, alpha=0.1, steps=3)
    w = EpsWarmup(atk, steps=4)
    assert atk.eps == pytest.approx(0.075) and atk.alpha == pytest.approx(0.025)
    assert [w.factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    w.at_step(10)
    assert atk.eps == pytest.approx(0.3) and atk.alpha == pytest.approx(0.1)


def test_bad_steps():
    with pytest.raises(ValueError, match="≥ 1"):
        EpsWarmup(PGD(eps=0.3, alpha=0.1, steps=3), steps=0)


def test_eps_seen_by_each_training_step():
    """The attack run at optimizer step s (0-based) uses ε·min(1, (s+1)/steps)."""
    torch.manual_seed(0)
    seen: list[float] = []

    class Spy(PGD):
        def perturb(self, model, x, y):
            seen.append(self.eps)
            return super().perturb(model, x, y)

    model = tiny_net()
    atk = Spy(eps=0.2, alpha=0.1, steps=1)
    data, _ = digits(n_train=40)
    cfg = FitConfig(epochs=1, batch_size=8, lr=0.01, device="cpu", progress=False, augment="none")
    fit(model, PGDAT(attack=atk), (data, None), cfg, callbacks=[EpsWarmup(atk, steps=4)])
    assert seen == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
