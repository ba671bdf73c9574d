"""Expected early-exit cost and exit histograms."""
from __future__ import annotations

import pytest
import torch

from robustdial.cost.early_exit import (
    exit_costs_mflops,
    exit_histogram,
    expected_cost,
    plot_exit_histograms,
)


def test_expected_cost_is_the_exit_weighted_mean():
    c = expected_cost([1, 1, 2], [1.0, 2.0, 4.0])
    assert c["mflops"] == pytest.approx((1 + 2 + 8) / 4)
    assert c["saving"] == pytest.approx(1 - 2.75 / 4)
    assert c["fractions"] == [0.25, 0.25, 0.5]
    assert expected_cost([0, 0, 5], [1.0, 2.0, 4.0])["saving"] == 0.0


def test_histogram_and_model_costs(tiny_model):
    assert exit_histogram(torch.tensor([0, 2, 2, 1, 2]), 3) == [1, 1, 3]
    with pytest.raises(ValueError):
        exit_histogram(torch.tensor([3]), 3)
    costs = exit_costs_mflops(tiny_model)
    # conv MACs of the tiny net: 12·12·4·9, + 6·6·8·36, + 6·6·8·72
    assert costs == pytest.approx([5184 / 2**20, 15552 / 2**20, 36288 / 2**20])


def test_plot_writes_a_png(tmp_path):
    fig = plot_exit_histograms({"clean": [5, 3, 2], "adv": [1, 2, 7]}, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert len(fig.axes[0].patches) == 6
