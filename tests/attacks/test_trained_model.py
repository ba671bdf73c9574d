"""Attacks on a real (small) classifier: the 8×8 digits MLP trained in conftest."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdial.attacks import CW, FGSM, PGD, WRM, AutoAttack, parse_attack

from _attack_testlib import AUTOATTACK_HOW, require


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item() * 100


def test_digits_model_is_trained(digits_model):
    model, x, y = digits_model
    assert _acc(model, x, y) > 90


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model):
    model, x, y = digits_model
    eps = 0.1
    fgsm = _acc(model, FGSM(eps=eps)(model, x, y), y)
    pgd = _acc(model, PGD(eps=eps, alpha=2.5 * eps / 20, steps=20,
                          generator=torch.Generator().manual_seed(0))(model, x, y), y)
    clean = _acc(model, x, y)
    assert pgd <= fgsm < clean


@pytest.mark.parametrize("norm,eps", [("linf", 0.5), ("l2", 4.0)])
def test_accuracy_falls_to_zero_as_eps_grows(digits_model, norm, eps):
    model, x, y = digits_model
    accs = []
    for e in (eps / 8, eps / 4, eps):
        attack = PGD(eps=e, alpha=2.5 * e / 20, steps=20, norm=norm,
                     generator=torch.Generator().manual_seed(0))
        accs.append(_acc(model, attack(model, x, y), y))
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[-1] <= 5.0


def test_cw_finds_close_adversarials(digits_model):
    model, x, y = digits_model
    x, y = x[:64], y[:64]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x_adv = CW(c=1.0, steps=100, lr=0.05, binary_search_steps=4)(model, x, y)
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    l2 = (x_adv - x).flatten(1).norm(dim=1)
    # the nearest test image of another class is the trivial "adversarial"
    others = x.flatten(1)
    dist = torch.cdist(others, others)
    dist[y[:, None] == y[None, :]] = float("inf")
    nearest_other = dist.min(1).values
    success = fooled & correct
    assert success.float().mean() > 0.9 * correct.float().mean()
    assert (l2[success] < nearest_other[success]).float().mean() > 0.9
    # unsuccessful samples are returned unchanged
    assert torch.equal(x_adv[~fooled], x[~fooled])


def test_cw_binary_search_shrinks_the_perturbation(digits_model):
    model, x, y = digits_model
    x, y = x[:32], y[:32]
    one = CW(c=10.0, steps=60, lr=0.05, binary_search_steps=1)(model, x, y)
    many = CW(c=10.0, steps=60, lr=0.05, binary_search_steps=5)(model, x, y)
    d1 = (one - x).flatten(1).norm(dim=1).sum()
    d5 = (many - x).flatten(1).norm(dim=1).sum()
    assert d5 < d1


def test_wrm_increases_the_loss(digits_model):
    model, x, y = digits_model
    x_adv = WRM(gamma=1.0, steps=15)(model, x, y)
    with torch.no_grad():
        before = F.cross_entropy(model(x), y, reduction="none")
        after = F.cross_entropy(model(x_adv), y, reduction="none")
    assert after.mean() > before.mean() + 0.5
    assert (after >= before - 1e-4).float().mean() > 0.95
    # a larger penalty keeps the perturbation smaller
    x_far = WRM(gamma=0.1, steps=15)(model, x, y)
    assert (x_far - x).norm() > (x_adv - x).norm()


def test_autoattack_is_stronger_than_fgsm(digits_model):
    require("pyautoattack", AUTOATTACK_HOW)
    model, x, y = digits_model
    x, y = x[:64], y[:64]
    state = torch.get_rng_state()
    x_adv = AutoAttack(eps=0.1, attacks=("apgd-ce",))(model, x, y)
    assert torch.equal(torch.get_rng_state(), state)  # caller's RNG untouched
    assert (x_adv - x).abs().amax() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _acc(model, x_adv, y) <= _acc(model, FGSM(eps=0.1)(model, x, y), y)


@pytest.mark.slow
def test_autoattack_fab_keeps_parameter_grads(digits_model):
    """FAB calls ``.backward()``; the adapter must leave parameter grads as they were."""
    require("pyautoattack", AUTOATTACK_HOW)
    model, x, y = digits_model
    params = list(model.parameters())
    params[0].grad = torch.ones_like(params[0])
    try:
        x_adv = AutoAttack(eps=0.1, attacks=("fab-t",))(model, x[:16], y[:16])
        assert torch.equal(params[0].grad, torch.ones_like(params[0]))
        assert all(p.grad is None for p in params[1:])
    finally:
        params[0].grad = None
    assert (x_adv - x[:16]).abs().amax() <= 0.1 + 1e-6


@pytest.mark.parametrize("spec,cls,fields", [
    ("pgd-20", PGD, {"steps": 20, "alpha": 2.5 * 0.1 / 20, "norm": "linf", "eps": 0.1}),
    ("pgd-7:alpha=oat", PGD, {"steps": 7, "alpha": min(0.125, 0.1 + 4 / 255) / 7}),
    ("pgd-20:alpha=0.00784,random_start=false", PGD, {"alpha": 0.00784, "random_start": False}),
    ("pgdl2-20:eps=0.5", PGD, {"eps": 0.5, "norm": "l2", "alpha": 2.5 * 0.5 / 20}),
    ("fgsm", FGSM, {"eps": 0.1}),
    ("cw-50:lr=0.0006", CW, {"steps": 50, "lr": 0.0006}),
    ("wrm-15", WRM, {"steps": 15}),
])
def test_parse_attack(spec, cls, fields):
    a = parse_attack(spec, eps=0.1)
    assert type(a) is cls
    for k, v in fields.items():
        assert getattr(a, k) == pytest.approx(v) if isinstance(v, float) else getattr(a, k) == v


def test_parse_autoattack_versions():
    require("pyautoattack", AUTOATTACK_HOW)
    assert parse_attack("autoattack", eps=8 / 255).version == "standard"
    assert parse_attack("autoattack-rand", eps=8 / 255).version == "rand"


@pytest.mark.parametrize("spec,match", [("pgdx-3", "unknown attack"), ("pgd-20:beta=1", "beta"),
                                        ("pgd-20:alpha", "key=value"), ("fgsm-3", "no step"),
                                        ("pgd-rand", "cannot parse")])
def test_parse_attack_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_attack(spec, eps=0.1)


def test_autoattack_missing_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    with pytest.raises(ImportError, match=r"robustdial\[eval\]"):
        AutoAttack(eps=8 / 255)


def test_autoattack_prints_nothing(digits_model, capfd):
    require("pyautoattack", AUTOATTACK_HOW)
    model, x, y = digits_model
    AutoAttack(eps=0.3, version="standard")(model, x[:16], y[:16])  # all broken by APGD-CE
    out, err = capfd.readouterr()
    assert out == "" and err == ""
