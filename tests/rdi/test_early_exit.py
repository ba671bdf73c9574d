"""Entropy early exit: equivalence with full evaluation, skipped work, calibration."""
from __future__ import annotations

import math

import pytest
import torch

from robustdial.condition import conditioned
from robustdial.models.early_exit import (
    adaptive_forward,
    calibrate_thresholds,
    entropy,
    select_exits,
    thresholds_for_fractions,
)


def test_entropy_matches_the_authors_formula():
    logits = torch.randn(7, 10)
    p = logits.softmax(1)
    ref = -(p * torch.log(p + 1e-5)).sum(1)
    assert torch.allclose(entropy(logits), ref, atol=1e-6)
    # uniform prediction: log(C) up to the ε in the log
    assert entropy(torch.zeros(1, 10)).item() == pytest.approx(math.log(10), abs=1e-3)


def _median_thresholds(model, x):
    with torch.no_grad():
        outs = model.forward_exits(x)
    return [float(entropy(o).median()) for o in outs[:-1]]


def test_adaptive_forward_equals_selection_from_all_exits(tiny_model, tiny_data):
    x, _ = tiny_data
    t = _median_thresholds(tiny_model, x)
    with torch.no_grad():
        logits, idx = adaptive_forward(tiny_model, x, t)
        ref_logits, ref_idx = select_exits(tiny_model.forward_exits(x), t)
        # the slow per-sample reference
        outs = tiny_model.forward_exits(x)
    for b in range(x.shape[0]):
        k = next((k for k in range(2) if entropy(outs[k][b:b + 1]).item() < t[k]), 2)
        assert idx[b].item() == k
    assert torch.equal(idx, ref_idx)
    assert len(set(idx.tolist())) == 3  # all three exits used
    assert torch.allclose(logits, ref_logits, atol=1e-5)


def test_adaptive_forward_one_input_at_a_time_equals_the_batch(tiny_model, tiny_data):
    x, _ = tiny_data
    calibrate_thresholds(tiny_model, tiny_data)
    logits, exits = adaptive_forward(tiny_model, x)
    assert len(set(exits.tolist())) == 3  # every exit taken by someone
    for i in range(len(x)):  # the B = 1 fast path (no gather/scatter) decides the same
        li, ei = adaptive_forward(tiny_model, x[i:i + 1])
        assert int(ei) == int(exits[i])
        torch.testing.assert_close(li[0], logits[i], atol=1e-5, rtol=1e-5)


def test_adaptive_forward_skips_work_for_exited_samples(tiny_model, tiny_data):
    x, _ = tiny_data
    t = _median_thresholds(tiny_model, x)
    seen: list[int] = []
    hooks = [seg.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
             for seg in tiny_model.segments]
    try:
        with torch.no_grad():
            _, idx = adaptive_forward(tiny_model, x, t)
    finally:
        for h in hooks:
            h.remove()
    B = x.shape[0]
    expect = [B, B - int((idx == 0).sum()), B - int((idx <= 1).sum())]
    assert seen == expect
    assert seen[1] < B and seen[2] < seen[1]


def test_adaptive_forward_keeps_channels_last(tiny_model, tiny_data):
    """Survivors stay channels_last (no silent format flips between segments), same outputs."""
    x, _ = tiny_data
    t = _median_thresholds(tiny_model, x)
    with torch.no_grad():
        ref, ref_idx = adaptive_forward(tiny_model, x, t)
    model = tiny_model.to(memory_format=torch.channels_last)
    formats: list[bool] = []
    hooks = [seg.register_forward_hook(
        lambda m, i, o: formats.append(i[0].is_contiguous(memory_format=torch.channels_last)))
        for seg in model.segments]
    try:
        with torch.no_grad():
            out, idx = adaptive_forward(model, x.contiguous(memory_format=torch.channels_last), t)
    finally:
        for h in hooks:
            h.remove()
    assert formats == [True, True, True]
    assert torch.equal(idx, ref_idx) and torch.allclose(out, ref, atol=1e-5)


def test_all_exit_early_runs_only_the_first_segment(tiny_model, tiny_data):
    x, _ = tiny_data
    calls = []
    h = tiny_model.segments[1].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        _, idx = adaptive_forward(tiny_model, x, [10.0, 10.0])
    finally:
        h.remove()
    assert (idx == 0).all() and not calls


def test_exit_dial_and_stored_thresholds(tiny_model, tiny_data):
    x, _ = tiny_data
    t = _median_thresholds(tiny_model, x)
    tiny_model.exit_thresholds.copy_(torch.tensor(t))
    with torch.no_grad():
        ref, _ = adaptive_forward(tiny_model, x, t)
        with conditioned(tiny_model, exit="adaptive"):
            out = tiny_model(x)
        assert torch.allclose(out, ref)
        with conditioned(tiny_model, exit="adaptive", thresholds=(10.0, 10.0)):
            out = tiny_model(x)
        assert torch.allclose(out, tiny_model.forward_exits(x)[0])
    with pytest.raises(ValueError, match="one threshold per non-final exit"):
        adaptive_forward(tiny_model, x, [0.1])


def test_calibration_gives_uniform_exits_on_validation_data(tiny_model):
    g = torch.Generator().manual_seed(3)
    val = (torch.rand(300, 1, 12, 12, generator=g), torch.randint(0, 5, (300,), generator=g))
    t = calibrate_thresholds(tiny_model, val, batch_size=64)
    assert torch.allclose(tiny_model.exit_thresholds, torch.tensor(t))
    with torch.no_grad():
        _, idx = adaptive_forward(tiny_model, val[0])
    counts = torch.bincount(idx, minlength=3).tolist()
    assert all(abs(c - 100) <= 2 for c in counts), counts
    # held-out data from the same distribution: roughly uniform too
    test = torch.rand(300, 1, 12, 12, generator=g)
    with torch.no_grad():
        _, idx = adaptive_forward(tiny_model, test)
    assert all(60 <= c <= 140 for c in torch.bincount(idx, minlength=3).tolist())


def test_calibration_to_fractions_and_budget(tiny_model):
    g = torch.Generator().manual_seed(4)
    val = (torch.rand(200, 1, 12, 12, generator=g), torch.randint(0, 5, (200,), generator=g))
    calibrate_thresholds(tiny_model, val, target=[0.5, 0.1, 0.4])
    with torch.no_grad():
        _, idx = adaptive_forward(tiny_model, val[0])
    assert torch.bincount(idx, minlength=3).tolist() == [100, 20, 80]
    costs = [m / 2**20 for m in tiny_model.exit_macs()]
    budget = 0.5 * (costs[0] + costs[-1])
    calibrate_thresholds(tiny_model, val, target=budget)
    with torch.no_grad():
        _, idx = adaptive_forward(tiny_model, val[0])
    frac = torch.bincount(idx, minlength=3).float() / 200
    spent = float((frac * torch.tensor(costs)).sum())
    assert spent <= budget + 1e-9
    assert spent >= budget - 0.05 * costs[-1]  # uses most of the budget
    with pytest.raises(ValueError, match="fractions"):
        thresholds_for_fractions(torch.rand(3, 10), [0.7, 0.7])
