"""Fixtures for the attack tests: a trained digits classifier."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _attack_testlib import load_digits_tensors


@pytest.fixture(scope="session")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained 200 Adam steps on 1,500 digits; returns (model in eval mode, x_test, y_test)."""
    x, y = load_digits_tensors()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    tr, te = perm[:1500], perm[1500:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        idx = tr[torch.randint(0, tr.numel(), (128,), generator=g)]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, x[te], y[te]
