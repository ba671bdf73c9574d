"""Multi-exit attack forms: threat-model invariants, Eq. 3/4/7 semantics."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdial.attacks import FGSM, PGD, WRM
from robustdial.attacks.multi_exit import (
    MaxAverage,
    attack_forms,
    average_loss,
    per_exit_ce,
    random_fusion_loss,
    select_max_average,
    single_exit_loss,
    with_loss,
    worst_case,
)

EPS = 0.1


def test_forms_stay_in_the_eps_ball_and_leave_the_model_alone(tiny_model, tiny_data):
    x, y = tiny_data
    tiny_model.train()
    forms = attack_forms(tiny_model, PGD(eps=EPS, alpha=0.03, steps=3))
    assert list(forms) == ["branch1", "branch2", "main", "average", "max-average", "random"]
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for name, attack in forms.items():
        x_adv = attack(tiny_model, x, y)
        assert x_adv.shape == x.shape
        assert (x_adv - x).abs().max() <= EPS + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
        assert not torch.equal(x_adv, x), name
        assert tiny_model.training
        assert all(p.grad is None for p in tiny_model.parameters())
    # train-mode BN would update running stats: the attacks run in the caller's mode,
    # so compare only parameters here
    for k, p in tiny_model.named_parameters():
        assert torch.equal(p, before[k])


@pytest.mark.parametrize("make", [lambda l: FGSM(eps=EPS, loss=l), lambda l: WRM(steps=3, loss=l)])
def test_forms_work_with_other_attackers(tiny_model, tiny_data, make):
    x, y = tiny_data
    forms = attack_forms(tiny_model, make)
    for attack in forms.values():
        x_adv = attack(tiny_model, x, y)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    if isinstance(make(None), FGSM):
        assert (forms["average"](tiny_model, x, y) - x).abs().max() <= EPS + 1e-6


def test_single_and_average_losses(tiny_model, tiny_data):
    x, y = tiny_data
    outs = tiny_model.forward_exits(x)
    ces = [F.cross_entropy(o, y, reduction="none") for o in outs]
    for i in range(3):
        assert torch.allclose(single_exit_loss(i)(tiny_model, x, y), ces[i], atol=1e-6)
    assert torch.allclose(single_exit_loss(-1)(tiny_model, x, y), ces[-1], atol=1e-6)
    assert torch.allclose(average_loss(tiny_model, x, y), torch.stack(ces).mean(0), atol=1e-6)


def test_random_fusion_is_a_fresh_convex_combination(tiny_model, tiny_data):
    x, y = tiny_data
    ce = per_exit_ce(tiny_model, x, y).detach()
    loss = random_fusion_loss(torch.Generator().manual_seed(0))
    a, b = loss(tiny_model, x, y).detach(), loss(tiny_model, x, y).detach()
    assert not torch.allclose(a, b)
    for v in (a, b):
        assert (v >= ce.min(0).values - 1e-5).all() and (v <= ce.max(0).values + 1e-5).all()


def test_select_max_average_matches_a_slow_reference(tiny_model, tiny_data):
    x, y = tiny_data
    g = torch.Generator().manual_seed(5)
    cands = [(x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1) for _ in range(3)]
    x_max, choice = select_max_average(tiny_model, cands, y)
    for b in range(x.shape[0]):
        sums = []
        for c in cands:
            outs = tiny_model.forward_exits(c[b:b + 1])
            sums.append(sum(F.cross_entropy(o, y[b:b + 1]).item() for o in outs))
        best = max(range(3), key=sums.__getitem__)
        assert choice[b].item() == best
        assert torch.equal(x_max[b], cands[best][b])
    assert len(set(choice.tolist())) > 1  # the choice really is per sample


def test_max_average_attack_selects_among_the_single_attacks(tiny_model, tiny_data):
    x, y = tiny_data
    make = lambda l: PGD(eps=EPS, alpha=0.03, steps=3, random_start=False, loss=l)  # noqa: E731
    x_max = MaxAverage(make)(tiny_model, x, y)
    singles = [make(single_exit_loss(i))(tiny_model, x, y) for i in range(3)]
    ref, _ = select_max_average(tiny_model, singles, y)
    assert torch.equal(x_max, ref)
    # its summed loss is at least that of every single attack, per sample
    score = lambda z: per_exit_ce(tiny_model, z, y).sum(0)  # noqa: E731
    with torch.no_grad():
        for s in singles:
            assert (score(x_max) >= score(s) - 1e-5).all()


def test_with_loss_copies_the_attack():
    base = PGD(eps=EPS, steps=2)
    a = with_loss(base, average_loss)
    assert a.loss is average_loss and base.loss is None and a.eps == base.eps


def test_worst_case_excludes_random():
    name, v = worst_case({"branch1": 50.0, "main": 40.0, "average": 45.0, "random": 10.0})
    assert (name, v) == ("main", 40.0)
