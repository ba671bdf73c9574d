"""Every baseline recipe in configs/ parses and builds its model, method and FitConfig."""
from __future__ import annotations

from pathlib import Path

import pytest

from robustdial.cli._common import load_recipe
from robustdial.cli.train import build_components, normalize_recipe
from robustdial.methods import PGDAT, TRADES, Standard, Tradeoff

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASELINES = {
    "rdi_mnist_smallcnn_pgdat.yaml": PGDAT,
    "cifar10_resnet34_pgdat.yaml": PGDAT,
    "cifar10_resnet34_standard.yaml": Standard,
    "binary_relax_cifar10_preact20_tradeoff.yaml": Tradeoff,
    "binary_relax_cifar10_preact20_trades.yaml": TRADES,
    "binary_relax_cifar10_preact20_pgdat.yaml": PGDAT,
}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_recipe_builds(name):
    recipe = load_recipe(CONFIGS / name)
    comps = build_components(recipe)  # no data is read
    assert isinstance(comps.method, BASELINES[name])
    assert comps.model.rd_spec["name"] == recipe["model"]["name"]
    assert comps.fit_config.batch_size == recipe["train"]["batch_size"]
    assert recipe["eval"]["attacks"], "every recipe says how it is evaluated"
    eps = comps.method.config().get("attack", {}).get("eps")
    assert eps is None or 0 < eps <= 0.3  # ε on the [0, 1] scale, never 8 or 0.3*255


def test_paper_settings_are_the_papers():
    br = build_components(load_recipe(CONFIGS / "binary_relax_cifar10_preact20_tradeoff.yaml"))
    assert (br.method.alpha, br.method.beta) == (1.0, 8.0)
    a = br.method.attack
    assert (a.eps, a.alpha, a.steps) == (0.031, 0.007, 10)
    f = br.fit_config
    assert f.nesterov and f.schedule == "multistep" and f.milestones == [80, 120, 160]
    assert f.epochs == 200 and f.lr == 0.1 and f.weight_decay == 5e-4
    mnist = build_components(load_recipe(CONFIGS / "rdi_mnist_smallcnn_pgdat.yaml"))
    assert mnist.method.attack.eps == 0.3 and mnist.method.lam == 1.0


def test_normalize_accepts_fit_and_kwargs_spellings():
    recipe = {"paper": "x", "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
              "data": {"name": "mnist"}, "method": {"name": "trades", "kwargs": {"beta": 1.0}},
              "fit": {"epochs": 2}}
    out = normalize_recipe(recipe)
    assert out["train"] == {"epochs": 2} and "fit" not in out and "paper" not in out
    assert out["model"]["options"] == {"in_channels": 1}
    assert out["method"] == {"name": "trades", "beta": 1.0}
    comps = build_components(recipe)
    assert isinstance(comps.method, TRADES) and comps.method.beta == 1.0


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_builds(path):
    """All recipes, whatever paper they reproduce, build model, method, transforms and FitConfig."""
    comps = build_components(load_recipe(path))
    assert comps.fit_config.epochs or comps.fit_config.iterations
    assert sum(p.numel() for p in comps.model.parameters()) > 0
    for t in comps.transforms:
        assert hasattr(t, "state_dict") and hasattr(t, "load_state_dict")


def test_recipe_initial_weights_come_from_its_seed():
    import torch

    recipe = load_recipe(CONFIGS / "rdi_mnist_smallcnn_pgdat.yaml")
    a = build_components(recipe).model.state_dict()
    torch.manual_seed(12345)  # whatever ran before must not matter
    b = build_components(recipe).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
