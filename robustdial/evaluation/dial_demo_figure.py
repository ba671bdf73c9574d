"""The demo's figure: one panel per dial (λ, width, exit, bits), from ``results.json``.

Every panel names its attack and ε; values sit in legends and tick labels
rather than free text next to markers, so labels never overlap. Uses
``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_demo"]


def _points(summary: dict[str, Any], label: str) -> list[dict[str, Any]]:
    job = summary["jobs"].get(label)
    return job["report"]["points"] if job else []


def _bars(ax: Any, groups: list[str], series: dict[str, list[float]], colors: list[str]) -> None:
    k = len(series)
    width = 0.8 / max(k, 1)
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + (i - (k - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, vals, width=width, label=name, color=colors[i % len(colors)])
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, max(v, 0)), ha="center",
                        va="bottom", fontsize=6, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(range(len(groups)), groups, fontsize=7)


def plot_demo(summary: dict[str, Any], path: str | Path) -> Path:
    """Write the four-panel figure; panels without their job are left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    eps = summary["eps"]
    attack = f"AutoAttack fast, ε = {eps:g}"
    fig = Figure(figsize=(12, 8.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    (a_lam, a_width), (a_exit, a_bits) = fig.subplots(2, 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]

    # λ: one FLOAT (and OAT) model across λ, the two baselines as horizontal references
    for label, name, color in (("float", "FLOAT", "tab:blue"), ("oat", "OAT", "tab:purple")):
        pts = _points(summary, label)
        if not pts:
            continue
        lam = [p["dials"]["lam"] for p in pts]
        a_lam.plot(lam, [p["accuracy"]["clean"] for p in pts], "--o", color=color, label=f"{name} clean")
        a_lam.plot(lam, [p["accuracy"]["autoattack"] for p in pts], "-s", color=color,
                   label=f"{name} {attack}")
    for label, color in (("standard", "tab:gray"), ("pgd_at", "tab:red")):
        ps = _points(summary, label)
        if ps:
            a = ps[0]["accuracy"]
            a_lam.axhline(a["clean"], ls="--", lw=1, color=color, label=f"{label} clean {a['clean']:.1f}")
            a_lam.axhline(a["autoattack"], ls="-", lw=1, color=color,
                          label=f"{label} AutoAttack {a['autoattack']:.1f}")
    a_lam.set_xlabel("λ (FLOAT: weight noise λ·α·η and BN_A for λ > 0; OAT: FiLM(λ) and BN_A)")
    a_lam.set_ylabel("accuracy (%)")
    a_lam.set_title("λ dial: one model, accuracy ↔ robustness", fontsize=10)
    a_lam.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)

    # width: clean / AutoAttack per width; MACs and latency in the tick labels
    pts = _points(summary, "float_slim")
    if pts:
        groups = []
        for p in pts:
            lat = p.get("latency", {}).get("batch64", {})
            t = ""
            if lat:
                t = f"\n{1000 * lat['model_s']:.1f} ms / 64 img (module)"
                if lat.get("folded_s"):
                    t += f"\n{1000 * lat['folded_s']:.1f} ms exported"
                if lat.get("speedup_vs_widest"):
                    w = p["latency"].get("widest", {}).get("width", "the widest")
                    t += f"\nplain: {lat['speedup_vs_widest']:.1f}× faster than width {w:g}"
            groups.append(f"width {p['dials']['width']:g}\n{p['cost']['macs_per_image'] / 1e6:.2f} M MACs{t}")
        _bars(a_width, groups, {"clean": [p["accuracy"]["clean"] for p in pts],
                                attack: [p["accuracy"]["autoattack"] for p in pts]}, colors)
        a_width.legend(fontsize=7, loc="lower right")
    a_width.set_ylabel("accuracy (%)")
    a_width.set_title("width dial: FLOAT slim at λ = 1", fontsize=10)

    # exit: adaptive early exit — accuracy and compute saving per kind of input
    pts = _points(summary, "rdi")
    ad = next((p for p in pts if p["dials"].get("exit") == "adaptive"), None)
    if ad is not None:
        ee, lat = ad["early_exit"], ad.get("latency", {})
        kinds = [("clean", "clean inputs"), ("autoattack", f"under {attack}"),
                 ("slowdown", "under slowdown\n(DeepSloth PGD)")]
        _bars(a_exit, [name for _, name in kinds], {
            "adaptive accuracy %": [ad["accuracy"][k] for k, _ in kinds],
            "saving % (MACs executed)": [100 * ee["inputs"][k]["executed"]["saving"] for k, _ in kinds],
            "saving % (measured, one input at a time)": [100 * lat.get(k, {}).get("measured_saving", float("nan"))
                                      for k, _ in kinds]}, colors)
        fixed = ", ".join(f"exit {p['dials']['exit']}: {p['accuracy']['clean']:.0f}/{p['accuracy']['autoattack']:.0f}"
                          for p in pts if p["dials"].get("exit") != "adaptive")
        a_exit.set_xlabel(f"clean/AA % at fixed exits — {fixed}", fontsize=7)
        a_exit.axhline(0, color="black", lw=0.6)
        a_exit.legend(fontsize=7, loc="upper center", ncol=2)  # above the bars (ylim top 135 below)
    a_exit.set_title(f"exit dial: RDI multi-exit, adaptive (ε = {eps:g})", fontsize=10)

    # bits: ternary Binary-Relax vs the float PGD-AT model; storage in the tick labels
    jobs = [(j, lab) for j, lab in (("pgd_at", "float32"), ("br_ternary", "ternary (2-bit convs)"))
            if j in summary["jobs"]]
    if jobs:
        groups, clean, rob = [], [], []
        for j, lab in jobs:
            job = summary["jobs"][j]
            p = job["report"]["points"][0]
            groups.append(f"{lab}\n{job['storage']['storage_bytes'] / 1024:.0f} KiB")
            clean.append(p["accuracy"]["clean"])
            rob.append(p["accuracy"]["autoattack"])
        _bars(a_bits, groups, {"clean": clean, attack: rob}, colors)
        a_bits.legend(fontsize=7, loc="lower right")
    a_bits.set_ylabel("accuracy (%)")
    a_bits.set_title("bits dial: Binary-Relax (PGD-AT) vs float", fontsize=10)
    for ax in (a_width, a_exit, a_bits):
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]), top=max(100, ax.get_ylim()[1]))
    a_exit.set_ylim(top=max(135, a_exit.get_ylim()[1]))  # room for the legend above 100 %
    a_exit.set_yticks([t for t in a_exit.get_yticks() if t <= 100])
    fig.suptitle(f"robustdial demo — {summary['dataset']}, first {summary['n_test']} test images\n"
                 f"L∞ ε = {eps:g} ([0, 1] scale); robust accuracy = AutoAttack fast (APGD-CE + APGD-T)",
                 fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=120)
    return path
