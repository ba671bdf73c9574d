"""Attacks on the early-exit decision: slowdown (DeepSloth), exit-aware CE, form surrogates."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustdial.attacks import PGD
from robustdial.attacks.early_exit import ExitSurrogate, exit_aware_loss, slowdown_loss
from robustdial.evaluation import report
from robustdial.evaluation._report_point import Profile
from robustdial.models.early_exit import adaptive_forward, calibrate_thresholds, entropy


@pytest.fixture
def calibrated(tiny_model, tiny_data):
    calibrate_thresholds(tiny_model, tiny_data)  # ≈ 1/3 of the samples exit at each head
    return tiny_model


def test_slowdown_loss_is_minus_kl_to_uniform(tiny_model, tiny_data):
    x, y = tiny_data
    outs = tiny_model.forward_exits(x)
    expected = -sum((-F.log_softmax(o, 1).mean(1) - math.log(o.shape[1])) for o in outs[:-1])
    got = slowdown_loss(tiny_model, x, y)
    assert torch.allclose(got, expected, atol=1e-6)
    assert bool((got <= 1e-6).all())
    with torch.no_grad():  # uniform early exits: the maximum, 0
        for h in tiny_model.heads[:-1]:
            h[-1].weight.zero_()
            h[-1].bias.zero_()
    assert torch.allclose(slowdown_loss(tiny_model, x, y), torch.zeros(len(x)), atol=1e-6)


def test_slowdown_attack_pushes_samples_to_later_exits(calibrated, tiny_data):
    x, y = tiny_data
    model = calibrated
    _, clean_exit = adaptive_forward(model, x)
    torch.manual_seed(0)
    x_adv = PGD(eps=0.1, alpha=0.02, steps=20, loss=slowdown_loss)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    _, adv_exit = adaptive_forward(model, x_adv)
    last = model.num_exits - 1
    assert adv_exit.float().mean() > clean_exit.float().mean() + 0.5
    assert (adv_exit == last).float().mean() > (clean_exit == last).float().mean() + 0.3
    # every early exit is less confident
    for k in range(last):
        assert entropy(model.forward_exits(x_adv)[k]).mean() > entropy(model.forward_exits(x)[k]).mean()


def test_exit_aware_loss_is_the_ce_of_the_exit_taken(calibrated, tiny_data):
    x, y = tiny_data
    model = calibrated
    xa = x.clone().requires_grad_(True)
    logits, _ = adaptive_forward(model, xa)
    ref = F.cross_entropy(logits, y, reduction="none")
    (g_ref,) = torch.autograd.grad(ref.sum(), xa)
    xb = x.clone().requires_grad_(True)
    got = exit_aware_loss()(model, xb, y)
    (g,) = torch.autograd.grad(got.sum(), xb)
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(g, g_ref, atol=1e-6)
    # with other thresholds the exits (and the loss) change
    other = exit_aware_loss([10.0, 10.0])(model, x, y)  # everything exits at head 0
    assert torch.allclose(other, F.cross_entropy(model.forward_exits(x)[0], y, reduction="none"), atol=1e-6)


def test_exit_surrogate_forms(tiny_model, tiny_data):
    x, _ = tiny_data
    outs = tiny_model.forward_exits(x)
    assert torch.allclose(ExitSurrogate(tiny_model, 1)(x), outs[1], atol=1e-6)
    assert torch.allclose(ExitSurrogate(tiny_model, -1)(x), outs[-1], atol=1e-6)
    logps = torch.stack([F.log_softmax(o, 1) for o in outs])
    assert torch.allclose(ExitSurrogate(tiny_model, "average")(x), logps.mean(0), atol=1e-6)
    w = [0.2, 0.3, 0.5]
    assert torch.allclose(ExitSurrogate(tiny_model, w)(x), (torch.tensor(w).view(-1, 1, 1) * logps).sum(0),
                          atol=1e-6)
    with pytest.raises(ValueError, match="does not exist"):
        ExitSurrogate(tiny_model, 3)
    with pytest.raises(ValueError, match="non-negative exit weights"):
        ExitSurrogate(tiny_model, [1.0, 0.0])


def test_report_at_the_adaptive_point(calibrated, tiny_data):
    x, y = tiny_data
    model = calibrated
    prof = Profile("tiny", ("apgd-ce",), "AutoAttack APGD-CE only (test profile)", 1, 10, (2, 5),
                   (0.5, 2.0), 5, 100, 5, 4)
    rep = report(model, (x, y), eps=0.1, dials={"exit": [0, "adaptive"]}, profile=prof, checks=False,
                 progress=False)
    fixed, adaptive = rep.points
    assert "early_exit" not in fixed and "early_exit" in adaptive
    ee = adaptive["early_exit"]
    for key in ("clean", "autoattack", "pgd", "slowdown", "form:average", "form:max-average",
                "form:main", "form:branch1"):
        assert key in ee["inputs"], key
        assert sum(ee["inputs"][key]["exit_histogram"]) == len(x)
    clean, slow = ee["inputs"]["clean"], ee["inputs"]["slowdown"]
    assert slow["rdi"]["mflops"] > clean["rdi"]["mflops"]
    assert ee["saving_kept_under_slowdown_rdi"] < 0.7
    assert "slowdown" in adaptive["worst_case"]["attacks"]
    assert "form:max-average" in adaptive["worst_case"]["attacks"]
    assert set(adaptive["latency"]) >= {"clean", "slowdown"}
    assert "## Early exit at exit=adaptive" in rep.to_markdown()


def test_adaptive_latency_is_measured_against_the_full_backbone(calibrated, tiny_data):
    # the backbone must run to the final head: with every input leaving at the first exit,
    # adaptive inference is faster than the backbone by construction
    from robustdial.evaluation._report_cost import point_latency
    from robustdial.evaluation._report_point import PROFILES, PointEvaluator
    from robustdial.evaluation._report_cache import ReportCache
    from robustdial.condition import conditioned

    x, y = tiny_data
    with conditioned(calibrated, exit="adaptive", thresholds=(10.0, 10.0)):
        pe = PointEvaluator(calibrated, calibrated, x, y, point={"exit": "adaptive"}, label="a", eps=0.1,
                            profile=PROFILES["fast"], cache=ReportCache(None, "k"), stochastic=False,
                            batch_size=48, seed=0, adaptive=True)
        lat = point_latency(pe, calibrated, {"exit": "adaptive"}, (1, 12, 12), None)
    assert lat["clean"]["batch64"]["backbone_s"] > lat["clean"]["batch64"]["adaptive_s"]
