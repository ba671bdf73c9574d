"""RDI-Nets training objective (Eq. 1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdial.attacks import PGD
from robustdial.attacks.multi_exit import MaxAverage, average_loss, single_exit_loss, with_loss
from robustdial.methods.rdi import METHOD, RDI
from robustdial.utils import train_mode


def _direct(model, x, x_adv, y, w):
    total = 0.0
    for wi, oc, oa in zip(w, model.forward_exits(x), model.forward_exits(x_adv)):
        total = total + wi * (F.cross_entropy(oc, y) + F.cross_entropy(oa, y))
    return total


@pytest.mark.parametrize("defence", ["main", "average", "max-average"])
def test_rdi_loss_equals_direct_computation(tiny_model, tiny_data, defence):
    x, y = tiny_data
    attack = PGD(eps=0.1, alpha=0.03, steps=2, random_start=False)
    method = RDI(defence, attack=attack)
    form = {"main": with_loss(attack, single_exit_loss(-1)),
            "average": with_loss(attack, average_loss),
            "max-average": MaxAverage(lambda l: with_loss(attack, l))}[defence]
    with train_mode(tiny_model, False):
        x_adv = form(tiny_model, x, y)
    tiny_model.train()
    loss, metrics = method.loss(tiny_model, (x, y))
    ref = _direct(tiny_model, x, x_adv, y, tiny_model.exit_weights)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert tiny_model.training
    assert set(metrics) >= {"loss_clean", "loss_adv", "acc_clean", "acc_adv", "acc_clean_exit0"}
    assert METHOD is RDI


def test_rdi_weights_override_and_validation(tiny_model, tiny_data):
    x, y = tiny_data
    attack = PGD(eps=0.1, alpha=0.03, steps=1, random_start=False)
    tiny_model.train()
    # train-mode BN while attacking: x_adv does not depend on the running statistics
    # that the first call updates
    l1, _ = RDI("main", attack=attack, weights=[1, 1, 1], attack_bn_mode="train").loss(tiny_model, (x, y))
    l2, _ = RDI("main", attack=attack, weights=[2, 2, 2], attack_bn_mode="train").loss(tiny_model, (x, y))
    assert l2.item() == pytest.approx(2 * l1.item(), rel=1e-5)
    with pytest.raises(ValueError, match="3-exit"):
        RDI("main", attack=attack, weights=[1, 1]).loss(tiny_model, (x, y))
    with pytest.raises(ValueError, match="defence must be one of"):
        RDI("median")
    cfg = RDI("average", attack={"name": "pgd", "eps": "8/255", "steps": 3}).config()
    assert cfg["defence"] == "average" and cfg["attack"]["steps"] == 3


@pytest.mark.slow
def test_rdi_training_improves_every_exit_on_mnist(shared_data_root):
    from robustdial.data import batches, load_dataset
    from robustdial.models import create_model

    data = load_dataset("mnist", root=shared_data_root, split="train").subset(1024)
    torch.manual_seed(0)
    model = create_model("small_cnn", exits=True)
    method = RDI("average", attack=PGD(eps=0.1, alpha=0.05, steps=2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x0, y0 = next(batches(data, 256))
    model.train()
    first, _ = method.loss(model, (x0, y0))
    for _ in range(3):
        for x, y in batches(data, 64, shuffle=True):
            loss, _ = method.loss(model, (x, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    last, metrics = method.loss(model, (x0, y0))
    assert last.item() < 0.5 * first.item()
    assert all(metrics[f"acc_clean_exit{k}"].item() > 0.6 for k in range(model.num_exits))
