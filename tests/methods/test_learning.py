"""End-to-end learning on the bundled 8×8 digits: each method buys what its paper promises.

TRADES (Zhang et al. 2019), the trade-off loss with
Binary-Relax weights (Yin, Xin et al.; Li, Wang, Xin 2021) and RDI-Nets' exit
defences (Hu et al. 2020). Every model is trained once (module fixtures, or the
session-wide references in ``_learning_nets``), seed 0, and evaluated with
PGD-20 at ε = 0.2 (L∞, [0, 1] scale) on the 359 test digits. PGD-AT vs
standard and the OAT / FLOAT dials (at ε = 0.3) are in ``test_learning_dials.py``,
slimmable training in ``test_slimmable_training.py``.

Margins: measured over seeds 0, 1, 2 (the test uses seed 0) for the real method
and for seeded broken variants of it; the numbers are in the comment at each bar.
"""
from __future__ import annotations

import pytest

from robustdial.compress import BinaryRelax
from robustdial.compress.metrics import sparsity_report
from robustdial.methods import RDI, TRADES, Standard, Tradeoff

from _learning_nets import (accuracies, digits_net, multi_exit_digits_net, reference, train,
                            train_attack)

EPS = 0.2  # L∞ on the [0, 1] scale (digits have 17 grey levels); training: PGD-3, step ε/2


# -- TRADES: β moves the trade-off (Zhang et al. 2019, Eq. 5: β weighs robustness vs accuracy) -
@pytest.fixture(scope="module")
def trades():
    return {beta: accuracies(train(digits_net(seed=0), TRADES(beta=beta, attack=train_attack(EPS)),
                                   300, seed=0), EPS)[0]
            for beta in (0.5, 6.0)}


def test_trades_beta_moves_the_tradeoff(trades):
    (clean_lo, robust_lo), (clean_hi, robust_hi) = trades[0.5], trades[6.0]
    msg = f"β=0.5 {clean_lo:.3f}/{robust_lo:.3f}, β=6 {clean_hi:.3f}/{robust_hi:.3f}"
    # (clean, robust) — seeds 0/1/2:
    #   real    β=0.5 (.983 .532) (.992 .510) (.989 .543);  β=6 (.955 .671) (.947 .635) (.950 .652)
    #   broken: β ignored (β = 1 whatever is asked): the two models are identical, both gaps 0
    #   broken: no attack (x_adv = x): β=6 (.989 .028)
    assert robust_hi > robust_lo + 0.05, msg  # larger β: more robust (real gap ≥ .109) …
    assert clean_lo > clean_hi + 0.01, msg  # … and less accurate on clean inputs (real gap ≥ .026)
    assert robust_lo > reference("standard", EPS)[1] + 0.2, msg  # even β = 0.5 is adversarial training


# -- the trade-off loss with Binary-Relax binary weights (BR paper Table 4) -------------------
def _binary_relax(method):
    # η = 1.5^e over the ~15 epochs of 300 steps (η ≈ 290 in the last one, u ≈ Q(w)); no hard
    # cut-off inside the run (BinaryConnect's phase is unit-tested in tests/compress)
    t = BinaryRelax("binary", rho=1.5, eta0=1.0, cutoff_epoch=15)
    # lr 0.01 for both: the trade-off loss α·CE + β·CE_adv with α = 1, β = 8 is ~9× a plain CE
    # (lr 0.05 diverges to chance)
    model = train(digits_net(seed=0), method, 300, seed=0, transforms=[t], lr=0.01)
    t.finalize(model)  # the deployed network: conv weights = mean|w|·sign(w)
    return model


@pytest.fixture(scope="module")
def binary():
    out = {}
    for name, method in (("standard", Standard()),
                         ("tradeoff", Tradeoff(alpha=1.0, beta=8.0, attack=train_attack(EPS)))):
        model = _binary_relax(method)
        out[name] = (accuracies(model, EPS)[0], sparsity_report(model)[:-1])
    return out


def test_binary_relax_tradeoff_is_more_robust_than_standard_at_one_bit(binary):
    (std_clean, std_robust), std_rows = binary["standard"]
    (to_clean, to_robust), to_rows = binary["tradeoff"]
    msg = f"BR standard {std_clean:.3f}/{std_robust:.3f}, BR trade-off {to_clean:.3f}/{to_robust:.3f}"
    for rows in (std_rows, to_rows):  # really 1-bit: two values per quantized conv
        assert [r["name"] for r in rows] == ["features.0.weight", "features.3.weight"]
        assert all(r["distinct_values"] <= 2 for r in rows), rows
    # (clean, robust) — seeds 0/1/2:
    #   real     standard (.975 .045) (.978 .017) (.969 .045); trade-off (.967 .451) (.978 .387) (.978 .437)
    #   broken: η never grows (u = (Q(w) + w)/2 throughout): standard (.972 .011) (.964 .025) (.969 .036),
    #           trade-off (.852 .170) (.702 .078) (.883 .086)
    #   broken: projection off (u = w, Q only at finalize): standard (.922 .008) (.869 .011) (.900 .053),
    #           trade-off (.315 .117) (.209 .028) (.153 .045)
    #   broken: trade-off loss without attack (x_adv = x): trade-off (.981 .019) (.983 .017) (.978 .006)
    assert std_clean > 0.95 and to_clean > 0.93, msg  # the binarized networks still classify
    assert to_robust > std_robust + 0.25, msg  # the loss buys robustness at 1 bit (real gap ≥ .37)


# -- RDI-Nets: every exit defended (Hu et al. 2020, Sec. 4, Table 2: Main Branch vs Average) ----
@pytest.fixture(scope="module")
def rdi():
    exits = [{"exit": k} for k in range(3)]
    return {defence: accuracies(train(multi_exit_digits_net(seed=0),
                                      RDI(defence, attack=train_attack(EPS)), 300, seed=0), EPS, exits)
            for defence in ("main", "average")}


def test_rdi_average_defence_is_robust_at_every_exit(rdi):
    main, average = rdi["main"], rdi["average"]
    msg = f"main {main}, average {average}"
    # PGD-20 on each exit's own logits (single attack, Eq. 2); (clean, robust) per exit 0/1/2:
    #   main     seed 0 (.975 .228) (.992 .437) (.992 .607)  seed 1 (.978 .198) (.986 .496) (.989 .624)
    #            seed 2 (.981 .198) (.986 .460) (.992 .593)
    #   average  seed 0 (.964 .446) (.989 .493) (.992 .518)  seed 1 (.978 .415) (.983 .515) (.992 .543)
    #            seed 2 (.972 .429) (.986 .504) (.989 .535)
    #   broken: the average defence attacking the main head only gives the main numbers: gap 0
    assert all(clean > 0.9 for clean, _ in main + average), msg
    worst_main = min(robust for _, robust in main)
    worst_avg = min(robust for _, robust in average)
    assert worst_avg > worst_main + 0.1, msg  # the early exits are defended too (real gap ≥ .19)
