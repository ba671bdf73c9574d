"""SA–RA trade-off plots: standard (clean) accuracy vs robust accuracy per λ.

One curve per model (e.g. OAT, FLOAT, OATS at a width), each point a
condition labelled with its λ, optionally against a frontier of separately
trained models (PGD-AT at several λ), as in OAT Fig. 3 and FLOAT Fig. 5.
Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot
state, no global backend change.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .result import EvalResult, EvalRow, condition_label

__all__ = ["plot_tradeoff", "tradeoff_points"]

Rows = EvalResult | Sequence[EvalRow]


def _label(row: EvalRow) -> str:
    lam = row.condition.get("lam")
    if lam is not None and len(row.condition) == 1:
        return f"λ={lam:g}" if isinstance(lam, (int, float)) else f"λ={lam}"
    return condition_label(row.condition)


def tradeoff_points(rows: Rows, attack: str) -> list[tuple[float, float, str]]:
    """(clean %, robust %, label) for ``attack``, ordered by λ (then as given).

    Raises:
        ValueError: no row for ``attack`` (the message lists the attacks present).
    """
    rows = list(rows)
    sel = [r for r in rows if r.attack == attack]
    if not sel:
        have = sorted({r.attack for r in rows})
        raise ValueError(f"no rows for attack {attack!r}; attacks present: {have}")
    sel.sort(key=lambda r: float(r.condition.get("lam", 0.0) or 0.0))
    return [(r.clean_acc, r.robust_acc, _label(r)) for r in sel]


def _frontier_points(frontier: Any, attack: str) -> list[tuple[float, float, str]]:
    items = list(frontier)
    if items and isinstance(items[0], EvalRow):
        return tradeoff_points(items, attack)
    return [(float(p[0]), float(p[1]), str(p[2]) if len(p) > 2 else "") for p in items]


def plot_tradeoff(results: Mapping[str, Rows], attack: str, out_png: str | Path, *,
                  frontier: Rows | Iterable[tuple[float, float]] | None = None,
                  frontier_label: str = "frontier", title: str | None = None) -> Path:
    """Plot SA (x) vs RA (y) per model and write a PNG.

    Args:
        results: label -> :class:`EvalResult` (or its rows); one curve each.
        attack: the attack name whose robust accuracy is on the y axis.
        out_png: output path (parent directories are created).
        frontier: optional baseline: rows (e.g. PGD-AT models at several λ,
            each row's condition carrying its λ) or ``(SA, RA[, label])`` points,
            drawn as a dashed line.
        frontier_label: legend entry of the frontier.
        title: figure title (default: the attack name).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results and frontier is None:
        raise ValueError("nothing to plot: results is empty and no frontier was given")
    fig = Figure(figsize=(5.5, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, rows in results.items():
        pts = tradeoff_points(rows, attack)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, marker="o", label=name)
        for sx, ry, lab in pts:
            ax.annotate(lab, (sx, ry), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if frontier is not None:
        pts = _frontier_points(frontier, attack)
        pts.sort(key=lambda p: p[0])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", marker="s",
                color="gray", label=frontier_label)
        for sx, ry, lab in pts:
            if lab:
                ax.annotate(lab, (sx, ry), textcoords="offset points", xytext=(4, -10),
                            fontsize=7, color="gray")
    ax.set_xlabel("standard accuracy SA (%)")
    ax.set_ylabel("robust accuracy RA (%)")
    ax.set_title(title if title is not None else attack, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
