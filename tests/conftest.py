"""Shared fixtures: the real data sets beside the repo, and small seeded helpers.

Where ``shared/`` is: ``$ROBUSTDIAL_SHARED`` if set, else ``../shared`` beside
the checkout. Tests that need it are skipped when it is missing — except under
``CI=true``, where a missing data or fixture folder is an error, so a CI run
can never pass by silently skipping them. A ``ROBUSTDIAL_SHARED`` that points
nowhere is always an error (it was set on purpose).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_SHARED_ENV = os.environ.get("ROBUSTDIAL_SHARED")
SHARED = Path(_SHARED_ENV or REPO.parent / "shared").resolve()
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

DATASETS = ("mnist", "fashion-mnist", "cifar10")
"""Data sets under ``shared/data`` that the tests read (official layouts)."""
FIXTURES = ("rdi-resnet38-cifar10",)
"""Folders under ``shared/fixtures`` (authors' released weights and reference outputs)."""

HOW_TO_ENABLE = ("set ROBUSTDIAL_SHARED=/path/to/shared (the folder holding data/ and "
                 "fixtures/) or place shared/ beside the checkout")


def missing_prerequisite(what: str, how: str) -> None:
    """Skip the calling test with ``what`` and ``how`` to enable it; under CI=true, fail instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {what}: {how}", pytrace=False)
    pytest.skip(f"{what}: {how}")


def _shared_folder(sub: str, required: tuple[str, ...]) -> Path:
    root = SHARED / sub
    if _SHARED_ENV and not SHARED.is_dir():
        pytest.fail(f"ROBUSTDIAL_SHARED={_SHARED_ENV} is not a directory", pytrace=False)
    if not root.is_dir():
        missing_prerequisite(f"{root} not found", HOW_TO_ENABLE)
    absent = [name for name in required if not (root / name).is_dir()]
    if absent and IN_CI:  # outside CI the tests that need one of them skip on their own
        missing_prerequisite(f"{root} lacks {', '.join(absent)}", HOW_TO_ENABLE)
    return root


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """``shared/data`` (MNIST, Fashion-MNIST, CIFAR-10 in official layouts)."""
    return _shared_folder("data", DATASETS)


@pytest.fixture(scope="session")
def shared_fixtures_root() -> Path:
    """``shared/fixtures`` (authors' released weights and reference outputs)."""
    return _shared_folder("fixtures", FIXTURES)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
