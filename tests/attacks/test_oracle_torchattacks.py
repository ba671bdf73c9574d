"""Our PGD / FGSM / MI-FGSM equal torchattacks' step for step (no random start).

Batches of 16 (a power of two) make torchattacks' mean-reduced CE gradient an
exact rescaling of our summed per-sample gradient, so the signs agree exactly.
"""
from __future__ import annotations

import pytest
import torch

from robustdial.attacks import FGSM, MIFGSM, PGD

from _attack_testlib import tiny_conv

torchattacks = pytest.importorskip("torchattacks", reason="torchattacks is not installed")


def _setup(seed: int):
    model = tiny_conv(seed).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return model, x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps,alpha,steps", [(8 / 255, 2 / 255, 10), (0.1, 0.01, 7)])
def test_pgd_matches_torchattacks(seed, eps, alpha, steps):
    model, x, y = _setup(seed)
    ours = PGD(eps=eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert (ours - x).abs().amax() > 0  # the attack did move
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_fgsm_matches_torchattacks(seed):
    model, x, y = _setup(seed)
    ours = FGSM(eps=8 / 255)(model, x, y)
    theirs = torchattacks.FGSM(model, eps=8 / 255)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_mifgsm_matches_torchattacks(seed):
    model, x, y = _setup(seed)
    ours = MIFGSM(eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0)(model, x, y)
    theirs = torchattacks.MIFGSM(model, eps=8 / 255, alpha=2 / 255, steps=10, decay=1.0)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_pgd_l2_matches_torchattacks_without_random_start():
    model, x, y = _setup(3)
    ours = PGD(eps=0.5, alpha=0.1, steps=10, norm="l2", random_start=False)(model, x, y)
    theirs = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
