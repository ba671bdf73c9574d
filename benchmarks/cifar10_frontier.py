"""CIFAR-10 dial frontier: clean vs AutoAttack accuracy of every report point, one figure.

Reads the ``report.json`` files that ``robustdial report`` wrote for the
CPU-scale CIFAR-10 runs (``benchmarks/results/cifar10_report_<method>/``) and
draws clean accuracy against AutoAttack accuracy, one line per dialled model
(points labelled with their dial value), fixed models as single markers. It
computes nothing new: every number is copied from a report (the JSON names the
report and its provenance), so the figure cannot drift from the records.

Usage::

    python benchmarks/cifar10_frontier.py                      # the committed reports
    python benchmarks/cifar10_frontier.py --reports float=DIR1 pgd_at=DIR2 --out OUT.json

Writes ``benchmarks/results/cifar10_frontier.json`` and ``.png`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT = ("pgd_at=cifar10_report_pgdat", "float=cifar10_report_float", "oat=cifar10_report_oat",
           "rdi=cifar10_report_rdi")
NAMES = {"pgd_at": "PGD-AT (RS-FGSM)", "float": "FLOAT", "oat": "OAT", "rdi": "RDI multi-exit"}


def _point(p: dict) -> dict:
    acc = p["accuracy"]
    return {"label": p["label"], "dials": p["dials"], "clean": acc["clean"],
            "autoattack": acc.get("autoattack"), "pgd50": acc.get("pgd"),
            "worst_case": p.get("worst_case", {}).get("accuracy"),
            "macs_per_image": p.get("cost", {}).get("macs_per_image")}


def collect(specs: list[str]) -> dict:
    out: dict[str, dict] = {}
    for spec in specs:
        name, _, d = spec.partition("=")
        path = Path(d) if Path(d).is_absolute() else RESULTS / d
        rj = path / "report.json"
        if not rj.is_file():
            out[name] = {"report": str(rj.relative_to(REPO) if rj.is_relative_to(REPO) else rj),
                         "missing": True, "points": []}
            continue
        rep = json.loads(rj.read_text())
        pts = [_point(p) for p in rep["points"]] or [_point(b) for b in rep.get("baselines", [])[:1]]
        out[name] = {"report": str(rj.relative_to(REPO) if rj.is_relative_to(REPO) else rj),
                     "missing": False, "dataset": rep["dataset"]["name"], "n": rep["n"], "eps": rep["eps_text"],
                     "profile": rep["profile"]["aa_label"], "model": rep["model"]["name"],
                     "report_commit": rep["provenance"].get("git_commit"), "points": pts}
    return out


def _dial_name(pts: list[dict]) -> str:
    keys = sorted({k for p in pts for k in p["dials"]})
    return f" ({', '.join('λ' if k == 'lam' else k for k in keys)})" if len(pts) > 1 and keys else ""


def figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    markers = {"pgd_at": "s", "float": "o", "oat": "^", "rdi": "D"}
    spots: dict[tuple[float, float], list[str]] = {}
    for name, d in data.items():
        pts = [p for p in d["points"] if p["autoattack"] is not None]
        if not pts:
            continue
        xs, ys = [p["clean"] for p in pts], [p["autoattack"] for p in pts]
        ax.plot(xs, ys, marker=markers.get(name, "o"), linestyle="-" if len(pts) > 1 else "none",
                label=NAMES.get(name, name) + _dial_name(pts), markersize=7)
        if len(pts) > 1:  # the dial value beside each point; one label per spot, across models too
            for p in pts:
                spot = (round(p["clean"], 1), round(p["autoattack"], 1))
                text = ", ".join(f"{k} {v}" if k not in ("lam", "exit") else str(v) for k, v in p["dials"].items())
                spots.setdefault(spot, []).append(text)
    for (cx, cy), texts in spots.items():
        ax.annotate(" / ".join(dict.fromkeys(texts)), (cx, cy), fontsize=7, xytext=(6, -2),
                    textcoords="offset points")
    any_d = next((d for d in data.values() if not d["missing"]), None)
    if any_d is not None:
        ns = {NAMES.get(k, k): d["n"] for k, d in data.items() if not d["missing"]}
        common = max(set(ns.values()), key=list(ns.values()).count)
        others = ", ".join(f"{k}: {n}" for k, n in ns.items() if n != common)
        ax.set_title(f"{any_d['dataset']}, ε {any_d['eps']}, first {common} test images"
                     + (f" ({others})" if others else "") + "\n"
                     f"robust = {any_d['profile']}", fontsize=10)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("AutoAttack accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reports", nargs="+", default=list(DEFAULT), metavar="NAME=DIR",
                   help="report directories (relative to benchmarks/results/ or absolute)")
    p.add_argument("--out", type=Path, default=RESULTS / "cifar10_frontier.json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from robustdial.evaluation._provenance import provenance

    data = collect(args.reports)
    if all(d["missing"] for d in data.values()):
        raise SystemExit(f"no report.json found under {[d['report'] for d in data.values()]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig_path = args.out.with_suffix(".png")
    figure(data, fig_path)
    result = {"what": "clean vs AutoAttack accuracy of the CPU-scale CIFAR-10 report points "
                      "(copied from the reports named per model)", "models": data,
              "figure": fig_path.name, "provenance": provenance("cpu")}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, d in data.items():
        if d["missing"]:
            print(f"{name:<7} (no report: {d['report']})")
            continue
        for pt in d["points"]:
            aa = "-" if pt["autoattack"] is None else f"{pt['autoattack']:.1f}"
            print(f"{name:<7} {pt['label']:<14} clean {pt['clean']:5.1f}  AA {aa}")
    print(f"wrote {args.out} and {fig_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
