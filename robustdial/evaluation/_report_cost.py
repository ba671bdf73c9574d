"""Cost at one operating point of the robustness report: latency, early-exit compute saving.

Latency is timed round-robin (:meth:`PointEvaluator.interleaved_latency`): the
module at the point, its folded plain graph (what ``robustdial export`` ships)
and the plain backbone of the same width (and, at a narrower width of a
slimmable model, the plain backbone at the widest width, so that the speed-up
across widths is measured in one round-robin). At an adaptive-exit point the saving
of input-adaptive inference is counted from the exit histograms (the RDI
paper's MFlops convention and what is executed) and measured on the clean
inputs, the AutoAttack examples and the slowdown examples.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..cost.early_exit import exit_costs_mflops, expected_cost
from ._report_point import PointEvaluator

_log = logging.getLogger(__name__)

__all__ = ["early_exit_stats", "point_latency"]


def point_latency(pe: PointEvaluator, model: nn.Module, point: dict[str, Any], shape: Sequence[int],
             folded: nn.Module | None) -> dict[str, Any]:
    """Module at the point (and its folded graph) vs the plain backbone of its width, round-robin.

    ``folded`` is what ``robustdial export`` ships at this point: its latency is
    the deployable one; the module's includes the conditioning machinery.
    """
    from ..export import to_plain

    from ..condition import dial_specs

    base = {"width": point["width"]} if "width" in point else {}
    if "exit" in dial_specs(model):
        base["exit"] = None  # the backbone runs to the final head (the point may be adaptive)
    try:
        backbone = to_plain(model, base, input_shape=shape, noise="off").to(pe.x.device)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"no plain backbone: {type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"convention": "median seconds per forward, round-robin with the plain "
                                          "backbone of the same width (eval mode)",
                           "clock": pe.latency_clock(), "threads": torch.get_num_threads()}
    if point.get("exit") == "adaptive":
        return {**out, **_exit_latency(pe, model, backbone)}
    widest = _widest_backbone(model, point, base, shape, pe.x.device)
    if widest is not None:
        out["widest"] = {"width": widest[0], "convention": "the plain backbone at the widest trained width, "
                         "timed in the same round-robin (a speed-up over it is fair across widths)"}
    for b in (1, 64):
        xb = torch.rand((b, *shape), device=pe.x.device)
        fns = {"model": lambda: model(xb), "backbone": lambda: backbone(xb)}
        if folded is not None:
            fns["folded"] = lambda: folded(xb)
        if widest is not None:
            fns["widest"] = lambda: widest[1](xb)
        t = pe.interleaved_latency(fns)
        out[f"batch{b}"] = {"model_s": t["model"], "backbone_s": t["backbone"],
                            "ratio": t["model"] / t["backbone"]}
        if folded is not None:
            out[f"batch{b}"].update({"folded_s": t["folded"], "folded_ratio": t["folded"] / t["backbone"]})
        if widest is not None:
            out[f"batch{b}"].update({"widest_backbone_s": t["widest"],
                                     "speedup_vs_widest": t["widest"] / t["backbone"]})
    return out


def _widest_backbone(model: nn.Module, point: dict[str, Any], base: dict[str, Any], shape: Sequence[int],
                     device: torch.device) -> tuple[float, nn.Module] | None:
    """``(widest width, its plain backbone)`` when the point runs a narrower width, else None."""
    from ..condition import Choices, dial_specs
    from ..export import to_plain

    spec = dial_specs(model).get("width")
    if "width" not in point or not isinstance(spec, Choices):
        return None
    w = max(float(v) for v in spec.values)
    if float(point["width"]) >= w:
        return None
    try:
        return w, to_plain(model, {**base, "width": w}, input_shape=shape, noise="off").to(device)
    except Exception:  # noqa: BLE001 - the speed-up is an extra; the point's own latency stands
        _log.warning("no plain backbone at width %s: speed-up over the widest width not measured", w)
        return None


def _exit_latency(pe: PointEvaluator, model: nn.Module, backbone: nn.Module) -> dict[str, Any]:
    """Measured saving of adaptive inference on clean, attacked and slowed inputs.

    Two settings: one input at a time (``batch1``, per-request inference: an
    input that exits early skips the rest of the network) and batches of 64
    (``batch64``: the survivors of each exit run on as a smaller batch). The
    saving is ``1 − t(adaptive) / t(backbone)`` on the same images, timed
    round-robin; ``measured_saving`` is the batch-1 one.
    """
    from ..models.early_exit import adaptive_forward

    out: dict[str, Any] = {}
    thr = model.thresholds()  # the thresholds dial, else the stored ones (as model(x) uses)
    sets = {"clean": pe.x, **{k: pe.adv[k] for k in ("autoattack", "slowdown") if k in pe.adv}}
    for name, xs in sets.items():
        res: dict[str, Any] = {}
        for b, n in ((1, min(64, xs.shape[0])), (64, min(256, xs.shape[0]))):
            chunks = [xs[i:i + b] for i in range(0, n, b)]
            t = pe.interleaved_latency({
                "adaptive": lambda: [adaptive_forward(model, c, thr) for c in chunks],
                "backbone": lambda: [backbone(c) for c in chunks]}, repeats=5 if b == 1 else 7, warmup=1)
            res[f"batch{b}"] = {"adaptive_s": t["adaptive"], "backbone_s": t["backbone"],
                                "saving": 1.0 - t["adaptive"] / t["backbone"], "images": n}
        out[name] = {**res, "measured_saving": res["batch1"]["saving"]}
    return out


def early_exit_stats(pe: PointEvaluator, model: nn.Module) -> dict[str, Any]:
    costs = exit_costs_mflops(model)
    costs_run = exit_costs_mflops(model, "executed")
    k = len(costs)
    out: dict[str, Any] = {"exit_mflops_rdi": costs, "exit_mflops_executed": costs_run,
                           "backbone_mflops": costs[-1], "inputs": {}}
    for name, idx in pe.exits.items():
        counts = torch.bincount(idx.cpu(), minlength=k).tolist()
        out["inputs"][name] = {"exit_histogram": counts, "rdi": expected_cost(counts, costs),
                               "executed": expected_cost(counts, costs_run, backbone_mflops=costs[-1],
                                                         convention="executed")}
    clean = out["inputs"].get("clean")
    slow = out["inputs"].get("slowdown")
    if clean and slow:
        for conv in ("rdi", "executed"):
            s_clean, s_slow = clean[conv]["saving"], slow[conv]["saving"]
            out[f"saving_kept_under_slowdown_{conv}"] = (s_slow / s_clean) if s_clean > 0 else math.nan
    return out
