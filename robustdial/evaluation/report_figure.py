"""The robustness report's figure: clean and AutoAttack accuracy over the dial, cost as marker size.

Left panel: accuracy (clean, dashed; AutoAttack, solid) against the dial,
one line per setting of the other dials. Right panel: the trade-off plane
(clean on x, AutoAttack on y), marker area proportional to MACs per image,
baselines drawn beside as black stars; points are named in the legend, never next
to the markers, so labels cannot overlap. Uses ``matplotlib.figure.Figure`` with the Agg canvas (no
pyplot state).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]

_DIAL_NAMES = {"lam": "λ", "width": "width", "exit": "exit", "lam_th": "λ_th", "noise": "noise"}


def _dial_axis(points: list[dict[str, Any]], grid: dict[str, list[Any]]) -> tuple[str | None, list[str]]:
    """The dial on the x axis (the one with most values) and the others (one line each)."""
    names = [k for k, v in grid.items() if len(v) > 1] or list(grid)
    if not names:
        return None, []
    main = max(names, key=lambda k: len(grid[k]))
    return main, [k for k in grid if k != main]


def plot_report(d: dict[str, Any], path: str | Path) -> Path:
    """Write the figure for a report dict; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = d["points"]
    aa_label = d["profile"]["aa_label"]
    fig = Figure(figsize=(12.5, 4.4), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    main, others = _dial_axis(pts, d.get("grid", {}))
    macs = [p["cost"]["macs_per_image"] for p in pts]
    mmax = max(macs) if macs else 1.0
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in pts:
        key = " ".join(f"{k}={p['dials'].get(k)}" for k in others) or "model"
        groups.setdefault(key, []).append(p)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for gi, (key, ps) in enumerate(groups.items()):
        c = colors[gi % len(colors)]
        xs_labels = [str(p["dials"].get(main, "default")) for p in ps]
        xs = list(range(len(ps)))
        numeric = all(isinstance(p["dials"].get(main), (int, float)) and not isinstance(
            p["dials"].get(main), bool) for p in ps)
        if numeric:
            xs = [float(p["dials"][main]) for p in ps]
        clean = [p["accuracy"]["clean"] for p in ps]
        rob = [p["accuracy"]["autoattack"] for p in ps]
        suffix = "" if key == "model" else f" ({key})"
        ax1.plot(xs, clean, "--o", color=c, label=f"clean{suffix}")
        ax1.plot(xs, rob, "-s", color=c, label=f"AutoAttack{suffix}")
        if not numeric:
            ax1.set_xticks(xs, xs_labels)
        ax2.plot(clean, rob, "-", color=c, alpha=0.4)
        for i, p in enumerate(ps):  # one legend entry per point: no text next to the markers
            shade = cmap(i / max(len(ps) - 1, 1))
            ax2.scatter([clean[i]], [rob[i]], s=30 + 220 * p["cost"]["macs_per_image"] / mmax,
                        color=shade, edgecolors=c, linewidths=1.2, alpha=0.85, zorder=3,
                        label=f"{p['label']} ({p['cost']['macs_per_image'] / 1e6:.2f} M MACs)")
    for b in d.get("baselines", []):
        ca, ra = b["accuracy"]["clean"], b["accuracy"]["autoattack"]
        ax2.scatter([ca], [ra], marker="*", s=160, color="black", zorder=5, label=f"baseline {b['name']}")
        ax1.axhline(ra, color="gray", lw=0.8, ls=":")
        ax1.annotate(f"{b['name']} AutoAttack", (0.01, ra), xycoords=("axes fraction", "data"),
                     textcoords="offset points", xytext=(0, 2), fontsize=7, color="gray")
    ax1.set_xlabel(_DIAL_NAMES.get(main, main) if main else "operating point")
    ax1.set_ylabel("accuracy (%)")
    ax1.set_title(f"accuracy over the {_DIAL_NAMES.get(main, main) if main else ''} dial", fontsize=10)
    ax1.legend(fontsize=7, loc="best", framealpha=0.9)
    ax2.set_xlabel("clean accuracy (%)")
    ax2.set_ylabel(f"{aa_label} (%)")
    ax2.set_title("trade-off; marker area ∝ MACs per image, ★ baselines", fontsize=10)
    ax2.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.suptitle(f"{d['model']['name']} on {d['dataset'].get('name', '?')}: L∞ ε = {d['eps_text']} "
                 f"([0, 1] scale), first {d['n']} test images", fontsize=11)
    fig.savefig(str(path), dpi=130)
    return path
