"""Shared fixtures: the real data sets beside the repo, and small seeded helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTDIAL_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """``../shared/data`` (MNIST, Fashion-MNIST, CIFAR-10 in official layouts)."""
    root = SHARED / "data"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}")
    return root


@pytest.fixture(scope="session")
def shared_fixtures_root() -> Path:
    """``../shared/fixtures`` (authors' released weights and reference outputs)."""
    root = SHARED / "fixtures"
    if not root.is_dir():
        pytest.skip(f"fixtures not found at {root}")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
