"""``report.md``: the robustness report's JSON as Markdown tables."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["report_markdown"]


def _f(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def report_markdown(d: dict[str, Any]) -> str:
    """Markdown for a report dict (:meth:`RobustnessReport.to_dict`)."""
    prof = d["profile"]
    aa = prof["aa_label"]
    lines = [f"# Robustness report: {d['model']['name']}", "",
             f"Dataset {d['dataset'].get('name', '?')} ({d['dataset'].get('split', '?')} split, first "
             f"{d['n']} images), L∞ ε = {d['eps_text']} on the [0, 1] scale, profile **{prof['name']}**: "
             f"robust accuracy is **{aa}** at deterministic points and AutoAttack rand (APGD-CE + "
             f"APGD-DLR, EOT {prof['rand_eot']}) at randomized ones. Accuracies in %.", ""]
    rows = []
    for p in d["points"]:
        a = p["accuracy"]
        lat = p.get("latency", {}).get("batch64", {})
        checks = "–" if "checks" not in p else ("pass" if p["checks_passed"] else "FAIL: " + ", ".join(
            c["name"] for c in p["checks"] if c["passed"] is False))
        rows.append([p["label"], "yes" if p["stochastic"] else "no", _f(a["clean"]),
                     _f(a["autoattack"]), _f(a["pgd"]), _f(p["worst_case"]["accuracy"]), checks,
                     f"{p['cost']['macs_per_image'] / 1e6:.2f}", f"{p['cost']['params_total']:,}",
                     _f(lat.get("ratio"), 2)])
    lines += _table(["point", "randomized", "clean", "AutoAttack", f"PGD-{prof['pgd_steps']}",
                     "worst case (any attack)", "checks", "MMACs", "params",
                     "latency ÷ plain (b64)"], rows)
    lines += ["", "Worst case: a sample counts only if it survives every ε-bounded attack run at "
              "that point (AutoAttack, PGD, FGSM, the steps sweep, Square, transfer, and at "
              "adaptive-exit points RDI's forms and the slowdown attack).", ""]
    for p in d["points"]:
        ee = p.get("early_exit")
        if not ee:
            continue
        thr = d.get("exit_thresholds")
        thr_text = "" if not thr else (f"Entropy thresholds {[round(v, 4) for v in thr['values']]} "
                                       f"({thr['source']}). ")
        lines += [f"## Early exit at {p['label']}", "",
                  f"{thr_text}Backbone {ee['backbone_mflops']:.2f} MFlops (conv MACs / 2²⁰). Saving kept under "
                  f"the slowdown attack: {_f(100 * ee.get('saving_kept_under_slowdown_rdi', math.nan))} % "
                  f"(paper convention), {_f(100 * ee.get('saving_kept_under_slowdown_executed', math.nan))} % "
                  "(executed).", ""]
        lat = p.get("latency", {})
        rows = []
        for name, v in ee["inputs"].items():
            meas = lat.get(name, {}).get("measured_saving")
            rows.append([name, _f(p["accuracy"].get(name)), _f(v["rdi"]["mflops"], 2),
                         _f(100 * v["rdi"]["saving"]), _f(v["executed"]["mflops"], 2),
                         _f(100 * v["executed"]["saving"]),
                         _f(None if meas is None else 100 * meas), str(v["exit_histogram"])])
        lines += _table(["inputs", "accuracy", "MFlops (paper)", "saving % (paper)",
                         "MFlops (executed)", "saving % (executed)", "measured saving % (batch 1)",
                         "exit histogram"], rows) + [""]
    t = d.get("transfer")
    if t:
        lines += ["## Dial transfer", "", "Rows: where the adversarial examples were made "
                  "(AutoAttack's and PGD's); columns: where they are classified. Accuracy %.", ""]
        lines += _table(["from \\ at", *t["labels"]],
                        [[t["labels"][i], *(_f(v) for v in row)] for i, row in enumerate(t["matrix"])])
        lines += ["", "Dial-agnostic worst case (robust to the examples of every point): "
                  + ", ".join(f"{k} {_f(v)}" for k, v in t["dial_agnostic"].items())
                  + f"; at every point at once {_f(t['every_point'])}.", ""]
    if d.get("baselines"):
        lines += ["## Baselines", ""]
        lines += _table(["model", "clean", "AutoAttack", f"PGD-{prof['pgd_steps']}", "worst case"],
                        [[b["name"], _f(b["accuracy"]["clean"]), _f(b["accuracy"]["autoattack"]),
                          _f(b["accuracy"]["pgd"]), _f(b["worst_case"]["accuracy"])]
                         for b in d["baselines"]]) + [""]
    if any("checks" in p for p in d["points"]):
        lines += ["## Gradient-obfuscation checks", ""]
        rows = [[p["label"], c["name"], "skip" if c["passed"] is None else ("PASS" if c["passed"] else "FAIL"),
                 c["detail"]] for p in d["points"] for c in p.get("checks", [])]
        lines += _table(["point", "check", "result", "numbers"], rows) + [""]
    lines += ["## Attacks run", ""]
    first = d["points"][0]
    lines += [f"- `{k}`: {v}" for k, v in first["attacks"].items()]
    lines += ["", f"Report format {d['format']}; {d['seconds']:.0f} s; commit "
              f"{d['provenance'].get('git_commit')}; torch {d['provenance'].get('torch')}.", ""]
    return "\n".join(lines)
