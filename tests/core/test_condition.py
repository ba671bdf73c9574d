"""Dials as module state: set, merge, validate, restore."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.condition import Choices, Condition, Interval, dial_specs, sweep
from robustdial.layers import DualBatchNorm2d, Normalize


class WidthProbe(nn.Module):
    """A module with a discrete width dial that records what it was given."""

    def __init__(self, widths=(0.5, 1.0)):
        super().__init__()
        self.widths = widths
        self.seen: list[Condition] = []

    def dial_specs(self):
        return {"width": Choices(self.widths)}

    def apply_condition(self, cond):
        self.seen.append(cond)

    def forward(self, x):
        return x


def small_net(widths=(0.5, 1.0)) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), DualBatchNorm2d(4), WidthProbe(widths))


def test_set_condition_reaches_every_module_and_merges():
    net = small_net()
    rd.set_condition(net, lam=0.3)
    rd.set_condition(net, width=0.5)
    cond = rd.get_condition(net)
    assert cond.lam == 0.3 and cond.width == 0.5
    assert net[2].seen[-1] is cond
    assert net[1]._cond is cond


def test_conditioned_restores_even_on_error():
    net = small_net()
    rd.set_condition(net, lam=0.1)
    with pytest.raises(RuntimeError):
        with rd.conditioned(net, lam=0.9, width=1.0):
            assert rd.get_condition(net).lam == 0.9
            raise RuntimeError("boom")
    assert rd.get_condition(net) == Condition(lam=0.1)
    assert net[1]._cond == Condition(lam=0.1)


def test_lambda_out_of_range_names_valid_range():
    net = small_net()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rd.set_condition(net, lam=1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rd.set_condition(net, lam=torch.tensor([0.0, -0.1]))
    assert rd.get_condition(net) == Condition()  # nothing half-applied


def test_untrained_width_lists_valid_values():
    net = small_net(widths=(0.5, 0.75, 1.0))
    with pytest.raises(ValueError, match="0.5, 0.75, 1"):
        rd.set_condition(net, width=0.3)


def test_dial_the_model_lacks_is_an_error_naming_its_dials():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="no 'lam' dial"):
        rd.set_condition(plain, lam=0.5)
    net = small_net()
    with pytest.raises(ValueError, match="no 'exit' dial.*lam"):
        rd.set_condition(net, exit=1)
    with pytest.raises(ValueError, match="unknown dial"):
        rd.set_condition(net, lambda_=0.5)


def test_dial_specs_merge_choices_to_common_values():
    net = nn.Sequential(WidthProbe((0.5, 0.75, 1.0)), WidthProbe((0.5, 1.0)))
    assert dial_specs(net)["width"] == Choices((0.5, 1.0))
    assert dial_specs(small_net())["lam"] == Interval(0.0, 1.0)


def test_noise_multiplier_eq6():
    assert Condition(lam=0.7).noise_multiplier == pytest.approx(0.7)
    assert Condition(lam=0.2, lam_th=0.5).noise_multiplier == pytest.approx(0.4)
    assert Condition(lam=0.7, lam_th=0.5).noise_multiplier == pytest.approx(0.4)
    assert Condition(lam=1.0, lam_th=0.5).noise_multiplier == pytest.approx(1.0)
    assert Condition(lam=0.0).noise_multiplier == 0.0
    with pytest.raises(ValueError, match="per-sample"):
        Condition(lam=torch.tensor([0.0, 1.0])).lam_value


def test_bn_route_is_computed_once_per_condition():
    lam = torch.tensor([0.0, 0.2, 0.0, 1.0])
    cond = Condition(lam=lam)
    route = cond.bn_route
    assert route is cond.bn_route
    idx_c, idx_a, n_c, n_a = route
    assert idx_c.tolist() == [0, 2] and idx_a.tolist() == [1, 3] and (n_c, n_a) == (2, 2)
    # clean samples first (OAT's batches): contiguous slices, no index tensors
    assert Condition(lam=lam, lam_th=0.5).bn_route == (None, None, 3, 1)
    assert Condition(lam=torch.tensor([0.0, 0.0, 1.0])).bn_route == (None, None, 2, 1)
    assert Condition(lam=torch.tensor([0.2, 0.0])).bn_route[1].tolist() == [0]
    assert Condition(lam=0.3).bn_route is None


def test_set_condition_unwraps_wrappers():
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    net = small_net()
    wrapped = Wrapper(net)
    rd.set_condition(wrapped, lam=0.4)
    assert rd.get_condition(net).lam == 0.4


def test_sweep_grid():
    assert sweep({"lam": [0, 1], "width": [0.5]}) == [{"lam": 0, "width": 0.5},
                                                       {"lam": 1, "width": 0.5}]


def test_normalize_layer():
    layer = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.rand(2, 2, 3, 3)
    out = layer(x)
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 0.5)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 0.25)
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))
