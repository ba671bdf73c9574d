"""Tiny seeded learners on the bundled 8×8 digits, for the fast learning tests.

Every model here is built through the library's ``LayerSet`` factories (so the
OAT / FLOAT / slimmable variants are the library's own layers), trained with
``robustdial.fit`` and scored with ``robustdial.evaluate`` under PGD-20 on the
359 test digits. One training run takes one to six seconds on one core.

Training and evaluation run on one thread (:func:`one_thread`), as the demo
does: these nets are too small to gain from more, a second OpenMP thread only
spins when the cores are shared, and one thread makes the seeded numbers (and
so the margins the tests were tuned with) the same on every machine.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

import robustdial as rd
from robustdial.attacks import PGD
from robustdial.models import build_layer_set
from robustdial.models.multi_exit import MultiExitNet


def train_attack(eps: float, steps: int = 3) -> PGD:
    """The training attack of the learning tests: PGD-k, step ε/2, random start (L∞, [0, 1] scale)."""
    return PGD(eps=eps, alpha=eps / 2, steps=steps)


def eval_attack(eps: float) -> PGD:
    """PGD-20, step ε/8: stronger than any training attack here."""
    return PGD(eps=eps, alpha=eps / 8, steps=20)


class DigitsNet(nn.Module):
    """conv-norm-relu ×2 and a linear head on (B, 1, 8, 8) digits, from a ``LayerSet``.

    ``conditioning`` / ``widths`` / ``opts`` go to ``build_layer_set``: ``"oat"``
    gives dual BN + FiLM, ``"float"`` noisy conv/linear + dual BN, ``widths``
    slimmable convs with one (dual) BN per width.
    """

    def __init__(self, conditioning: str | None = None, widths: Sequence[float] | None = None,
                 channels: int = 16, **opts: Any) -> None:
        super().__init__()
        L = build_layer_set(conditioning, widths=widths, **opts)
        c = channels
        self.features = nn.Sequential(
            L.conv(1, c, 3, padding=1), L.norm(c), nn.ReLU(),
            L.conv(c, 2 * c, 3, stride=2, padding=1), L.norm(2 * c), nn.ReLU(),
            nn.Flatten())  # (B, 2c·4·4), channel-major: a slimmed map keeps the leading columns
        self.head = L.head(2 * c * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_net(conditioning: str | None = None, widths: Sequence[float] | None = None,
               seed: int = 0, **opts: Any) -> DigitsNet:
    torch.manual_seed(seed)
    return DigitsNet(conditioning, widths, **opts)


def multi_exit_digits_net(seed: int = 0) -> MultiExitNet:
    """A 3-exit net on 8×8 digits (the library's ``MultiExitNet``; all exit weights 1)."""
    torch.manual_seed(seed)

    def head(c: int, hw: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(1), nn.Linear(c * hw * hw, 10))

    segments = [
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                      nn.ReLU()),
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()),
    ]
    heads = [nn.Sequential(nn.AvgPool2d(2), head(16, 4)), head(32, 4), head(32, 4)]
    return MultiExitNet(segments, heads, input_size=(1, 8, 8), fixed_input_size=True)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; the caller's setting comes back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def digits(split: str):
    return rd.load_dataset("digits", split=split)


def train(model: nn.Module, method: Any, iterations: int, *, seed: int = 0,
          transforms: Sequence[Any] = (), lr: float = 0.05) -> nn.Module:
    """``rd.fit`` for ``iterations`` steps of batch 64 (cosine lr, no augmentation, no validation)."""
    cfg = rd.FitConfig(iterations=iterations, batch_size=64, lr=lr, momentum=0.9,
                       weight_decay=5e-4, schedule="cosine", seed=seed, device="cpu",
                       augment="none", select="last", log_every=10**6, progress=False)
    with one_thread():
        rd.fit(model, method, (digits("train"), None), cfg, transforms=transforms)
    return model.eval()


def accuracies(model: nn.Module, eps: float,
               conditions: Sequence[dict[str, Any]] | None = None) -> list[tuple[float, float]]:
    """(clean, PGD-20 robust) accuracy in [0, 1] on the 359 test digits, one pair per condition."""
    with one_thread():
        res = rd.evaluate(model, digits("test"), {"pgd-20": eval_attack(eps)}, conditions,
                          batch_size=512, seed=0)
    return [(r.clean_acc / 100, r.robust_acc / 100) for r in res.rows]


@functools.cache
def _reference_model(name: str, eps: float | None) -> nn.Module:
    from robustdial.methods import PGDAT, Standard

    method = Standard() if name == "standard" else PGDAT(lam=1.0, attack=train_attack(eps))
    return train(digits_net(seed=0), method, 300, seed=0)


@functools.cache
def reference(name: str, eps: float) -> tuple[float, float]:
    """(clean, robust) accuracy at ``eps`` of a shared baseline, trained once per session.

    ``"standard"`` (one model for every ε) or ``"pgd_at"`` (λ = 1, trained with
    ``train_attack(eps)``): 300 steps of :class:`DigitsNet`, seed 0.
    """
    if name not in ("standard", "pgd_at"):
        raise ValueError(f"no reference {name!r}; use 'standard' or 'pgd_at'")
    return accuracies(_reference_model(name, None if name == "standard" else eps), eps)[0]
