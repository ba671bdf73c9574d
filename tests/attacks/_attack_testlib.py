"""Small models and the digits data for the attack tests (imported by conftest and tests)."""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch
from torch import nn

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(module: str, how: str) -> ModuleType:
    """Import an optional test dependency; skip with ``how`` to install it, or fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{module} is not installed: {how}"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)


AUTOATTACK_HOW = 'pip install -e ".[dev]" or "robustdial[eval]" (pyautoattack==0.2.0)'


def tiny_conv(seed: int, channels: int = 1, classes: int = 10) -> nn.Module:
    """Conv + BatchNorm2d + MLP head on 8×8 inputs, random weights from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, classes),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for b in m.modules():  # non-trivial running statistics
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                b.running_mean.copy_(torch.randn(b.running_mean.shape, generator=g) * 0.1)
                b.running_var.copy_(torch.rand(b.running_var.shape, generator=g) + 0.5)
    return m


def tiny_mlp(seed: int, channels: int = 1, classes: int = 10) -> nn.Module:
    """Flatten → Linear → BatchNorm1d → ReLU → Linear on 8×8 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 64, 32), nn.BatchNorm1d(32),
                         nn.ReLU(), nn.Linear(32, classes))


MODELS = {"conv": tiny_conv, "mlp": tiny_mlp}


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits as (N, 1, 8, 8) floats in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    return x, torch.tensor(d.target, dtype=torch.int64)
