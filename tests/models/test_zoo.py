"""Every registered architecture: parameter counts from the papers, shapes, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustdial.condition import set_condition
from robustdial.models import create_model, list_models

# Parameter counts (10 classes) from the papers / REFERENCE.md; resnet18, the
# pre-act 32/44 and WRN-34-10 are the standard architectures' known counts.
PARAMS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "preact_resnet20": 272_282,
    "preact_resnet32": 466_714,
    "preact_resnet44": 661_146,
    "preact_resnet56": 855_578,
    "preact_resnet110": 1_730_522,
    "resnet38": 564_122,
    "wrn16_8": 10_961_370,
    "wrn40_2": 2_243_546,
    "wrn34_10": 46_160_474,
    "mobilenet_v2": 2_296_922,
    "small_cnn": 312_202,
    "mini_cnn": 283_386,  # not from a paper: the demo's backbone (1 channel, 10 classes)
}
# Conditional variants (REFERENCE.md, OAT section).
OAT_PARAMS = {
    ("resnet34", 128, True): 33_355_466,
    ("resnet34", 1, False): 31_403_978,
    ("wrn16_8", 128, True): 16_228_922,
    ("wrn40_2", 128, True): 3_886_394,
}
HEAVY = {"wrn34_10"}  # forward/backward marked slow (~5 s on one CPU thread)
LIGHT = ["preact_resnet20", "resnet38", "mobilenet_v2", "wrn40_2"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def image(name: str, batch: int = 2) -> torch.Tensor:
    if name == "small_cnn":
        return torch.rand(batch, 1, 28, 28)
    if name == "mini_cnn":
        return torch.rand(batch, 1, 14, 14)
    return torch.rand(batch, 3, 32, 32)


def test_registry_has_every_architecture():
    assert set(PARAMS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count(name):
    assert n_params(create_model(name)) == PARAMS[name]


@pytest.mark.parametrize("key", sorted(OAT_PARAMS))
def test_oat_param_count(key):
    name, d, dual = key
    model = create_model(name, conditioning="oat", embed_dim=d, dual_bn=dual)
    assert n_params(model) == OAT_PARAMS[key]


def test_oat_resnet34_has_33_film_layers():
    from robustdial.layers.film import FiLM

    model = create_model("resnet34", conditioning="oat")
    assert sum(isinstance(m, FiLM) for m in model.modules()) == 33


def test_num_classes_sets_the_output_width():
    model = create_model("preact_resnet20", num_classes=7)
    assert model(image("preact_resnet20")).shape == (2, 7)


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


@pytest.mark.parametrize("name", _params(list_models()))
def test_forward_backward(name):
    model = create_model(name)
    if name == "small_cnn":  # the authors zero-init the last fc, which blocks gradients below it
        nn.init.normal_(model.heads[-1].fc3.weight, std=0.1)
    x = image(name).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LIGHT)
def test_cifar_models_also_take_28x28_grayscale(name):
    model = create_model(name, in_channels=1).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_small_cnn_zero_inits_the_last_layer_like_the_authors():
    model = create_model("small_cnn").eval()
    assert torch.equal(model(image("small_cnn")), torch.zeros(2, 10))


def test_small_cnn_rejects_other_sizes_with_a_clear_error():
    model = create_model("small_cnn")
    with pytest.raises(ValueError, match="28×28"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="in_channels"):
        model(torch.rand(2, 3, 28, 28))


@pytest.mark.parametrize("name", ["preact_resnet20", "resnet38", "mobilenet_v2", "small_cnn"])
def test_eval_forward_is_deterministic_and_batch_independent(name):
    model = create_model(name).eval()
    x = image(name, batch=3)
    with torch.no_grad():
        full = model(x)
        assert torch.equal(full, model(x))
        torch.testing.assert_close(model(x[:1]), full[:1], rtol=1e-4, atol=1e-5)


def test_float_conditioning_builds_noisy_layers_everywhere():
    model = create_model("resnet38", conditioning="float", exits=True)
    from robustdial.layers.noisy import NoisyConv2d, NoisyLinear

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs and all(isinstance(m, NoisyConv2d) for m in convs)
    assert linears and all(isinstance(m, NoisyLinear) for m in linears)
    set_condition(model, lam=1.0)
    assert model(image("resnet38")).shape == (2, 10)


def test_bad_architecture_arguments_raise():
    from robustdial.models.preact_resnet import PreActResNet
    from robustdial.models.wrn import WideResNet
    from robustdial.models import plain_layer_set

    with pytest.raises(ValueError, match="6n\\+2"):
        PreActResNet(plain_layer_set(), 21)
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(plain_layer_set(), 17, 2)
    with pytest.raises(TypeError, match="unknown option"):
        create_model("resnet18", exits=True)


def test_small_cnn_batch_norm_variant():
    """``batch_norm=True``: conv (no bias) → BN before each ReLU; dual BN + FiLM under OAT."""
    from robustdial.layers import DualBatchNorm2d
    from robustdial.layers.film import FiLM

    plain = create_model("small_cnn", batch_norm=True)
    bns = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == [32, 32, 64, 64]
    # 312,202 − 192 conv biases + 4 BNs × 2 × C (192 channels)
    assert sum(p.numel() for p in plain.parameters()) == 312_202 - 192 + 2 * 192
    assert all(m.bias is None for m in plain.modules() if isinstance(m, nn.Conv2d))
    oat = create_model("small_cnn", conditioning="oat", batch_norm=True)
    assert sum(isinstance(m, FiLM) for m in oat.modules()) == 4
    assert sum(isinstance(m, DualBatchNorm2d) for m in oat.modules()) == 4
    flt = create_model("small_cnn", conditioning="float", batch_norm=True)
    assert sum(isinstance(m, DualBatchNorm2d) for m in flt.modules()) == 4
    # the dual BN routes: a clean (λ=0) and an adversarial (λ=1) forward of the
    # same batch update different running statistics
    flt.train()
    x = image("small_cnn", batch=8)
    set_condition(flt, lam=0.0)
    flt(x)
    dbn = next(m for m in flt.modules() if isinstance(m, DualBatchNorm2d))
    assert dbn.bn_c.num_batches_tracked == 1 and dbn.bn_a.num_batches_tracked == 0
    set_condition(flt, lam=1.0)
    flt(x)
    assert dbn.bn_a.num_batches_tracked == 1
    # the default (paper) network is unchanged, exits too
    assert sum(p.numel() for p in create_model("small_cnn", exits=True).parameters()) == 836_846
