"""The dev extra installs every test oracle, and none of them pulls another torch."""
from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
DEV = PYPROJECT["project"]["optional-dependencies"]["dev"]


def _names(reqs: list[str]) -> dict[str, Requirement]:
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


@pytest.mark.parametrize("oracle", ["torchattacks", "pyautoattack"])
def test_dev_extra_holds_the_test_oracles(oracle):
    assert oracle in _names(DEV), f"{oracle} must be in the dev extra so `pip install -e .[dev]` runs its tests"


@pytest.mark.parametrize("oracle", ["torchattacks", "pyautoattack"])
def test_oracles_in_dev_declare_no_torch_or_torchvision(oracle):
    """A dev install must keep the user's torch: the pinned release declares no torch/torchvision requirement."""
    pinned = _names(DEV)[oracle]
    pins = [sp.version for sp in pinned.specifier if sp.operator == "=="]
    assert pins, f"{pinned}: pin the release whose metadata was checked"
    try:
        dist = metadata.distribution(oracle)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{oracle} is not installed: pip install -e \".[dev]\"")
    assert dist.version == pins[0], f"installed {oracle} {dist.version}, dev extra pins {pinned}"
    required = {Requirement(r).name.lower() for r in (dist.requires or [])}
    assert not required & {"torch", "torchvision", "requests"}, f"{oracle} {dist.version} requires {required}"
