"""BinaryConnect / Binary-Relax transforms: forward at u, gradients to float w, schedule, state."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustdial.compress.binary_relax import BinaryConnect, BinaryRelax
from robustdial.compress.metrics import sparsity_report

from _projections_by_hand import BY_HAND  # expected values never come from the library


class _Net(nn.Module):
    """Tiny residual net: stem conv, one block with a 1×1 shortcut, BN, fc."""

    def __init__(self, cin: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.shortcut = nn.Conv2d(16, 32, 1, stride=2, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4, classes)

    def forward(self, x):
        h = F.relu(self.bn(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h) + self.shortcut(h)))
        return self.fc(F.adaptive_avg_pool2d(h, 2).flatten(1))


QNAMES = ["conv1.weight", "conv2.weight"]


def _projected_copy(net, scheme):
    ref = copy.deepcopy(net)
    with torch.no_grad():
        for n in QNAMES:
            ref.get_parameter(n).copy_(BY_HAND[scheme](net.get_parameter(n)))
    return ref


@pytest.mark.parametrize("scheme", ["binary", "ternary", "4bit"])
def test_bc_forward_and_grads_equal_projected_network(scheme):
    torch.manual_seed(0)
    net = _Net()
    x, y = torch.rand(6, 1, 12, 12), torch.randint(0, 10, (6,))
    ref = _projected_copy(net, scheme)
    floats = {n: p.detach().clone() for n, p in net.named_parameters()}
    t = BinaryConnect(scheme)
    t.on_train_start(net, None)
    t.before_forward(net)
    out = net(x)
    F.cross_entropy(out, y).backward()
    t.after_backward(net)
    ref_out = ref(x)
    F.cross_entropy(ref_out, y).backward()
    assert torch.allclose(out, ref_out, atol=1e-6)
    for n, p in net.named_parameters():
        assert torch.equal(p, floats[n]), f"{n} float weight not restored"
        assert p.grad is not None and torch.allclose(p.grad, ref.get_parameter(n).grad, atol=1e-6)
    # an SGD step moves the FLOAT weights by −lr·∇L(u)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    opt.step()
    for n in QNAMES:
        expected = floats[n] - 0.1 * ref.get_parameter(n).grad
        assert torch.allclose(net.get_parameter(n), expected, atol=1e-6)


def test_layer_rule_leaves_shortcut_bn_fc_float():
    net = _Net()
    t = BinaryConnect("binary")
    assert t.parameter_names(net) == QNAMES
    before = copy.deepcopy(net.state_dict())
    t.finalize(net)
    sd = net.state_dict()
    for k in ("shortcut.weight", "fc.weight", "bn.weight", "bn2.weight"):
        assert torch.equal(sd[k], before[k])
    assert not torch.equal(sd["conv1.weight"], before["conv1.weight"])


def test_br_relaxed_u_and_eta_schedule():
    torch.manual_seed(0)
    net = _Net()
    w = net.conv2.weight.detach().clone()
    t = BinaryRelax("binary", rho=2.0, eta0=1.0, cutoff_epoch=2)
    assert t.eta == 1.0
    t.before_forward(net)
    q = BY_HAND["binary"](w)
    assert torch.allclose(net.conv2.weight, (q + w) / 2)
    t.after_backward(net)
    assert torch.equal(net.conv2.weight, w)
    t.on_epoch_end(0, net, None)
    assert t.eta == 2.0
    t.before_forward(net)
    assert torch.allclose(net.conv2.weight, (2 * q + w) / 3)
    t.after_backward(net)
    t.on_epoch_end(1, net, None)
    assert t.eta is None  # cut-off: BinaryConnect from now on
    t.before_forward(net)
    assert torch.allclose(net.conv2.weight, q)
    t.after_backward(net)


def test_state_dict_round_trip_and_scheme_mismatch():
    t = BinaryRelax("ternary", rho=1.1, cutoff_epoch=5)
    for e in range(3):
        t.on_epoch_end(e, None, None)
    state = t.state_dict()
    t2 = BinaryRelax("ternary", rho=1.1, cutoff_epoch=5)
    t2.load_state_dict(state)
    assert t2.epochs_done == 3 and t2.eta == pytest.approx(1.1 ** 3) == t.eta
    with pytest.raises(ValueError, match="same scheme"):
        BinaryRelax("binary").load_state_dict(state)


def test_applied_context_restores_float_weights():
    net = _Net()
    w = net.conv1.weight.detach().clone()
    t = BinaryRelax("4bit")
    with t.applied(net):
        assert torch.allclose(net.conv1.weight, BY_HAND["4bit"](w), atol=1e-6, rtol=1e-6)
    assert torch.equal(net.conv1.weight, w)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="rho"):
        BinaryRelax(rho=0.5)
    with pytest.raises(ValueError, match="cutoff_epoch"):
        BinaryRelax(cutoff_epoch=-1)
    with pytest.raises(ValueError, match="no layer to quantize"):
        BinaryConnect().on_train_start(nn.Sequential(nn.Linear(3, 2)), None)


def _train(net, t, x, y, epochs, lr=0.05, bs=64):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    t.on_train_start(net, opt)
    for e in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(e))
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            t.before_forward(net)
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            t.after_backward(net)
            opt.step()
            t.after_step(net, opt)
        t.on_epoch_end(e, net, opt)


@pytest.mark.parametrize("scheme,max_values", [("binary", 2), ("ternary", 3), ("4bit", 15),
                                               (3, 7)])
def test_br_finalized_model_has_at_most_2_pow_bits_values(shared_data_root, scheme, max_values):
    from robustdial.data import load_dataset

    data = load_dataset("mnist", root=shared_data_root, split="train").subset(1024)
    x = data.images.float().div(255)[:, :, ::2, ::2].contiguous()  # 14×14 keeps it fast
    y = data.labels
    torch.manual_seed(0)
    net = _Net()
    t = BinaryRelax(scheme, rho=1.05, cutoff_epoch=2)
    _train(net, t, x, y, epochs=4)
    assert t.eta is None
    t.finalize(net.eval())
    rows = sparsity_report(net)[:-1]
    assert [r["name"] for r in rows] == QNAMES
    for r in rows:
        assert r["distinct_values"] <= max_values, r
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    assert acc > 0.5, f"quantized net did not learn ({acc:.2f})"
