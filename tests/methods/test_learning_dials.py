"""PGD-AT beats standard training, and OAT and FLOAT learn a real λ dial, on the 8×8 digits.

What the papers promise (OAT, Wang et al. 2020, Sec. 4.1, Fig. 4; FLOAT, Kundu
et al. 2023, Table 1): one model whose λ = 1 operating point is robust — close
to a dedicated PGD-AT model — and whose λ = 0 point gives the robustness up for
clean accuracy; OAT's FiLM also separates the λ values that share BN_a. Each
model is trained once (module fixtures; the PGD-AT and standard baselines are
shared through ``_learning_nets.reference``), seed 0, and evaluated with
PGD-20 at ε = 0.3 on the 359 test digits.

Margins: numbers measured over seeds 0, 1, 2 (the test uses seed 0) for the
real method and for seeded broken variants; see the comment at each bar.
"""
from __future__ import annotations

import pytest

from robustdial.methods import FLOAT, OAT

from _learning_nets import accuracies, digits_net, reference, train, train_attack

EPS = 0.3  # L∞, [0, 1] scale: large enough that λ = 0 (like standard training) is not robust
STEPS = 600  # twice PGD-AT's 300: one model learns two operating points (FLOAT attacks half of
#              each batch, OAT gives λ = 1 to a sixth of it)


@pytest.fixture(scope="module")
def pgd_at():
    return reference("pgd_at", EPS)  # (clean, robust)


def test_pgd_at_is_more_robust_than_standard(pgd_at):
    (std_clean, std_robust), (at_clean, at_robust) = reference("standard", EPS), pgd_at
    # seeds 0/1/2: standard (.989, .000) (.983, .000) (.983, .000);
    #              PGD-AT   (.928, .418) (.939, .457) (.939, .415); PGD-AT with λ forced to 0 = standard
    assert std_clean > 0.95 and at_clean > 0.85  # both learn the task
    assert std_robust < 0.05  # standard training is brittle at ε = 0.3
    assert at_robust > std_robust + 0.3  # adversarial training buys real robustness


@pytest.fixture(scope="module")
def oat():
    # the paper's λ set S1 = {0, .1, .2, .3, .4, 1}: ⌈B/6⌉ samples at λ = 0, the rest uniform on the others
    model = train(digits_net("oat", seed=0), OAT(attack=train_attack(EPS)), STEPS, seed=0)
    return accuracies(model, EPS, [{"lam": 0.0}, {"lam": 0.1}, {"lam": 1.0}])


@pytest.fixture(scope="module")
def float_():
    model = train(digits_net("float", seed=0), FLOAT(attack=train_attack(EPS)), STEPS, seed=0)
    return accuracies(model, EPS, [{"lam": 0.0}, {"lam": 1.0}])


def _check_dial(name, lam0, lam1, pgd_at):
    (clean0, robust0), (clean1, robust1) = lam0, lam1
    pgd_clean, pgd_robust = pgd_at
    msg = (f"{name}: λ=0 {clean0:.3f}/{robust0:.3f}, λ=1 {clean1:.3f}/{robust1:.3f}, "
           f"PGD-AT {pgd_clean:.3f}/{pgd_robust:.3f} (clean/robust)")
    assert min(clean0, clean1) > 0.9, msg  # both ends of the dial classify
    assert robust1 > robust0 + 0.15, msg  # λ = 1 buys robustness …
    assert clean0 >= clean1, msg  # … that λ = 0 trades back for clean accuracy
    assert robust1 > 0.65 * pgd_robust, msg  # λ = 1 is close to a dedicated PGD-AT model
    assert clean1 > pgd_clean - 0.02, msg


def test_oat_lambda_dial(oat, pgd_at):
    # (clean, robust) at λ = 0 / 0.1 / 1; PGD-AT (.928, .418) (.939, .457) (.939, .415) — seeds 0/1/2:
    #   real OAT            (.983 .095) (.986 .287) (.975 .340) | (.989 .058) (.983 .228) (.975 .337)
    #                       | (.983 .086) (.981 .298) (.975 .348)
    #   broken: FiLM ignores λ (dual BN still routed): λ=.1 = λ=1 = (.981 .315) (.986 .276) (.972 .315)
    #   broken: loss weights ignore λ (0.5·CE + 0.5·CE_adv): robust λ=1 − λ=.1 = .000 / −.003 / −.009
    #   broken: one λ (= 1) for every sample: λ=0 clean .850 < λ=1 clean .967
    #   broken: no attack (x_adv = x): robust .000 at every λ
    lam0, lam01, lam1 = oat
    _check_dial("OAT", lam0, lam1, pgd_at)
    # λ is a dial, not a switch: FiLM moves the operating point between the λ = 0.1 and λ = 1
    # samples that share BN_a (real gap .053 / .109 / .050; both broken variants above: ≤ 0)
    assert lam1[1] > lam01[1] + 0.025, f"OAT robust at λ = 0.1 {lam01[1]:.3f} vs λ = 1 {lam1[1]:.3f}"
    assert lam01[0] >= lam1[0], f"OAT clean at λ = 0.1 {lam01[0]:.3f} vs λ = 1 {lam1[0]:.3f}"


def test_float_lambda_dial(float_, pgd_at):
    # (clean, robust) at λ = 0 / 1 — seeds 0/1/2:
    #   real FLOAT          (.978 .000) (.953 .315) | (.986 .000) (.955 .334) | (.983 .008) (.953 .306)
    #   broken: noise off in training     λ=1 (.950 .240) (.942 .212) (.955 .184): robust < 0.65·PGD-AT
    #   broken: clean half routed at λ=1  λ=0 (.571 .011), λ=1 (.975 .351): clean λ=0 < λ=1
    #   broken: no attack (x_adv = x)     robust .000 at both ends
    _check_dial("FLOAT", *float_, pgd_at)
