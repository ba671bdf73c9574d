"""Small helpers shared across packages: BN mode context, seeding, devices."""
from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["seed_everything", "train_mode", "model_device", "rng_state", "set_rng_state"]


@contextlib.contextmanager
def train_mode(model: nn.Module, mode: bool) -> Iterator[nn.Module]:
    """Put every submodule in train (``True``) or eval mode; restore each on exit.

    Restores module by module, so a model that was deliberately mixed (e.g. a
    frozen BN in eval mode inside a training model) comes back unchanged, even
    when the body raises.
    """
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode)
    try:
        yield model
    finally:
        for m, was in saved:
            m.training = was


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU if it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def rng_state() -> dict:
    """Every RNG state needed to resume bit-for-bit (Python, NumPy, torch, CUDA).

    Only tensors and plain Python values, so it round-trips through
    ``torch.save`` / ``torch.load(..., weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
