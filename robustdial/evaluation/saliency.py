"""Jacobian saliency maps ∇ₓ L at several dial settings (OAT Fig. 5, FLOAT-style visual check).

Adversarially trained models tend to have input gradients that look like the
object (Tsipras et al., ICLR 2019); a dial model should show the transition from
noisy (λ = 0) to object-aligned (λ = 1) gradients. Maps are
``max_c |∂CE(f(x), y)/∂x_c|`` per pixel, normalised to [0, 1] per image.
Figures use ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdial.condition import conditioned
from robustdial.utils import train_mode

from .result import condition_label

__all__ = ["plot_saliency", "saliency_maps"]


def saliency_maps(model: nn.Module, x: Tensor, y: Tensor,
                  conditions: Sequence[dict[str, Any]]) -> Tensor:
    """Input-gradient saliency of the cross-entropy at each condition (eval-mode BN).

    Args:
        model: classifier on ``x``'s device.
        x: (N, C, H, W) images in [0, 1].
        y: (N,) labels.
        conditions: dial dicts, e.g. ``[{"lam": 0.0}, {"lam": 1.0}]``.

    Returns:
        (len(conditions), N, H, W) maps in [0, 1] (per image max-normalised).
    """
    maps = []
    with train_mode(model, False), torch.enable_grad():
        for cond in conditions:
            ctx = conditioned(model, **cond) if cond else contextlib.nullcontext()
            with ctx:
                xi = x.detach().clone().requires_grad_(True)
                loss = F.cross_entropy(model(xi), y, reduction="sum")
                (g,) = torch.autograd.grad(loss, xi)
            m = g.abs().amax(dim=1)  # (N, H, W)
            m = m / m.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
            maps.append(m.detach().cpu())
    return torch.stack(maps)


def plot_saliency(model: nn.Module, x: Tensor, y: Tensor, conditions: Sequence[dict[str, Any]],
                  out_png: str | Path | None = None, *, title: str | None = None):
    """One figure per model: each row an image, then its saliency at every condition.

    Args:
        model, x, y, conditions: as :func:`saliency_maps` (use a few images, N ≤ 8).
        out_png: write the figure here (parent directories created) if given.
        title: figure title.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    maps = saliency_maps(model, x, y, conditions)  # (K, N, H, W)
    K, N = maps.shape[0], maps.shape[1]
    fig = Figure(figsize=(1.6 * (K + 1), 1.6 * N + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    imgs = x.detach().cpu()
    for i in range(N):
        ax = fig.add_subplot(N, K + 1, i * (K + 1) + 1)
        img = imgs[i].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        if i == 0:
            ax.set_title("image", fontsize=8)
        for k in range(K):
            ax = fig.add_subplot(N, K + 1, i * (K + 1) + k + 2)
            ax.imshow(maps[k, i].numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(condition_label(dict(conditions[k])), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if out_png is not None:
        out = Path(out_png)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    return fig
