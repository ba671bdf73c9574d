"""Expected cost of input-adaptive (early-exit) inference and exit histograms.

RDI-Nets (Hu et al., ICLR 2020), Sec. 4 and Tables 2–4: "Average MFlops" is
the per-image cost averaged over a data set, ``Σ_k P(exit k)·cost_k``, where
``cost_k`` is the conv multiply-accumulates (MACs) of the backbone up to exit
``k`` plus exit ``k``'s own branch (earlier branches not added), and one
"MFlop" is 2²⁰ MACs (linear layers ignored). "Computation saving" is
``1 − average / cost_final``, the final exit's cost being the backbone's.
Every number here is labelled with that convention.

That convention leaves out the heads a sample passes before it exits, which
adaptive inference must run to decide. ``convention="executed"`` counts them
(cost of exit k = backbone up to k + heads 0…k); its saving is against the
same backbone cost, so it is what a wall-clock measurement can reach.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "MFLOP_MACS",
    "exit_costs_mflops",
    "exit_histogram",
    "expected_cost",
    "plot_exit_histograms",
]

MFLOP_MACS = 2**20
"""MACs per "MFlop" in the RDI-Nets tables (conv MACs / 2²⁰)."""


def exit_costs_mflops(model: nn.Module, convention: str = "rdi") -> list[float]:
    """Per-exit cost in "MFlops" (conv MACs / 2²⁰) from ``model.exit_macs(convention)``.

    Args:
        model: a multi-exit model.
        convention: ``"rdi"`` (the papers') or ``"executed"`` (earlier heads added).
    """
    fn = getattr(model, "exit_macs", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} has no exit_macs(); build a multi-exit "
                        "model with create_model(name, exits=True)")
    return [float(m) / MFLOP_MACS for m in fn(convention)]


def exit_histogram(exit_index: Tensor, num_exits: int) -> list[int]:
    """Number of samples that left at each exit (index 0 = earliest head)."""
    idx = exit_index.reshape(-1).long().cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_exits):
        raise ValueError(f"exit indices must lie in [0, {num_exits - 1}], got "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    return torch.bincount(idx, minlength=num_exits).tolist()


def expected_cost(counts: Sequence[int], costs_mflops: Sequence[float], *,
                  backbone_mflops: float | None = None, convention: str = "rdi") -> dict[str, Any]:
    """Average cost per image and saving against the backbone (final exit).

    Args:
        counts: samples per exit (:func:`exit_histogram`).
        costs_mflops: per-exit cost (:func:`exit_costs_mflops`).
        backbone_mflops: cost of the backbone alone (final exit only); default
            ``costs_mflops[-1]``, right for the ``"rdi"`` convention. Pass
            the RDI final-exit cost with ``"executed"`` costs.
        convention: the name of the costs' convention, recorded in the result.

    Returns:
        dict with ``mflops`` (average conv MACs / 2²⁰ per image), ``macs``
        (average conv MACs per image), ``backbone_mflops`` (final exit's cost),
        ``saving`` (fraction in [0, 1], ``1 − mflops / backbone_mflops``),
        ``fractions`` (P(exit k)) and ``counts``.
    """
    if len(counts) != len(costs_mflops):
        raise ValueError(f"{len(counts)} exit counts but {len(costs_mflops)} exit costs")
    n = sum(counts)
    if n == 0:
        raise ValueError("no samples counted; the exit histogram is empty")
    frac = [c / n for c in counts]
    mflops = sum(f * c for f, c in zip(frac, costs_mflops))
    backbone = float(costs_mflops[-1] if backbone_mflops is None else backbone_mflops)
    return {
        "mflops": mflops,
        "macs": mflops * MFLOP_MACS,
        "backbone_mflops": backbone,
        "saving": 1.0 - mflops / backbone,
        "fractions": frac,
        "counts": list(counts),
        "convention": ("conv MACs / 2^20 per image (RDI-Nets 'MFlops')" if convention == "rdi"
                       else f"conv MACs / 2^20 per image, {convention} (earlier exit heads included)"),
    }


def plot_exit_histograms(histograms: Mapping[str, Sequence[int]], path: str | Path | None = None,
                         *, title: str = "Exit distribution") -> Any:
    """Grouped bar chart of the fraction of samples leaving at each exit (RDI-Nets Fig. 2).

    Args:
        histograms: label (``"clean"``, ``"adv: max-average"`` …) -> counts per exit.
        path: where to save the figure (PNG/PDF by suffix); ``None``: do not save.
        title: figure title.

    Returns:
        The ``matplotlib.figure.Figure`` (built with the object API, Agg canvas).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not histograms:
        raise ValueError("no histograms to plot")
    n_exits = len(next(iter(histograms.values())))
    fig = Figure(figsize=(max(4.0, 1.2 + 0.25 * len(histograms) * n_exits), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(histograms)
    for j, (label, counts) in enumerate(histograms.items()):
        if len(counts) != n_exits:
            raise ValueError(f"histogram {label!r} has {len(counts)} exits, expected {n_exits}")
        total = max(sum(counts), 1)
        xs = [k + (j - (len(histograms) - 1) / 2) * width for k in range(n_exits)]
        ax.bar(xs, [100.0 * c / total for c in counts], width=width, label=label)
    ax.set_xticks(range(n_exits))
    ax.set_xticklabels([f"exit {k + 1}" if k < n_exits - 1 else "final" for k in range(n_exits)])
    ax.set_ylabel("samples exiting (%)")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(path), dpi=120, bbox_inches="tight")  # keeps the outside legend
    return fig
