"""Sparse momentum (FLOATS-i) and channel pruning (FLOATS-c)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustdial as rd
from robustdial.compress import ChannelPrune, SparseMomentum, channel_importance, prune_channels
from robustdial.compress.metrics import channel_density


def _train_epoch(model, opt, transform, steps=3):
    for _ in range(steps):
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        transform.after_step(model, opt)


@pytest.mark.parametrize("init", ["uniform", "erk"])
def test_density_held_exactly_and_regrowth_only_inactive(init):
    model = rd.create_model("small_cnn", in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sm = SparseMomentum(0.2, epochs=4, init=init)
    sm.on_train_start(model, opt)
    target = round(0.2 * sm.total_count())
    assert sm.active_count() == target
    params = dict(model.named_parameters())
    for epoch in range(3):
        _train_epoch(model, opt, sm)
        before = {n: m.clone() for n, m in sm.masks.items()}
        sm.on_epoch_end(epoch, model, opt)
        assert sum(int(m.sum()) for m in sm.masks.values()) == target  # exact, every epoch
        for n, m in sm.masks.items():
            assert int((params[n] != 0).logical_and(~m).sum()) == 0  # masked weights are zero
        grown = sum(int((m & ~before[n]).sum()) for n, m in sm.masks.items())
        lost = sum(int((before[n] & ~m).sum()) for n, m in sm.masks.items())
        assert grown == lost > 0  # the masks moved, and the net count did not
    # only conv / linear weights are masked; BN and biases never
    assert all(n.endswith("weight") and params[n].dim() >= 2 for n in sm.masks)


def test_regrowth_picks_largest_momentum_inactive():
    lin = nn.Sequential(nn.Linear(4, 4, bias=False))
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    sm = SparseMomentum(0.5, prune_schedule="constant", prune_rate=0.25)
    sm.on_train_start(lin, opt)
    w = lin[0].weight
    mask = sm.masks["0.weight"]
    with torch.no_grad():  # active weights 1..8 by magnitude, largest momentum on an ACTIVE one
        w.zero_()
        w[mask] = torch.arange(1.0, 9.0)
    mom = torch.zeros(4, 4)
    mom[mask] = 100.0  # still-active positions: huge momentum, must not be "regrown"
    act = mask.nonzero()
    pruned = [tuple(i.tolist()) for i in act[w[mask].argsort()[:2]]]  # 2 smallest |w|
    for p in pruned:
        mom[p] = 0.0
    inactive = [tuple(i.tolist()) for i in (~mask).nonzero()]
    mom[inactive[3]], mom[inactive[5]] = 5.0, 4.0
    opt.state[w]["momentum_buffer"] = mom
    counts = sm.prune_regrow(opt, 0.25)  # prune 2 smallest, regrow 2
    new = sm.masks["0.weight"]
    assert counts == {"0.weight": 2} and int(new.sum()) == 8
    assert new[inactive[3]] and new[inactive[5]]  # the two largest-momentum inactive positions
    assert not any(bool(new[p]) for p in pruned)
    assert all(bool(new[tuple(i.tolist())]) for i in act if tuple(i.tolist()) not in pruned)


def test_masks_survive_state_dict_round_trip():
    model = rd.create_model("small_cnn", in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sm = SparseMomentum(0.3, epochs=3, seed=1)
    sm.on_train_start(model, opt)
    _train_epoch(model, opt, sm)
    sm.on_epoch_end(0, model, opt)
    state = sm.state_dict()
    buf = __import__("io").BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    sm2 = SparseMomentum(0.3, epochs=3, seed=99)
    sm2.load_state_dict(loaded)
    model2 = rd.create_model("small_cnn", in_channels=1)
    sm2.on_train_start(model2, torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9))
    assert set(sm2.masks) == set(sm.masks)
    assert all(torch.equal(sm2.masks[n], sm.masks[n]) for n in sm.masks)
    with pytest.raises(ValueError, match="density"):
        SparseMomentum(0.5, epochs=3).load_state_dict(loaded)


def test_cosine_needs_epochs():
    with pytest.raises(ValueError, match="epochs"):
        SparseMomentum(0.1)


def test_channel_prune_keeps_top_norm_channels():
    w = torch.randn(4, 6, 3, 3)
    w[:, 2] *= 10
    w[:, 4] *= 0.01
    f = channel_importance(w)
    torch.testing.assert_close(f[2], (w[:, 2] ** 2).sum())
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.Conv2d(6, 4, 3))
    with torch.no_grad():
        model[1].weight.copy_(w)
    keep = prune_channels(model, 0.5)["1.weight"]
    assert int(keep.sum()) == 3 and keep[2] and not keep[4]
    order = f.argsort(descending=True)
    assert keep[order[:3]].all()


def test_channel_prune_transform_hits_density():
    model = rd.create_model("preact_resnet20")
    cp = ChannelPrune(0.4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cp.on_train_start(model, opt)
    assert cp.weight_density(model) == pytest.approx(0.4, abs=0.01)
    dens = channel_density(model, layers=list(cp.keep))
    assert dens == pytest.approx(cp.channel_density(model)) and dens < 0.6


def test_sparse_momentum_survives_a_crash_and_resume(tmp_path):
    """fit + SparseMomentum crashed mid-epoch and resumed = the uninterrupted run: weights, masks, density."""
    from robustdial.data import load_dataset
    from robustdial.engine import FitConfig, fit
    from robustdial.methods.standard import Standard

    train = load_dataset("digits", split="train").subset(256)  # 4 steps per epoch at batch 64

    def net(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))

    def cfg(**kw) -> FitConfig:
        return FitConfig(epochs=3, batch_size=64, lr=0.05, device="cpu", augment="none", **kw)

    def crash(info) -> None:
        if info.step == 10:  # inside epoch index 2
            raise RuntimeError("simulated crash")

    ref_sm = SparseMomentum(0.3, epochs=3)
    ref = fit(net(), Standard(), (train, None), cfg(), transforms=[ref_sm]).model
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(net(), Standard(), (train, None), cfg(out_dir=str(tmp_path)),
            transforms=[SparseMomentum(0.3, epochs=3)], callbacks=[SimpleNamespace(on_step_end=crash)])
    sm = SparseMomentum(0.3, epochs=3)
    res = fit(net(seed=7), Standard(), (train, None), cfg(out_dir=str(tmp_path), resume=True),
              transforms=[sm])
    a, b = ref.state_dict(), res.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sm.masks.keys() == ref_sm.masks.keys()
    assert all(torch.equal(sm.masks[n], ref_sm.masks[n]) for n in sm.masks)
    assert sm.active_count() == round(0.3 * sm.total_count())
