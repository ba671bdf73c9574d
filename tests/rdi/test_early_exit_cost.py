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


@pytest.mark.parametrize("name", ["small_cnn", "resnet38"])
def test_executed_convention_equals_the_macs_adaptive_inference_runs(name):
    """Σ_k count_k · executed_cost_k == conv MACs counted by hooks during adaptive_forward."""
    from robustdial.models import create_model
    from robustdial.models.early_exit import adaptive_forward
    from robustdial.models.multi_exit import _conv_macs, conv_macs_hook_targets

    torch.manual_seed(0)
    model = create_model(name, exits=True).eval()
    shape = (1, 28, 28) if name == "small_cnn" else (3, 32, 32)
    x = torch.rand(24, *shape)
    with torch.no_grad():
        outs = model.forward_exits(x)
    from robustdial.models.early_exit import entropy

    # thresholds at the median entropy of each head: samples leave at every exit
    thr = [float(entropy(o).median()) for o in outs[:-1]]
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + _conv_macs(m, i[0], o)
                                                                      * o.shape[0]))
             for m in conv_macs_hook_targets(model)]
    try:
        with torch.no_grad():
            _, idx = adaptive_forward(model, x, thr)
    finally:
        for h in hooks:
            h.remove()
    counts = exit_histogram(idx, model.num_exits)
    assert sum(c > 0 for c in counts) >= 2
    run = model.exit_macs("executed")
    rdi = model.exit_macs()
    assert sum(c * m for c, m in zip(counts, run)) == total[0]
    assert run[0] == rdi[0] and run[-1] >= rdi[-1] and all(r >= p for r, p in zip(run, rdi))
    cost = expected_cost(counts, exit_costs_mflops(model, "executed"),
                         backbone_mflops=exit_costs_mflops(model)[-1], convention="executed")
    assert cost["saving"] == pytest.approx(1 - total[0] / (len(x) * rdi[-1]))
    assert "executed" in cost["convention"]
    with pytest.raises(ValueError, match="convention"):
        model.exit_macs("paper")
