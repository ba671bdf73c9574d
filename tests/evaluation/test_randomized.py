"""EOT attacks and averaged predictions for randomized models; the BR attack suite."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustdial.attacks import CW, FGSM, PGD
from robustdial.evaluation.br_suite import br_attack_suite
from robustdial.evaluation.randomized import EOT, AveragedLogits, eot_loss, predict_averaged


class _Noisy(nn.Module):
    """Linear classifier with Gaussian noise added to its input features (always on)."""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(12, 4)
        self.sigma = sigma

    def forward(self, x):
        h = x.flatten(1)
        return self.lin(torch.tanh(h + self.sigma * torch.randn_like(h)))


def _xy(b=8):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 3, 2, 2, generator=g), torch.randint(0, 4, (b,), generator=g)


def test_eot_loss_is_mean_of_sample_losses():
    model, (x, y) = _Noisy(), _xy()
    torch.manual_seed(5)
    got = eot_loss(4)(model, x, y)
    torch.manual_seed(5)
    want = torch.stack([F.cross_entropy(model(x), y, reduction="none") for _ in range(4)]).mean(0)
    assert torch.allclose(got, want, atol=1e-6)


def test_eot_gradient_is_closer_to_the_expected_gradient():
    model, (x, y) = _Noisy(sigma=1.0), _xy()

    def grad(n):
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(eot_loss(n)(model, xa, y).sum(), xa)
        return g.flatten()

    torch.manual_seed(0)
    truth = grad(2000)
    err1 = torch.stack([(grad(1) - truth).norm() for _ in range(10)]).mean()
    err50 = torch.stack([(grad(50) - truth).norm() for _ in range(10)]).mean()
    assert err50 < 0.4 * err1


def test_eot_on_deterministic_model_equals_plain_attack():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x, y = _xy()
    for attack in (PGD(eps=0.1, alpha=0.02, steps=5, random_start=False), FGSM(eps=0.1),
                   CW(steps=5, lr=0.01, binary_search_steps=1)):
        plain = attack(model, x, y)
        eot = EOT(attack, samples=3)
        assert eot.uses_loss == (not isinstance(attack, CW))
        assert torch.allclose(eot(model, x, y), plain, atol=1e-5), attack
    assert attack.loss is None  # the wrapped attack itself is unchanged


def test_eot_pgd_stays_in_ball_and_mode_untouched():
    model, (x, y) = _Noisy(), _xy()
    model.train()
    x_adv = EOT(PGD(eps=0.05, alpha=0.01, steps=3), samples=4)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training


def test_predict_averaged_reduces_variance_and_matches_deterministic():
    model, (x, _) = _Noisy(sigma=1.0), _xy()
    single = torch.stack([model(x) for _ in range(20)]).detach()
    avg = torch.stack([predict_averaged(model, x, 16) for _ in range(20)])
    assert avg.var(0).mean() < 0.2 * single.var(0).mean()
    det = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    assert torch.allclose(predict_averaged(det, x, 5), det(x), atol=1e-6)
    assert isinstance(AveragedLogits(det, 2)(x), torch.Tensor)
    with pytest.raises(ValueError, match="positive integer"):
        predict_averaged(det, x, 0)


def test_br_attack_suite_settings():
    suite = br_attack_suite(0.031)
    assert list(suite) == ["fgsm", "ifgsm", "cw", "pgd20"]
    ifgsm = suite["ifgsm"]
    assert (ifgsm.eps, ifgsm.alpha, ifgsm.steps, ifgsm.random_start) == (0.031, 1 / 255, 20, False)
    cw = suite["cw"]  # binary-searched, minimal distortion (see br_suite's doc)
    assert (cw.c, cw.lr, cw.steps, cw.binary_search_steps) == (1.0, 0.05, 100, 5)
    assert suite["fgsm"].eps == 0.031
    wrapped = br_attack_suite(dataset="mnist", eps=None, eot_samples=4, cw=False)
    assert list(wrapped) == ["fgsm", "ifgsm", "pgd20"]
    assert all(isinstance(a, EOT) and a.samples == 4 for a in wrapped.values())
    with pytest.raises(ValueError, match="pass eps"):
        br_attack_suite(None)


def test_cw_in_the_br_suite_is_informative():
    """C&W with binary search fools every sample of a trained model and reports the L2 it needed."""
    import robustdial as rd
    from robustdial.evaluation.br_suite import cw_distortion

    torch.manual_seed(0)
    train = rd.load_dataset("digits", split="train")
    x, y = train.images[:64].float() / 255, train.labels[:64]
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        clean = (net(x).argmax(1) == y)
    x_adv = br_attack_suite(0.031)["cw"](net, x, y)
    with torch.no_grad():
        fooled = net(x_adv).argmax(1) != y
    assert clean.float().mean() > 0.9 and fooled[clean].float().mean() > 0.95  # ≈ 0 % accuracy
    d = cw_distortion(x, x_adv, fooled & clean)
    assert 0 < d["median_l2"] < 3.0 and d["success"] >= 0.95 * int(clean.sum())
