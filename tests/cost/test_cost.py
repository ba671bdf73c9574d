"""Cost models: MACs by formula, FLOPs = 2·MACs, storage convention, FLOAT Eq. 7–9."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustdial.cost import (HardwareModel, conv_delay, cost_report, count_flops, count_macs,
                             count_params, storage_bytes)
from robustdial.layers import DualBatchNorm2d


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_macs_match_the_formula():
    rep = count_macs(_net(), (3, 32, 32))
    assert rep.conv_macs == 3 * 8 * 9 * 32 * 32 + 8 * 16 * 9 * 16 * 16
    assert rep.linear_macs == 16 * 10
    assert rep.mflops_rdi == pytest.approx(rep.conv_macs / 2**20)


def test_flops_are_two_per_mac_for_conv_and_linear():
    net = _net()
    rep = count_macs(net, (3, 32, 32))
    flops = count_flops(net, (3, 32, 32))
    assert flops == pytest.approx(2 * rep.macs, rel=0.01)  # pooling/BN are not counted


def test_density_effective_macs_scale_with_zeros():
    net = _net()
    with torch.no_grad():
        w = net[3].weight
        w.view(-1)[: w.numel() // 2] = 0
    dense = count_macs(net, (3, 32, 32))
    sparse = count_macs(net, (3, 32, 32), density_effective=True)
    assert sparse.layers[1].macs == pytest.approx(dense.layers[1].macs / 2)
    assert sparse.layers[0].macs == dense.layers[0].macs


def test_storage_neglects_second_bn_and_noise_scale():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    dual = nn.Sequential(nn.Conv2d(3, 4, 3), DualBatchNorm2d(4))
    alpha = nn.Parameter(torch.tensor(0.25))
    alpha._no_weight_decay = True
    dual.register_parameter("alpha", alpha)
    assert count_params(dual).total == count_params(plain).total + 8 + 1
    assert storage_bytes(dual, 8) == storage_bytes(plain, 8) == count_params(plain).total
    assert storage_bytes(plain, 4) == count_params(plain).total / 2
    with pytest.raises(ValueError):
        storage_bytes(plain, 0)


def test_delay_equations_by_hand():
    hw = HardwareModel()
    k, ci, co, ho, wo = 3, 64, 64, 32, 32
    weights = k * k * ci * co
    read = math.ceil(weights / 8) * 9.0
    mult = math.ceil(weights / 175)
    assert conv_delay(k, ci, co, ho, wo, kind="plain", hw=hw) == read + mult * ho * wo * 4.0
    assert conv_delay(k, ci, co, ho, wo, kind="float", hw=hw) == read + mult * (1 + ho * wo) * 4.0
    film = 2 * co + 4 * co * co
    assert conv_delay(k, ci, co, ho, wo, kind="oat", hw=hw) == (
        math.ceil((weights + film) / 8) * 9.0 + mult * ho * wo * 4.0 + math.ceil(film / 175) * 4.0)
    with pytest.raises(ValueError):
        conv_delay(k, ci, co, ho, wo, kind="fancy")


def test_float_delay_overhead_is_small_and_oat_larger():
    # The ordering FLOAT's Fig. 7(c) shows: plain ≤ FLOAT < OAT for deep layers.
    for ci, co, hw_ in [(64, 64, 32), (256, 256, 8), (512, 512, 4)]:
        plain = conv_delay(3, ci, co, hw_, hw_, kind="plain")
        flt = conv_delay(3, ci, co, hw_, hw_, kind="float")
        oat = conv_delay(3, ci, co, hw_, hw_, kind="oat")
        assert plain < flt < oat
        assert flt / plain < 1.1


def test_cost_report_keys_and_latency():
    rep = cost_report(_net(), (3, 32, 32), latency=True, batch_size=4)
    assert rep["conditioning"] == "plain"
    assert rep["macs_per_image"] == rep["macs_per_image_density_effective"]
    assert rep["weight_density"] == 1.0
    assert rep["latency"]["median_s"] > 0
    assert rep["delay"]["normalized_max"] == 1.0


def test_cost_command_reports_quantized_storage(tmp_path, capsys):
    import json

    from robustdial.cli import main

    out = tmp_path / "cost.json"
    rc = main(["cost", "--model", "small_cnn", "--option", "in_channels=1", "--input-shape", "1,28,28",
               "--quantized", "binary", "--json", str(out)])
    assert rc in (0, None)
    rep = json.loads(out.read_text())
    q = rep["quantized"]
    # SmallCNN's four convs (64,800 weights) go to 1 bit + one fp32 scale each; fc layers stay fp32
    conv_weights = 1 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9
    assert q["float32_bytes"] - q["storage_bytes"] == (32 * conv_weights - (conv_weights + 4 * 32)) / 8
    assert rep["cost"]["params_total"] == 312202
    assert "Binary-Relax layer rule" in capsys.readouterr().out


@pytest.mark.parametrize("dials", [{}, {"lam": 0.7}])
def test_oat_report_counts_every_film_conditioned_conv(dials):
    """Each BN+FiLM follows a conv; the delay model charges OAT's FiLM there (Eq. 9).

    At a scalar λ NormFiLM folds FiLM into the BN without calling FiLM.forward;
    the report must still see the FiLM (it did not once: OAT's delay equalled plain).
    """
    from robustdial.cost.summary import film_conditioned_convs
    from robustdial.layers.film import NormFiLM

    import robustdial as rd

    model = rd.create_model("preact_resnet20", conditioning="oat")
    n_norm_film = sum(isinstance(m, NormFiLM) for m in model.modules())
    convs = film_conditioned_convs(model, (3, 32, 32), dials)
    assert n_norm_film > 0 and len(convs) >= n_norm_film - 1  # the first BN comes before a conv
    rep = cost_report(model, (3, 32, 32), dials=dials)
    assert rep["conditioning"] == "oat" and rep["delay"]["normalized_max"] > 1.1


def test_cost_report_of_a_model_without_convs():
    # the delay model times conv layers only; a linear classifier has none (it crashed on min([]))
    from torch import nn

    from robustdial.cost import cost_report

    rep = cost_report(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (1, 8, 8))
    assert rep["params_total"] == 650 and rep["macs_per_image"] == 640
    assert rep["delay"]["layers"] == 0 and rep["delay"]["normalized_max"] is None
