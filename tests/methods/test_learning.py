"""End-to-end learning on real data: PGD-AT beats standard training under attack."""
from __future__ import annotations

import torch
from torch import nn

from robustdial.attacks import PGD
from robustdial.data import batches, load_dataset
from robustdial.methods import PGDAT, Method, Standard
from robustdial.utils import train_mode

EPS = 0.2  # L∞ on the [0, 1] scale; digits have 17 grey levels


def digits_net() -> nn.Module:
    # (B, 1, 8, 8) -> (B, 10)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 16, 10))


def train(method: Method, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = digits_net().train()
    data = load_dataset("digits", split="train")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        for x, y in batches(data, 64, shuffle=True, generator=g, drop_last=True):
            loss, _ = method.loss(model, (x, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def accuracies(model: nn.Module) -> tuple[float, float]:
    test = load_dataset("digits", split="test")
    x, y = next(batches(test, len(test)))
    x_adv = PGD(eps=EPS, alpha=EPS / 8, steps=20)(model, x, y)
    with torch.no_grad(), train_mode(model, False):
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    return clean, robust


def test_pgd_at_is_more_robust_than_standard_on_digits():
    steps = 300
    std_clean, std_robust = accuracies(train(Standard(), steps))
    attack = PGD(eps=EPS, alpha=EPS / 4, steps=5)
    at_clean, at_robust = accuracies(train(PGDAT(lam=1.0, attack=attack), steps))
    assert std_clean > 0.9 and at_clean > 0.7  # both learn the task
    assert std_robust < 0.3  # standard training is brittle at ε = 0.2
    assert at_robust > std_robust + 0.3  # adversarial training buys real robustness
