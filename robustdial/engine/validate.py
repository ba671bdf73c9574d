"""Validation during training: clean and (optionally) robust accuracy on the val split.

Runs in eval mode (BN running statistics), at the method's validation
condition (``method.val_condition``, e.g. OAT's ``{"lam": 1.0}``), under a
forked RNG seeded by the run seed, so validation neither perturbs the training
randomness nor varies between epochs. Under DDP every rank takes a disjoint
strided slice of the val set and the correct counts are summed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from robustdial.condition import conditioned
from robustdial.data import ImageData, batches
from robustdial.utils import train_mode

from .distributed import DistInfo, all_reduce_sum

__all__ = ["validate"]


def validate(model: nn.Module, method: Any, data: ImageData, *, device: torch.device,
             batch_size: int, info: DistInfo = DistInfo(), attack: Any = None, seed: int = 0,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             channels_last: bool = False) -> dict[str, float]:
    """Accuracy of ``model`` on ``data`` (fractions in [0, 1]).

    Args:
        model: the plain model (not the DDP wrapper).
        method: its ``val_condition`` dict (if any) sets the dials.
        data: validation split.
        device: where to run.
        batch_size: per-rank batch size.
        info: distributed position; counts are summed over ranks.
        attack: ``attack(model, x, y) -> x_adv`` for ``val_robust_acc``, or ``None``.
        seed: seeds the forked RNG (attack random starts).
        autocast: factory of the AMP context for forward passes.
        channels_last: convert batches to channels-last.

    Returns:
        ``{"val_acc": …, "val_robust_acc": … (if attack), "val_n": N}``.
    """
    shard = data.subset(torch.arange(info.rank, len(data), info.world_size)) if info.distributed else data
    dials = dict(getattr(method, "val_condition", None) or {})
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # correct clean, correct robust, n
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), train_mode(model, False), conditioned(model, **dials):
        torch.manual_seed(seed)
        for x, y in batches(shard, batch_size, device=device):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), autocast():
                counts[0] += (model(x).argmax(1) == y).sum()
            if attack is not None:
                x_adv = attack(model, x, y)
                with torch.no_grad(), autocast():
                    counts[1] += (model(x_adv).argmax(1) == y).sum()
            counts[2] += y.numel()
    clean, robust, n = all_reduce_sum(counts, info).tolist()  # the one host sync
    out = {"val_acc": clean / max(n, 1), "val_n": int(n)}
    if attack is not None:
        out["val_robust_acc"] = robust / max(n, 1)
    return out
