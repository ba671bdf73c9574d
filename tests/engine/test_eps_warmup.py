"""EpsWarmup grows the training attack's ε linearly inside fit()."""
from __future__ import annotations

import json

import pytest
import torch

from robustdial.attacks import PGD
from robustdial.engine import EpsWarmup, FitConfig, fit
from robustdial.methods import PGDAT

from engine_helpers import digits, tiny_net


def test_factor_and_final_values():
    atk = PGD(eps=0.3, alpha=0.1, steps=3)
    w = EpsWarmup(atk, steps=4)
    assert (atk.eps, atk.alpha) == (0.3, 0.1)  # untouched until training starts
    w.at_step(0)
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


def test_run_json_records_the_target_eps_not_the_warmup_one(tmp_path):
    """A warm-up longer than the run: run.json and the attack after fit hold the target ε."""
    torch.manual_seed(0)
    atk = PGD(eps=0.3, alpha=0.1, steps=1)
    data, _ = digits(n_train=32)
    cfg = FitConfig(epochs=1, batch_size=16, lr=0.01, device="cpu", progress=False, augment="none",
                    out_dir=str(tmp_path))
    fit(tiny_net(), PGDAT(attack=atk), (data, None), cfg, callbacks=[EpsWarmup(atk, steps=100)])
    recorded = json.loads((tmp_path / "last" / "run.json").read_text())["method"]["attack"]
    assert recorded["eps"] == pytest.approx(0.3) and recorded["alpha"] == pytest.approx(0.1)
    assert (atk.eps, atk.alpha) == (0.3, 0.1)


def test_resume_continues_the_warmup_where_it_stopped(tmp_path):
    """After a crash at step 4 (state saved at step 3), the resumed steps use ε·(s+1)/steps."""
    seen: list[float] = []

    class Spy(PGD):
        def perturb(self, model, x, y):
            seen.append(self.eps)
            return super().perturb(model, x, y)

    class Crash:
        def on_step_end(self, info):
            if info.step == 4:
                raise RuntimeError("crash")

    data, _ = digits(n_train=24)
    cfg = dict(epochs=2, batch_size=8, lr=0.01, device="cpu", progress=False, augment="none",
               out_dir=str(tmp_path))
    atk = Spy(eps=0.8, alpha=0.1, steps=1)
    with pytest.raises(RuntimeError, match="crash"):
        fit(tiny_net(), PGDAT(attack=atk), (data, None), FitConfig(**cfg),
            callbacks=[EpsWarmup(atk, steps=8), Crash()])
    seen.clear()
    atk = Spy(eps=0.8, alpha=0.1, steps=1)
    fit(tiny_net(), PGDAT(attack=atk), (data, None), FitConfig(**cfg, resume=True),
        callbacks=[EpsWarmup(atk, steps=8)])
    assert seen == pytest.approx([0.4, 0.5, 0.6])  # steps 3, 4, 5 of 8 (0-based)
