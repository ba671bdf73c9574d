"""The robustness report: AutoAttack at every dial, per-sample worst case, dial transfer, cost.

``rd.report(model, data, dials={"lam": [0, 0.5, 1]}, eps=8/255, profile="fast")``
evaluates every operating point (the product of the dial values; by default
every dial of the model: λ ∈ {0, .2, .5, .7, 1}, every trained width, every
exit plus adaptive) and returns a :class:`RobustnessReport`. At each point:

* clean accuracy;
* AutoAttack through ``pyautoattack``: the ``standard`` version's settings at a
  deterministic point (profile ``fast``: APGD-CE + APGD-T only, labelled so
  everywhere; ``standard``: all four attacks), ``rand`` (APGD-CE + APGD-DLR
  with EOT) at a stochastic one. Stochastic means two eval-mode forwards of the
  same batch differ — measured, never read from a flag;
* a strong PGD (step 2.5·ε/k, random start; with EOT at stochastic points);
* the gradient-obfuscation checks of ``robustdial checklist`` (FGSM vs PGD,
  transfer from an independently trained model, ε sweep, steps sweep,
  unbounded ε) plus two of AutoAttack's (black-box Square not stronger than
  white-box; fraction of samples with an all-zero input gradient) and, at a
  randomized point, the EOT gap — each pass/fail with its numbers;
* the **per-sample worst case** over every ε-bounded attack run there (a sample
  is robust only if it survives all of them);
* cost: parameters, storage at the point's bit-width, MACs, and latency at
  batch 1 and 64 measured round-robin with the plain backbone of that width;
* at an adaptive-exit point: RDI-Nets' attack forms, a **slowdown attack**
  (DeepSloth) and mean MFlops (the paper's convention and what is executed)
  on clean inputs, under the accuracy attacks and under slowdown, with the
  measured wall-clock saving.

Across points, the **dial transfer** matrix: adversarial examples made at
point i (AutoAttack's and PGD's), classified at point j, and the dial-agnostic
worst case per sample (an attacker who does not know the dial tries them all).

Deterministic points are attacked on the *folded plain graph* of the point
(:func:`robustdial.export.to_plain`: BN + FiLM folded, noise baked in) after
checking that its logits equal the conditioned model's within 1e-5 on the
evaluated data; otherwise on the module. Results are stored per (point,
attack) as they finish (``cache_dir``), so an interrupted report resumes.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..condition import Choices, Interval, dial_specs
from ..cost.summary import cost_report
from ..utils import model_device
from ._provenance import provenance
from ._report_cache import ReportCache, data_digest, model_digest, settings_digest
from ._report_cost import early_exit_stats, point_latency
from ._report_point import PROFILES, PointEvaluator, Profile, eval_context, is_stochastic
from .checklist import CheckResult, judge_checks
from .result import condition_label

__all__ = ["DEFAULT_LAMBDAS", "RobustnessReport", "default_grid", "report"]

_log = logging.getLogger(__name__)

DEFAULT_LAMBDAS = (0.0, 0.2, 0.5, 0.7, 1.0)
FORMAT = "robustdial-report/1"


def default_grid(model: nn.Module) -> dict[str, list[Any]]:
    """The operating points a run offers: λ ∈ {0, .2, .5, .7, 1}, every width, every exit + adaptive."""
    specs = dial_specs(model)
    grid: dict[str, list[Any]] = {}
    if isinstance(specs.get("lam"), Interval):
        grid["lam"] = list(DEFAULT_LAMBDAS)
    if isinstance(specs.get("width"), Choices):
        grid["width"] = list(specs["width"].values)
    if isinstance(specs.get("exit"), Choices):
        grid["exit"] = list(specs["exit"].values)
    return grid


def _points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    names = list(grid)
    for k, vals in grid.items():
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or not vals:
            raise ValueError(f"dial {k!r} needs a non-empty list of values, got {vals!r}")
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[k] for k in names))]


def _as_xy(data: Any, n: int | None, device: torch.device) -> tuple[Tensor, Tensor, dict[str, Any]]:
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
        info = {k: getattr(data, k) for k in ("name", "split") if hasattr(data, k)}
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        info = {}
    else:
        raise TypeError("data must be an ImageData (robustdial.load_dataset) or a tuple "
                        f"(x in [0, 1] (N, C, H, W), y (N,)); got {type(data).__name__}")
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        x, y = x[:n], y[:n]
    if x.shape[0] == 0:
        raise ValueError("data is empty: nothing to evaluate")
    x = x.to(device)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x, y.to(device).long(), info


def _pct(flags: Tensor) -> float:
    return 100.0 * float(flags.float().mean())


def _fold(model: nn.Module, point: dict[str, Any], x: Tensor, batch_size: int,
          input_shape: Sequence[int]) -> tuple[nn.Module | None, dict[str, Any]]:
    """The point's folded plain graph if its logits equal the module's within 1e-5."""
    from ..export import to_plain

    try:
        plain = to_plain(model, point, input_shape=input_shape, noise="fixed").to(x.device)
    except Exception as exc:  # noqa: BLE001 - fold is an optimisation; the module is always right
        return None, {"folded": False, "reason": f"{type(exc).__name__}: {exc}"}
    worst = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            worst = max(worst, float((plain(xb) - model(xb)).abs().max()))
    if not worst <= 1e-5:
        return None, {"folded": False, "reason": f"logits differ by {worst:.3g} > 1e-5",
                      "max_abs_logit_diff": worst}
    return plain.eval(), {"folded": True, "max_abs_logit_diff": worst}


def _judge(pe: PointEvaluator, profile: Profile, eps: float, point: dict[str, Any],
           zero: dict[str, Any]) -> list[CheckResult]:
    acc = {k: _pct(v) for k, v in pe.flags.items()}
    n = int(pe.y.shape[0])
    steps = list(profile.steps_sweep) + [profile.pgd_steps]
    acc_j = dict(acc)
    for k in profile.steps_sweep:
        acc_j[f"steps={k}"] = acc[f"steps={k}"]
    acc_j[f"steps={profile.pgd_steps}"] = acc["pgd"]
    eps_sweep = sorted({min(1.0, f * eps) for f in profile.eps_factors} | {eps})
    acc_j[f"eps={eps:.6g}"] = acc["steps=10"] if "steps=10" in acc else acc["pgd"]
    checks = judge_checks(acc_j, point, clean=acc["clean"], n=n, eps_sweep=eps_sweep,
                          steps_sweep=sorted(set(steps)), pgd_name=f"PGD-{profile.pgd_steps}",
                          unbounded_name=f"ε=1 PGD-{profile.unbounded_steps}")
    tol = max(1.0, 100.0 / n + 1e-9)
    white = min(acc["autoattack"], acc["pgd"])
    sq = acc["square"]
    checks.append(CheckResult(point, "square_vs_whitebox", sq >= white - tol,
                              {"square": sq, "whitebox": white},
                              f"Square {sq:.2f}% vs white-box {white:.2f}% (AutoAttack / PGD)"))
    frac = zero["fraction"]
    checks.append(CheckResult(point, "zero_gradients", frac <= 0.01, zero,
                              f"{zero['zero_gradient_samples']}/{zero['n']} samples with an all-zero "
                              "input gradient (pass ≤ 1 %)"))
    return checks


def _randomized_check(pe: PointEvaluator, point: dict[str, Any]) -> CheckResult:
    """Flag a randomized point (two eval forwards differ) with the EOT gap it shows."""
    acc = {k: _pct(pe.flags[k]) for k in ("pgd", "pgd_no_eot")}
    gap = acc["pgd_no_eot"] - acc["pgd"]
    return CheckResult(point, "randomized", False,
                       {"pgd_without_eot": acc["pgd_no_eot"], "pgd_with_eot": acc["pgd"], "gap": gap},
                       f"two eval forwards differ: a randomized model, evaluated with EOT "
                       f"(PGD {acc['pgd_no_eot']:.2f}% without EOT vs {acc['pgd']:.2f}% with; "
                       f"gap {gap:.2f} pp)")


class RobustnessReport:
    """Result of :func:`report`: ``to_json()``, ``records()``, ``to_markdown()``, ``plot()``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.data["points"]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.data, indent=1, default=str)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path: str | Path) -> RobustnessReport:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a robustdial report (format {data.get('format')!r}, "
                             f"expected {FORMAT!r})")
        return cls(data)

    def records(self) -> list[dict[str, Any]]:
        """One RobustBench-style ``model_info`` entry per operating point."""
        d = self.data
        out = []
        for p in self.points:
            where = "folded plain graph" if p["evaluated_on"].get("folded") else "module"
            out.append({
                "name": f"{d['model']['name']} [{p['label']}]",
                "architecture": d["model"]["architecture"],
                "dataset": d["dataset"].get("name", "unknown"),
                "eps": d["eps_text"],
                "clean_acc": round(p["accuracy"]["clean"], 2),
                "autoattack_acc": round(p["accuracy"]["autoattack"], 2),
                "additional_data": False,
                "number_forward_passes": 1,
                "venue": "robustdial report (not peer reviewed)",
                "link": "",
                "footnote": (f"Dial setting {p['label']}; {p['attacks']['autoattack']}"
                             f"{' — not the full standard AutoAttack' if d['profile']['name'] == 'fast' and not p['stochastic'] else ''}; "
                             f"first {d['n']} {d['dataset'].get('split', 'test')} images; "
                             f"per-sample worst case over every attack run: {p['worst_case']['accuracy']:.2f}%; "
                             f"attacked on the {where}."),
            })
        return out

    def to_markdown(self) -> str:
        from ._report_markdown import report_markdown

        return report_markdown(self.data)

    def plot(self, path: str | Path) -> Path:
        from .report_figure import plot_report

        return plot_report(self.data, path)


def report(model: nn.Module, data: Any, *, eps: float, dials: Mapping[str, Sequence[Any]] | None = None,
           profile: str | Profile = "fast", n: int | None = None,
           baselines: Mapping[str, nn.Module] | None = None, source: nn.Module | None = None,
           cache_dir: str | Path | None = None, name: str | None = None, bits: int = 32,
           input_shape: Sequence[int] | None = None, batch_size: int = 250, seed: int = 0,
           device: torch.device | str | None = None, fold: bool = True, checks: bool = True,
           latency: bool = True, progress: bool | None = None) -> RobustnessReport:
    """Evaluate ``model`` at every operating point (see the module doc).

    Args:
        model: the dialable model, on ``device``.
        data: ``ImageData`` (uint8) or ``(x in [0, 1], y)`` tensors — a test split.
        eps: L∞ radius on the [0, 1] scale (8/255, not 8).
        dials: dial -> values; the points are their product. Default: :func:`default_grid`.
        profile: ``"fast"`` or ``"standard"`` (see :data:`PROFILES`).
        n: evaluate the first ``n`` samples.
        baselines: name -> model evaluated at its default point beside (drawn in the figure).
        source: independently trained model for the transfer check (default: the first baseline).
        cache_dir: store/reuse per-(point, attack) results here (resume).
        name: the model's name in records (default its architecture).
        bits: bit-width of the stored weights at every point (32: float).
        input_shape: one image's (C, H, W) (default from the data).
        batch_size: samples per attack call; seed: seeds every attack.
        device: where to run (default the model's); fold: attack the folded plain
            graph at deterministic points; checks: run the obfuscation checks;
            latency: measure latency; progress: tqdm bars (default: on a terminal).
    """
    t_start = time.perf_counter()
    if not 0 < float(eps) <= 1:
        raise ValueError(f"eps must be in (0, 1] on the [0, 1] scale (8/255, not 8), got {eps!r}")
    prof = profile if isinstance(profile, Profile) else PROFILES.get(str(profile))
    if prof is None:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    device = torch.device(device) if device is not None else model_device(model)
    x, y, data_info = _as_xy(data, n, device)
    N = int(x.shape[0])
    shape = tuple(input_shape) if input_shape is not None else tuple(x.shape[1:])
    grid = dict(dials) if dials is not None else default_grid(model)
    points = _points(grid)
    baselines = dict(baselines or {})
    if source is None and baselines:
        source = next(iter(baselines.values()))
    m_digest = model_digest(model)
    cache = ReportCache(cache_dir, settings_digest(m_digest, data_digest(x, y), eps, prof.to_dict(),
                                                   seed, N))
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm.auto import tqdm

    rng_devices = [device] if device.type == "cuda" else []
    results: list[dict[str, Any]] = []
    evaluators: list[PointEvaluator] = []
    with torch.random.fork_rng(devices=rng_devices):
        bar = tqdm(points, desc="report", unit="point", disable=not show)
        for point in bar:
            label = condition_label(point)
            bar.set_postfix_str(label)
            pe, res = _evaluate_point(model, point, label, x, y, eps=eps, profile=prof, cache=cache,
                                      batch_size=batch_size, seed=seed, source=source, fold=fold,
                                      checks=checks, latency=latency, bits=bits, shape=shape,
                                      show=show)
            evaluators.append(pe)
            results.append(res)
        transfer = _transfer(points, evaluators) if len(points) > 1 else None
        base_rows = []
        for bname, bmodel in baselines.items():
            bcache = ReportCache(cache_dir, settings_digest(model_digest(bmodel), data_digest(x, y),
                                                            eps, prof.to_dict(), seed, N))
            pe, res = _evaluate_point(bmodel, {}, "default", x, y, eps=eps, profile=prof,
                                      cache=bcache, batch_size=batch_size, seed=seed, source=None,
                                      fold=fold, checks=False, latency=False, bits=bits,
                                      shape=shape, show=show)
            res["name"] = bname
            res["cost"] = {"params_total": res["cost"]["params_total"],
                           "macs_per_image": res["cost"]["macs_per_image"]}
            base_rows.append(res)
    spec = getattr(model, "rd_spec", None) or {}
    arch = spec.get("name", type(model).__name__)
    data_out = {
        "format": FORMAT,
        "model": {"name": name or arch, "architecture": arch, "spec": spec, "digest": m_digest},
        "dataset": data_info, "n": N, "eps": float(eps), "eps_text": _eps_text(float(eps)),
        "norm": "Linf", "eps_scale": "[0, 1]", "profile": prof.to_dict(), "seed": seed,
        "grid": {k: list(v) for k, v in grid.items()}, "bits": bits,
        "points": results, "transfer": transfer, "baselines": base_rows,
        "cache": {"dir": None if cache_dir is None else str(cache_dir), "hits": cache.hits,
                  "writes": cache.writes},
        "seconds": time.perf_counter() - t_start, "provenance": provenance(device),
    }
    return RobustnessReport(data_out)


def _eps_text(eps: float) -> str:
    """``0.2`` -> ``"0.2"``, ``8/255`` -> ``"8/255"`` (whichever is exact and shorter)."""
    short = f"{eps:g}"
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and (len(short) > 5 or float(short) != eps):
        return f"{round(k)}/255"
    return short


def _evaluate_point(model: nn.Module, point: dict[str, Any], label: str, x: Tensor, y: Tensor, *,
                    eps: float, profile: Profile, cache: ReportCache, batch_size: int, seed: int,
                    source: nn.Module | None, fold: bool, checks: bool, latency: bool, bits: int,
                    shape: Sequence[int], show: bool) -> tuple[PointEvaluator, dict[str, Any]]:
    t0 = time.perf_counter()
    adaptive = point.get("exit") == "adaptive"
    with eval_context(model, point):
        torch.manual_seed(seed)
        stochastic = is_stochastic(model, x[:batch_size])
        target, fold_info = model, {"folded": False, "reason": "stochastic point" if stochastic
                                    else "fold disabled"}
        if fold and not stochastic:
            plain, fold_info = _fold(model, point, x, batch_size, shape)
            if plain is not None:
                target = plain
        pe = PointEvaluator(model, target, x, y, point=point, label=label, eps=eps, profile=profile,
                            cache=cache, stochastic=stochastic, batch_size=batch_size, seed=seed,
                            source=source, adaptive=adaptive)
        steps = [pe.clean, pe.autoattack, pe.pgd]
        if checks:
            steps += [pe.fgsm, pe.sweeps, pe.square, pe.transfer]
        if adaptive:
            steps.append(pe.early_exit)
        from tqdm.auto import tqdm

        for fn in tqdm(steps, desc=label, unit="attack", leave=False, disable=not show):
            fn()
        zero = pe.zero_gradients() if checks else None
        res: dict[str, Any] = {"dials": dict(point), "label": label, "stochastic": stochastic,
                               "evaluated_on": fold_info}
        res["accuracy"] = {k: _pct(v) for k, v in pe.flags.items()}
        res["attacks"] = {k: v["attack"] for k, v in pe.info.items()}
        res["attack_seconds"] = {k: v["seconds"] for k, v in pe.info.items()}
        at_eps = [k for k in pe.flags if k != "clean" and k != "unbounded"
                  and not (k.startswith("eps=") and abs(float(k[4:]) - eps) > 1e-9)]
        alive = torch.stack([pe.flags[k] for k in at_eps]).all(0) if at_eps else pe.flags["clean"]
        res["worst_case"] = {"accuracy": _pct(alive), "attacks": at_eps,
                             "definition": "a sample counts only if it survives every attack "
                                           "listed (all at the point's ε)"}
        found = _judge(pe, profile, eps, point, zero) if checks else []
        if stochastic:
            found.append(_randomized_check(pe, point))
        if checks or stochastic:
            res["checks"] = [c.to_dict() for c in found]
            res["checks_passed"] = all(c["passed"] is not False for c in res["checks"])
        cost_dials = {**point, "exit": None} if adaptive else point  # adaptive: the backbone's cost
        res["cost"] = cost_report(model, shape, dials=cost_dials, bits=bits)
        res["cost"]["bits"] = bits
        if latency:
            res["latency"] = point_latency(pe, model, point, shape, target if target is not model else None)
        if adaptive:
            res["early_exit"] = early_exit_stats(pe, model)
    res["seconds"] = time.perf_counter() - t0
    return pe, res


def _transfer(points: list[dict[str, Any]], evs: list[PointEvaluator]) -> dict[str, Any]:
    """Adversarial examples of point i (AutoAttack's and PGD's) classified at point j."""
    labels = [condition_label(p) for p in points]
    k = len(points)
    matrix = [[math.nan] * k for _ in range(k)]
    agnostic = []
    for j, ej in enumerate(evs):
        alive_all = ej.flags["clean"].clone()
        with eval_context(ej.model, points[j]):
            for i, ei in enumerate(evs):
                alive = ej.flags["clean"].clone()
                for key in ("autoattack", "pgd"):
                    if key in ei.adv:
                        pred, _ = ej.predict(ei.adv[key])
                        alive &= pred == ej.y
                matrix[i][j] = _pct(alive)
                alive_all &= alive
        worst_j = torch.stack([ej.flags[key] for key in ej.flags if key in ("autoattack", "pgd")]
                              ).all(0)
        agnostic.append(alive_all & worst_j)
    overall = torch.stack(agnostic).all(0)
    return {"labels": labels, "rows": "source point (where the examples were made)",
            "columns": "target point (where they are classified)", "matrix": matrix,
            "examples": "AutoAttack's and PGD's adversarial examples of the source point; a sample "
                        "counts at the target only if it survives both",
            "dial_agnostic": {labels[j]: _pct(a) for j, a in enumerate(agnostic)},
            "dial_agnostic_definition": "at the target point, robust to the examples of every "
                                        "point (own AutoAttack and PGD included)",
            "every_point": _pct(overall)}
