"""Baseline methods: losses equal direct computations; BN modes; registry."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustdial.attacks import FGSM, PGD
from robustdial.methods import (
    PGDAT,
    TRADES,
    Method,
    Standard,
    Tradeoff,
    TradesKL,
    attack_config,
    build_attack,
    build_method,
    kl_per_sample,
    list_methods,
)


def tiny_net() -> nn.Module:
    # (B, 1, 8, 8) -> (B, 10), with a BatchNorm so BN modes matter
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 64, 10))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


def record_adv(method: Method) -> list[torch.Tensor]:
    """Wrap ``method.adversarial`` so tests can recompute the loss from the same x_adv."""
    seen: list[torch.Tensor] = []
    inner = method.adversarial

    def spy(model, x, y, attack):
        out = inner(model, x, y, attack)
        seen.append(out)
        return out

    method.adversarial = spy  # type: ignore[method-assign]
    return seen


def test_standard_equals_cross_entropy(batch):
    model = tiny_net().train()
    x, y = batch
    loss, metrics = Standard().loss(model, batch)
    expected = F.cross_entropy(model(x), y)
    torch.testing.assert_close(loss, expected)
    assert set(metrics) >= {"loss", "acc_clean"}
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in metrics.values())


def test_pgdat_lambda_zero_equals_standard_and_runs_no_attack(batch):
    model = tiny_net().train()
    method = PGDAT(lam=0.0)
    seen = record_adv(method)
    loss, metrics = method.loss(model, batch)
    ref, _ = Standard().loss(model, batch)
    torch.testing.assert_close(loss, ref)
    assert seen == [] and "acc_adv" not in metrics


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_pgdat_equals_direct_mix(batch, lam):
    model = tiny_net().train()
    x, y = batch
    method = PGDAT(lam=lam, attack={"name": "pgd", "eps": "8/255", "alpha": "2/255", "steps": 3})
    seen = record_adv(method)
    loss, metrics = method.loss(model, batch)
    (x_adv,) = seen
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    expected = lam * F.cross_entropy(model(x_adv), y)
    if lam < 1:
        expected = expected + (1 - lam) * F.cross_entropy(model(x), y)
    torch.testing.assert_close(loss, expected)
    assert ("acc_clean" in metrics) == (lam < 1)  # λ = 1: no clean forward


def test_pgdat_lambda_one_makes_one_training_forward(batch):
    model = tiny_net().train()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(m.training))
    PGDAT(lam=1.0, attack=PGD(eps=0.1, alpha=0.05, steps=2)).loss(model, batch)
    # two attack forwards in eval mode, one training forward, no clean forward
    assert calls == [False, False, True]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_attack_runs_in_declared_bn_mode_and_mode_restored(batch, mode):
    model = tiny_net().train()
    model[1].eval()  # a deliberately frozen BN must come back frozen
    bn_modes = []
    model[1].register_forward_pre_hook(lambda m, i: bn_modes.append(m.training))
    method = PGDAT(attack=PGD(eps=0.1, alpha=0.05, steps=2), attack_bn_mode=mode)
    x, y = batch
    before = model[1].running_mean.clone()
    method.adversarial(model, x, y, method.attack)
    assert bn_modes == [mode == "train"] * 2
    unchanged = torch.equal(model[1].running_mean, before)
    assert unchanged == (mode == "eval")
    assert model.training and not model[1].training and model[0].training


def test_attack_leaves_parameter_grads_alone(batch):
    model = tiny_net().train()
    for method in (PGDAT(attack=PGD(eps=0.1, alpha=0.05, steps=2)), TRADES(attack="pgd-2"),
                   Tradeoff(attack=FGSM(eps=0.1))):
        loss, _ = method.loss(model, batch)
        assert all(p.grad is None for p in model.parameters())
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad(set_to_none=True)


def test_trades_equals_direct_computation(batch):
    model = tiny_net().train()
    x, y = batch
    method = TRADES(beta=6.0, attack=PGD(eps=0.1, alpha=0.03, steps=3))
    seen = record_adv(method)
    loss, metrics = method.loss(model, batch)
    (x_adv,) = seen
    logits, logits_adv = model(x), model(x_adv)
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
    expected = F.cross_entropy(logits, y) + 6.0 * kl
    torch.testing.assert_close(loss, expected)
    assert metrics["loss_kl"] >= 0
    assert method.attack.loss is None  # the configured attack is not mutated


def test_trades_attack_increases_kl(batch):
    model = tiny_net().eval()
    x, y = batch
    with torch.no_grad():
        target = model(x)
    kl_loss = TradesKL(target)
    x_adv = PGD(eps=0.2, alpha=0.05, steps=5, loss=kl_loss)(model, x, y)
    with torch.no_grad():
        at_x = kl_loss(model, x, y)
        at_adv = kl_loss(model, x_adv, y)
    torch.testing.assert_close(at_x, torch.zeros_like(at_x), atol=1e-6, rtol=0)
    assert (at_adv >= -1e-7).all() and at_adv.mean() > 1e-4


def test_kl_per_sample_is_nonnegative_and_matches_torch():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(32, 10, generator=g) * 3, torch.randn(32, 10, generator=g) * 3
    kl = kl_per_sample(p, q)
    ref = F.kl_div(F.log_softmax(q, 1), F.log_softmax(p, 1), reduction="none", log_target=True).sum(1)
    torch.testing.assert_close(kl, ref)
    assert (kl >= -1e-6).all()
    torch.testing.assert_close(kl_per_sample(p, p), torch.zeros(32), atol=1e-6, rtol=0)


def test_tradeoff_equals_eq8_and_reduces_to_pgdat(batch):
    model = tiny_net().train()
    x, y = batch
    attack = PGD(eps=0.1, alpha=0.03, steps=3, random_start=False)  # deterministic
    method = Tradeoff(alpha=1.0, beta=8.0, attack=attack)
    seen = record_adv(method)
    loss, _ = method.loss(model, batch)
    expected = F.cross_entropy(model(x), y) + 8.0 * F.cross_entropy(model(seen[0]), y)
    torch.testing.assert_close(loss, expected)
    # train-mode BN: outputs depend on the batch only, not on running stats
    # that the previous calls updated
    at, _ = Tradeoff(alpha=0.0, beta=1.0, attack=attack, attack_bn_mode="train").loss(model, batch)
    pgdat, _ = PGDAT(lam=1.0, attack=attack, attack_bn_mode="train").loss(model, batch)
    torch.testing.assert_close(at, pgdat)


def test_config_round_trips_through_registry():
    for name, kw in [("standard", {}), ("pgd_at", {"lam": 0.5}), ("trades", {"beta": 1.0}),
                     ("tradeoff", {"alpha": 1.0, "beta": 4.0})]:
        method = build_method(name, **kw)
        cfg = method.config()
        assert cfg["name"] == name
        rebuilt = build_method(**cfg)
        assert rebuilt.config() == cfg
    assert {"standard", "pgd_at", "trades", "tradeoff"} <= set(list_methods())


def test_build_attack_from_dict_and_errors():
    a = build_attack({"name": "pgd", "eps": 0.3, "alpha": "1/100", "steps": 40})
    assert isinstance(a, PGD) and a.steps == 40 and math.isclose(a.alpha, 0.01)
    assert attack_config(build_attack(attack_config(a))) == attack_config(a)
    assert isinstance(build_attack("fgsm"), FGSM)
    with pytest.raises(ValueError, match="pgd, pgdl2, fgsm"):
        build_attack({"name": "nope"})
    with pytest.raises(ValueError, match="steps"):
        build_attack({"name": "pgd", "steps": 0})


def test_bad_options_say_how_to_fix():
    with pytest.raises(ValueError, match="available: .*pgd_at"):
        build_method("madry_v9")
    with pytest.raises(ValueError, match="its options"):
        build_method("pgd_at", beta=3)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        PGDAT(lam=1.5)
    with pytest.raises(ValueError, match="attack_bn_mode"):
        TRADES(attack_bn_mode="frozen")
    with pytest.raises(ValueError, match="both 0"):
        Tradeoff(alpha=0, beta=0)


def test_trades_forwards_are_the_ones_its_docstring_lists(batch):
    """No-grad clean target (eval BN), k attack forwards (eval BN), then clean and adversarial in train mode."""
    model = tiny_net().train()
    calls: list[tuple[bool, bool]] = []
    model.register_forward_hook(lambda m, i, o: calls.append((m.training, torch.is_grad_enabled())))
    bn = model[1]
    before = bn.num_batches_tracked.clone()
    TRADES(beta=1.0, attack=PGD(eps=0.1, alpha=0.05, steps=3)).loss(model, batch)
    assert calls == [(False, False)] + [(False, True)] * 3 + [(True, True), (True, True)]
    assert int(bn.num_batches_tracked - before) == 2  # one clean and one adversarial batch


def _roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as the engine's train_state.pt."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_methods_without_own_randomness_have_empty_state():
    for name in ("standard", "pgd_at", "trades", "tradeoff", "float", "rdi"):
        assert build_method(name).state_dict() == {}, name


def test_oat_lambda_sampler_state_round_trips():
    from robustdial.methods import OAT

    a = OAT(seed=3)
    a.sample_lam(32)
    state = _roundtrip(a.state_dict())
    expected = [a.sample_lam(32) for _ in range(3)]
    b = OAT(seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(x, b.sample_lam(32)) for x in expected)


def test_oat_resumed_sampler_continues_not_restarts():
    from robustdial.methods import OAT

    a = OAT(seed=0)
    first = a.sample_lam(64)
    state = _roundtrip(a.state_dict())
    b = OAT(seed=0)
    b.load_state_dict(state)
    assert not torch.equal(b.sample_lam(64), first)  # continues after the first draw
    assert torch.equal(OAT(seed=0).sample_lam(64), first)


def test_slimmable_state_holds_the_inner_methods_state():
    from robustdial.methods import OATS

    a = OATS(widths=(0.5, 1.0), seed=1)
    a.inner.sample_lam(16)
    state = _roundtrip(a.state_dict())
    assert "lam_generator" in state["inner"]
    b = OATS(widths=(0.5, 1.0), seed=1)
    b.load_state_dict(state)
    assert torch.equal(a.inner.sample_lam(16), b.inner.sample_lam(16))


def test_attack_generator_is_part_of_the_method_state(batch):
    g = torch.Generator().manual_seed(5)
    method = PGDAT(attack=PGD(eps=0.1, alpha=0.05, steps=1, generator=g))
    model = tiny_net().eval()
    x, y = batch
    method.adversarial(model, x, y, method.attack)  # advances g
    state = _roundtrip(method.state_dict())
    assert set(state["attack_generators"]) == {"attack.generator"}
    expected = method.adversarial(model, x, y, method.attack)
    other = PGDAT(attack=PGD(eps=0.1, alpha=0.05, steps=1, generator=torch.Generator().manual_seed(0)))
    other.load_state_dict(state)
    assert torch.equal(other.adversarial(model, x, y, other.attack), expected)
    with pytest.raises(ValueError, match="attack generators"):
        PGDAT().load_state_dict(state)  # no generator to restore into
