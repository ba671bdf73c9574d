"""kill -9 mid-epoch, then resume: for every training method the weights equal an uninterrupted run.

A method may own randomness the engine cannot see (OAT's λ sampler has its
own ``torch.Generator``); ``fit`` saves ``method.state_dict()`` with the
training state. Each case trains a tiny model of the method's kind (FiLM for
OAT, noisy weights for FLOAT, slimmable widths, two exits for RDI) on 256
digits for 2 epochs of 8 steps, in a forked child that SIGKILLs itself at step
12 (mid epoch 2; the last saved state is the end of epoch 1), resumes in this
process, and compares every tensor of the state dict with ``torch.equal``.
"""
from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import torch
from torch import nn

from robustdial.data import CropFlip
from robustdial.engine import FitConfig, fit, load_train_state
from robustdial.methods import build_method, list_methods
from robustdial.models import build_layer_set
from robustdial.models.multi_exit import MultiExitNet

from engine_helpers import digits

ATTACK = {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}
WIDTHS = (0.5, 1.0)
STEPS_PER_EPOCH = 8  # 256 samples / batch 32
KILL_AT = STEPS_PER_EPOCH + 4

# method -> (options, conditioning, widths, multi-exit)
SETUPS: dict[str, tuple[dict[str, Any], str | None, tuple[float, ...] | None, bool]] = {
    "standard": ({}, None, None, False),
    "pgd_at": ({"lam": 0.5, "attack": ATTACK}, None, None, False),
    "trades": ({"beta": 1.0, "attack": ATTACK}, None, None, False),
    "tradeoff": ({"attack": ATTACK}, None, None, False),
    "oat": ({"attack": ATTACK}, "oat", None, False),
    "oats": ({"attack": ATTACK, "widths": WIDTHS}, "oat", WIDTHS, False),
    "float": ({"attack": ATTACK}, "float", None, False),
    "float_slim": ({"attack": ATTACK, "widths": WIDTHS}, "float", WIDTHS, False),
    "pgd_ats": ({"attack": ATTACK, "widths": WIDTHS}, None, WIDTHS, False),
    "slimmable": ({"inner": "oat", "attack": ATTACK, "widths": WIDTHS}, "oat", WIDTHS, False),
    "rdi": ({"defence": "max-average", "attack": ATTACK}, None, None, True),
}


def tiny_model(conditioning: str | None, widths: tuple[float, ...] | None, exits: bool) -> nn.Module:
    """Two conv stages (8 channels) on 1x8x8 digits, built through the layer factories."""
    torch.manual_seed(0)
    L = build_layer_set(conditioning, widths)

    def stage(cin: int, stride: int) -> nn.Sequential:
        return nn.Sequential(L.conv(cin, 8, 3, stride=stride, padding=1), L.norm(8), nn.ReLU())

    def head() -> nn.Sequential:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), L.head(8, 10))

    if exits:
        return MultiExitNet([stage(1, 1), stage(8, 2)], [head(), head()], input_size=(1, 8, 8))
    return nn.Sequential(stage(1, 1), stage(8, 2), head())


class _Kill:
    def on_step_end(self, info: Any) -> None:
        if info.step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def data():
    return digits(n_train=256, n_val=64)


@pytest.fixture(autouse=True)
def one_thread():
    """Same thread count in the parent and the forked child (CPU results can depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(name: str, data: Any, out, *, resume: bool = False, callbacks=()) -> nn.Module:
    options, conditioning, widths, exits = SETUPS[name]
    cfg = FitConfig(epochs=2, batch_size=32, lr=0.05, augment=CropFlip(pad=1, flip=False), log_every=1,
                    device="cpu", progress=False, out_dir=str(out), resume=resume)
    return fit(tiny_model(conditioning, widths, exits), build_method(name, **options), data, cfg,
               callbacks=list(callbacks)).model


def _killed_run(name: str, data: Any, out) -> int:
    """Train in a forked child that SIGKILLs itself at step ``KILL_AT``; its wait status."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            _train(name, data, out, callbacks=[_Kill()])
        finally:
            os._exit(3)  # only reached if the kill did not happen
    _, status = os.waitpid(pid, 0)
    return status


def test_every_method_is_covered():
    assert set(SETUPS) == set(list_methods())


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(name, data, tmp_path):
    ref = _train(name, data, tmp_path / "ref").state_dict()
    status = _killed_run(name, data, tmp_path / "run")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    state = load_train_state(tmp_path / "run")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 0, STEPS_PER_EPOCH)
    resumed = _train(name, data, tmp_path / "run", resume=True).state_dict()
    assert ref.keys() == resumed.keys()
    differ = [k for k in ref if not torch.equal(ref[k], resumed[k])]
    assert not differ, f"{name}: resumed run differs from the uninterrupted one in {differ}"
