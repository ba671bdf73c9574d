"""Training objectives against numbers worked out by hand.

The "direct computation" tests elsewhere recompute a loss with the library's
own attack and model, so a wrong formula shared by both sides survives. Here
nothing of the library is on the expected side: the model returns its input as
logits, a stub attack returns adversarial logits from a fixed table, and every
expected loss is a closed form in ln 2, ln 3 and ln 10, derived below.

Inputs are images in [0, 1]: the model's logits are ``ln 3 · x[:, :2]`` and the
third column holds ``id / 4`` for the stub. Samples (two classes)::

    id  clean logits  y   p_clean     CE(x)          adv logits  p_adv       CE(x_adv)
    0   (0, 0)        0   (1/2, 1/2)  ln 2           (0, ln 3)   (1/4, 3/4)  ln 4
    1   (ln 3, 0)     0   (3/4, 1/4)  ln 4 − ln 3    (0, 0)      (1/2, 1/2)  ln 2
    2   (0, ln 3)     0   (1/4, 3/4)  ln 4           (0, ln 3)   (1/4, 3/4)  ln 4
    3   (0, 0)        1   (1/2, 1/2)  ln 2           (ln 3, 0)   (3/4, 1/4)  ln 4

    ΣCE(x) = 6 ln 2 − ln 3          ΣCE(x_adv) = 7 ln 2
    KL(p_clean ‖ p_adv): id 0 and 3: ln 2 − ½ ln 3; id 1: ¾ ln 3 − ln 2; id 2: 0
    ΣKL = ln 2 − ¼ ln 3   (the reversed KL(p_adv ‖ p_clean) sums to ln 3 − ln 2)
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustdial.attacks import Attack
from robustdial.condition import Choices, Interval, get_condition
from robustdial.methods import PGDAT, TRADES, Tradeoff
from robustdial.methods.float import FLOAT
from robustdial.methods.oat import OAT
from robustdial.methods.rdi import RDI

LN2, LN3, LN10 = math.log(2), math.log(3), math.log(10)
SUM_CE_CLEAN = 6 * LN2 - LN3   # 3.0602707946915624
SUM_CE_ADV = 7 * LN2           # 4.852030263919617
SUM_KL = LN2 - LN3 / 4         # 0.41849410839291784

# inputs: logits / ln 3 and id / 4, all in [0, 1]
X = torch.tensor([[0.0, 0.0, 0 / 4], [1.0, 0.0, 1 / 4], [0.0, 1.0, 2 / 4], [0.0, 0.0, 3 / 4]])
Y = torch.tensor([0, 0, 0, 1])
ADV_X = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # adv logits / ln 3


def _ids(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 2] * 4).round().long()


class TableAttack(Attack):
    """Returns x with its logit columns replaced by ``ADV_X[id]``; records each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[int], bool]] = []

    def perturb(self, model, x, y):
        ids = _ids(x)
        self.calls.append((ids.tolist(), model.training))
        out = x.clone()
        out[:, :2] = ADV_X[ids]
        return out


class Logits(nn.Module):
    """logits = ln 3 · x[:, :2]; λ-conditionable; logs the ids and λ of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[list[int], object]] = []
        self._lam = None

    def dial_specs(self):
        return {"lam": Interval(0.0, 1.0), "noise": Choices(("sample", "hold", "fixed", "off"))}

    def apply_condition(self, cond):
        self._lam = cond.lam

    def forward(self, x):
        lam = self._lam.tolist() if isinstance(self._lam, torch.Tensor) else self._lam
        self.seen.append((_ids(x).tolist(), lam))
        return LN3 * x[:, :2]


class TwoExitLogits(Logits):
    """Exit 0: the logits; exit 1 (final): twice the logits."""

    num_exits = 2

    def forward_exits(self, x):
        return [LN3 * x[:, :2], 2 * LN3 * x[:, :2]]

    def forward(self, x):
        return 2 * LN3 * x[:, :2]


def _loss(method, model=None):
    model = (model or Logits()).train()
    loss, metrics = method.loss(model, (X.clone(), Y.clone()))
    return loss.item(), metrics, model


@pytest.mark.parametrize("lam,expected", [
    (0.0, SUM_CE_CLEAN / 4),                           # 0.7650676986728905, no attack
    (0.3, 0.7 * SUM_CE_CLEAN / 4 + 0.3 * SUM_CE_ADV / 4),  # 0.8994496588649945
    (1.0, SUM_CE_ADV / 4),                             # 1.2130075659799042
])
def test_pgd_at_mix(lam, expected):
    attack = TableAttack()
    loss, metrics, _ = _loss(PGDAT(lam=lam, attack=attack))
    assert loss == pytest.approx(expected, rel=1e-6)
    assert len(attack.calls) == (lam > 0)
    if lam > 0:
        assert attack.calls == [([0, 1, 2, 3], False)]  # whole batch, BN in eval mode
        assert metrics["loss_adv"].item() == pytest.approx(SUM_CE_ADV / 4, rel=1e-6)
    if lam < 1:
        assert metrics["loss_clean"].item() == pytest.approx(SUM_CE_CLEAN / 4, rel=1e-6)


@pytest.mark.parametrize("alpha,beta,expected", [
    (1.0, 8.0, SUM_CE_CLEAN / 4 + 8 * SUM_CE_ADV / 4),  # 10.469128226512524
    (0.5, 2.0, 0.5 * SUM_CE_CLEAN / 4 + 2 * SUM_CE_ADV / 4),  # 2.8085490066963534
    (0.0, 1.0, SUM_CE_ADV / 4),
])
def test_tradeoff_eq8(alpha, beta, expected):
    loss, _, _ = _loss(Tradeoff(alpha=alpha, beta=beta, attack=TableAttack()))
    assert loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 6.0])
def test_trades_ce_plus_beta_kl_clean_to_adv(beta):
    """CE(x) + β·mean KL(f(x) ‖ f(x_adv)); the KL direction matters for this batch."""
    loss, metrics, _ = _loss(TRADES(beta=beta, attack=TableAttack()))
    expected = SUM_CE_CLEAN / 4 + beta * SUM_KL / 4  # β = 6: 1.392808861262267
    assert loss == pytest.approx(expected, rel=1e-6)
    assert metrics["loss_kl"].item() == pytest.approx(SUM_KL / 4, rel=1e-6)
    reversed_kl = (LN3 - LN2) / 4
    assert abs(metrics["loss_kl"].item() - reversed_kl) > 1e-3  # the check can tell them apart


def test_oat_per_sample_lambda_from_its_sampler():
    """S = {0, 0.25}, B = 4: ⌈4/2⌉ = 2 samples get λ = 0, the rest λ = 0.25.

    L = ¼[Σ(1 − λ_i)CE(x_i) + Σ λ_i CE(x_adv,i)]
      = ¼[(ln 2 + ln 4 − ln 3 + 0.75·ln 4 + 0.75·ln 2) + (0.25·ln 4 + 0.25·ln 4)]
      = ¼(6.25 ln 2 − ln 3) = 0.8083893974578871
    """
    attack = TableAttack()
    loss, _, model = _loss(OAT(lam_values=(0.0, 0.25), attack=attack, seed=0))
    assert loss == pytest.approx((6.25 * LN2 - LN3) / 4, rel=1e-6)
    assert attack.calls == [([2, 3], False)]  # only λ ≠ 0 samples are attacked
    # clean forward of all four at their own λ, then the adversarial forward of ids 2, 3
    assert model.seen[0] == ([0, 1, 2, 3], [0.0, 0.0, 0.25, 0.25])
    assert model.seen[-1] == ([2, 3], [0.25, 0.25])
    assert get_condition(model).lam is None  # the method restores the condition


class _FixedLamOAT(OAT):
    def sample_lam(self, batch_size):
        return torch.tensor([0.0, 0.0, 0.4, 1.0])


def test_oat_mixed_lambda_weights_each_sample():
    """λ = (0, 0, 0.4, 1): L = ¼[(ln 2 + ln 4 − ln 3 + 0.6·ln 4) + (0.4·ln 4 + 1·ln 4)]
    = ¼(7 ln 2 − ln 3) = 0.9383544938128767."""
    loss, _, _ = _loss(_FixedLamOAT(lam_values=(0.0, 0.4, 1.0), attack=TableAttack()))
    assert loss == pytest.approx((7 * LN2 - LN3) / 4, rel=1e-6)


@pytest.mark.parametrize("attack_noise", ["sample", "step"])
def test_float_half_clean_half_adversarial(attack_noise):
    """Ids 0, 1 clean at λ = 0; ids 2, 3 attacked at λ = 1: L = 0.5·L_C + 0.5·L_A
    = 0.5·(ln 2 + ln 4 − ln 3)/2 + 0.5·(ln 4 + ln 4)/2 = ¼(7 ln 2 − ln 3)."""
    attack = TableAttack()
    loss, metrics, model = _loss(FLOAT(attack=attack, attack_noise=attack_noise))
    assert loss == pytest.approx((7 * LN2 - LN3) / 4, rel=1e-6)
    assert metrics["loss_clean"].item() == pytest.approx((3 * LN2 - LN3) / 2, rel=1e-6)
    assert metrics["loss_adv"].item() == pytest.approx(2 * LN2, rel=1e-6)
    assert attack.calls == [([2, 3], False)]
    by_ids = {tuple(ids): lam for ids, lam in model.seen}
    assert by_ids == {(2, 3): 1.0, (0, 1): 0.0}


@pytest.mark.parametrize("defence", ["main", "average", "max-average"])
@pytest.mark.parametrize("weights_from", ["method", "model"])
def test_rdi_weighted_sum_over_exits(defence, weights_from):
    """w = (0.5, 2); exit 1 doubles the logits, so its CEs are ln 2, ln(10/9), ln 10, ln 2 (clean)
    and ln 10, ln 2, ln 10, ln 10 (adversarial):

    L = 0.5·[(6 ln 2 − ln 3) + 7 ln 2]/4 + 2·[(2 ln 2 + 2 ln 10 − 2 ln 3) + (ln 2 + 3 ln 10)]/4
      = 6.6866088469833205
    """
    model = TwoExitLogits()
    if weights_from == "model":
        model.exit_weights = [0.5, 2.0]
        method = RDI(defence, attack=TableAttack())
    else:
        model.exit_weights = [9.0, 9.0]  # must be ignored: the method's weights win
        method = RDI(defence, attack=TableAttack(), weights=[0.5, 2.0])
    loss, metrics, _ = _loss(method, model)
    expected = (0.5 * (13 * LN2 - LN3) / 4
                + 2 * (3 * LN2 + 5 * LN10 - 2 * LN3) / 4)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert metrics["loss_clean"].item() == pytest.approx(
        0.5 * SUM_CE_CLEAN / 4 + 2 * (2 * LN2 + 2 * LN10 - 2 * LN3) / 4, rel=1e-6)
