"""Multi-exit evaluation in the layout of RDI-Nets Tables 2–4.

Hu, Chen, Wang, Wang, "Triple Wins" (RDI-Nets), ICLR 2020, Sec. 4. For one
attacker algorithm (default PGD, L∞, random start) every attack form of
:mod:`robustdial.attacks.multi_exit` makes adversarial examples, which are
then classified with input-adaptive inference (entropy early exit):

* TA: clean accuracy of adaptive inference;
* ATA per form: Branch 1…K (single attacks on the side exits), Main Branch,
  Average, Max-Average, and Random (App. D);
* ATA (Worst-Case): the minimum over the K+3 deterministic forms (Random is
  not part of it, as in the paper); also the stricter per-sample worst case
  (a sample counts only if it survives every one of those forms);
* Average MFlops (conv MACs / 2²⁰ per image) and computation saving against
  the backbone (final exit), on clean and on adversarial inputs, in the
  paper's convention and, under ``"executed"``, with the heads each sample
  passed before it exited (what adaptive inference really runs);
* per-exit accuracy and exit histograms.

Accuracies are in %. Max-Average reuses the single attacks' candidates
(Eq. 4 selects among exactly those), which halves the attack cost.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks import PGD, Attack, parse_attack
from robustdial.attacks.multi_exit import (
    RandomFusion,
    WORST_CASE_EXCLUDED,
    average_loss,
    select_max_average,
    single_exit_loss,
    with_loss,
)
from robustdial.cost.early_exit import exit_costs_mflops, expected_cost
from robustdial.models.early_exit import adaptive_forward, iter_batches, resolve_thresholds, select_exits
from robustdial.utils import model_device, train_mode

from ._provenance import provenance

__all__ = ["MultiExitReport", "default_step", "report"]


@dataclasses.dataclass
class MultiExitReport:
    """Result of :func:`report`. Accuracies in %, costs in RDI "MFlops".

    Attributes:
        ta: clean accuracy of adaptive inference (%).
        ata: attacker name -> form -> accuracy of adaptive inference on that
            form's adversarial examples (%).
        worst_case: attacker -> ``{"form", "ata", "ata_per_sample"}``.
        cost: ``"clean"`` and ``"<attacker>/<form>"`` -> expected-cost dict
            (:func:`robustdial.cost.early_exit.expected_cost`).
        exit_acc: ``"clean"`` and ``"<attacker>/<form>"`` -> accuracy of each
            exit on all samples (%).
        thresholds: entropy thresholds used (nats).
        meta: settings, sample count, timings, provenance.
    """

    ta: float
    ata: dict[str, dict[str, float]]
    worst_case: dict[str, dict[str, Any]]
    cost: dict[str, dict[str, Any]]
    exit_acc: dict[str, list[float]]
    thresholds: list[float]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def histograms(self) -> dict[str, list[int]]:
        """Label -> exit counts, for :func:`robustdial.cost.early_exit.plot_exit_histograms`."""
        return {k: v["counts"] for k, v in self.cost.items()}

    def to_table(self) -> str:
        """Text table with the rows of RDI-Nets Tables 2–4 (one column per attacker)."""
        names = list(self.ata)
        rows: list[tuple[str, list[str]]] = [("TA", [f"{self.ta:.2f}%"] * len(names))]
        forms = list(dict.fromkeys(f for a in names for f in self.ata[a]))
        label = {"main": "Main Branch", "average": "Average", "max-average": "Max-Average",
                 "random": "Random"}
        for f in forms:
            name = label.get(f, f.replace("branch", "Branch "))
            rows.append((f"ATA ({name})", [_pct(self.ata[a].get(f)) for a in names]))
        rows.append(("ATA (Worst-Case)", [_pct(self.worst_case[a]["ata"]) for a in names]))
        rows.append(("ATA (Worst, per sample)",
                     [_pct(self.worst_case[a]["ata_per_sample"]) for a in names]))
        clean = self.cost["clean"]
        rows.append(("Average MFlops (clean)", [f"{clean['mflops']:.2f}"] * len(names)))
        rows.append(("Computation Saving (clean)", [f"{100 * clean['saving']:.2f}%"] * len(names)))
        if "executed" in clean:
            rows.append(("  executed, heads included", [f"{100 * clean['executed']['saving']:.2f}%"]
                         * len(names)))
        adv = [self.cost.get(f"{a}/{self.worst_case[a]['form']}") for a in names]
        rows.append(("Average MFlops (worst-case adv)",
                     [f"{c['mflops']:.2f}" if c else "-" for c in adv]))
        width = max(len(r[0]) for r in rows) + 2
        colw = max([12] + [len(n) + 2 for n in names])
        lines = [" " * width + "".join(n.rjust(colw) for n in names)]
        lines += [r[0].ljust(width) + "".join(v.rjust(colw) for v in r[1]) for r in rows]
        lines.append("")
        lines.append("per-exit clean accuracy: " + ", ".join(f"{a:.2f}" for a in self.exit_acc["clean"]))
        lines.append("exits taken (clean): " + " / ".join(str(c) for c in clean["counts"]))
        lines.append(f"thresholds: {[round(t, 4) for t in self.thresholds]}; "
                     f"{self.meta['samples']} samples; MFlops = conv MACs / 2^20")
        return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


# RDI-Nets' own PGD settings (Sec. 4): ε, step counts -> step size, all on the [0, 1] scale
_PAPER_STEPS = ((8 / 255, (10, 20), 2 / 255),  # CIFAR-10: PGD-10 defence, PGD-20 evaluation
                (0.3, (40,), 0.01))            # MNIST: PGD-40 for defence and attack


def default_step(eps: float, steps: int) -> float:
    """The default PGD step of the report: the paper's where its setting matches, else 2.5·ε/steps.

    RDI-Nets uses step 2/255 with PGD-10/20 at ε = 8/255 (CIFAR-10) and 0.01 with
    PGD-40 at ε = 0.3 (MNIST); any other (ε, steps) gets Madry et al.'s strong
    default 2.5·ε/steps, which lets the iterates cross the ε-ball 2.5 times.
    """
    for paper_eps, paper_steps, step in _PAPER_STEPS:
        if math.isclose(eps, paper_eps, rel_tol=1e-6) and steps in paper_steps:
            return step
    return 2.5 * eps / steps


def _attackers(attacks: Any, eps: float, alpha: float | None, steps: int) -> dict[str, Attack]:
    if attacks is None:
        a = PGD(eps=eps, alpha=alpha if alpha is not None else default_step(eps, steps), steps=steps)
        return {f"pgd-{steps}": a}
    if isinstance(attacks, (Attack, str)):
        attacks = [attacks]
    if isinstance(attacks, Mapping):
        items = list(attacks.items())
    elif isinstance(attacks, Sequence):
        items = [(a if isinstance(a, str) else repr(a), a) for a in attacks]
    else:
        raise TypeError("attacks must be None, an Attack, a spec string such as 'pgd-20', "
                        "a list of those or a dict name -> attack")
    out: dict[str, Attack] = {}
    for name, a in items:
        if isinstance(a, str):
            a = parse_attack(a, eps=eps)
        if not isinstance(a, Attack):
            raise TypeError(f"attack {name!r} must be a robustdial Attack (its loss is swapped "
                            "per attack form), got {type(a).__name__}")
        out[name] = a
    return out


def report(model: nn.Module, data: Any, *, eps: float, alpha: float | None = None, steps: int = 20,
           attacks: Any = None, thresholds: Sequence[float] | None = None,
           forms: Sequence[str] | None = None, max_samples: int | None = None,
           batch_size: int = 256, seed: int = 0,
           device: torch.device | str | None = None) -> MultiExitReport:
    """Evaluate a multi-exit model as RDI-Nets Tables 2–4 do.

    Args:
        model: multi-exit model (``forward_exits``, ``segments``/``heads``,
            ``exit_macs``), on ``device``; evaluated in eval mode (restored).
        data: ``ImageData``, ``(x, y)`` tensors (x in [0, 1] or uint8), or
            ``(x, y)`` batches.
        eps: L∞ radius on the [0, 1] scale (0.3 MNIST, 8/255 CIFAR-10).
        alpha: PGD step on the [0, 1] scale; default :func:`default_step`:
            the paper's (2/255 for PGD-20 at ε 8/255 on CIFAR-10, 0.01 for
            PGD-40 at ε 0.3 on MNIST), else 2.5·ε/steps.
        steps: PGD iterations (paper: 40 on MNIST, 20 on CIFAR-10).
        attacks: attacker algorithm(s) instead of the default PGD: an Attack,
            a spec (``"pgd-20"``, ``"fgsm"``, ``"wrm-15"``), a list, or a dict.
        thresholds: entropy thresholds (nats) overriding the model's stored ones.
        forms: subset of forms to run (``"branch1"``, …, ``"main"``,
            ``"average"``, ``"max-average"``, ``"random"``); default all.
        max_samples: evaluate only the first ``max_samples`` samples.
        batch_size: samples per attack call.
        seed: seeds the global RNG (random starts, random fusion) for the
            call; the caller's RNG state is restored.
        device: where to run (default the model's device).

    Returns:
        :class:`MultiExitReport` (``.to_table()``, ``.to_dict()``).
    """
    n = getattr(model, "num_exits", None)
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"{type(model).__name__} has {n or 1} exit(s): the multi-exit report needs "
                         "early exits (create_model(name, exits=True)); evaluate a single-head "
                         "model with robustdial.evaluation.evaluate")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    device = torch.device(device) if device is not None else model_device(model)
    t = resolve_thresholds(model, thresholds)
    costs = exit_costs_mflops(model)
    costs_run = exit_costs_mflops(model, "executed")
    attackers = _attackers(attacks, eps, alpha, steps)
    all_forms = [f"branch{i + 1}" for i in range(n - 1)] + ["main", "average", "max-average", "random"]
    forms = list(all_forms if forms is None else forms)
    bad = [f for f in forms if f not in all_forms]
    if bad:
        raise ValueError(f"unknown attack form(s) {bad}; valid: {all_forms}")
    single_needed = {i for i in range(n) if _single_name(i, n) in forms}
    if "max-average" in forms:
        single_needed = set(range(n))

    acc: dict[str, Any] = {"clean": torch.zeros(n + 1), "count": 0}
    exits: dict[str, list[Tensor]] = {"clean": []}
    correct: dict[str, list[Tensor]] = {}
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            train_mode(model, False):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        for x, y in iter_batches(data, batch_size, device=device):
            if max_samples is not None:
                left = max_samples - acc["count"]
                if left <= 0:
                    break
                x, y = x[:left], y[:left]
            acc["count"] += x.shape[0]
            with torch.no_grad():
                logits, idx = adaptive_forward(model, x, t)
                outs = model.forward_exits(x)
            acc["clean"][:n] += torch.stack([(o.argmax(1) == y).sum() for o in outs]).cpu().float()
            acc["clean"][n] += (logits.argmax(1) == y).sum().cpu().float()
            exits["clean"].append(idx.cpu())
            for aname, attack in attackers.items():
                advs: dict[str, Tensor] = {}
                cands: dict[int, Tensor] = {}
                for i in sorted(single_needed):
                    cands[i] = with_loss(attack, single_exit_loss(i))(model, x, y)
                    if _single_name(i, n) in forms:
                        advs[_single_name(i, n)] = cands[i]
                if "average" in forms:
                    advs["average"] = with_loss(attack, average_loss)(model, x, y)
                if "max-average" in forms:
                    advs["max-average"], _ = select_max_average(model, [cands[i] for i in range(n)], y)
                if "random" in forms:
                    advs["random"] = RandomFusion(lambda loss: with_loss(attack, loss),
                                                  generator=gen)(model, x, y)
                for f in forms:
                    key = f"{aname}/{f}"
                    with torch.no_grad():
                        outs = model.forward_exits(advs[f])
                    sel, e = select_exits(outs, t)
                    per_exit = torch.stack([(o.argmax(1) == y).sum() for o in outs]).cpu().float()
                    acc[key] = acc.get(key, torch.zeros(n)) + per_exit
                    correct.setdefault(key, []).append((sel.argmax(1) == y).cpu())
                    exits.setdefault(key, []).append(e.cpu())
    if acc["count"] == 0:
        raise ValueError("no samples to evaluate")
    N = acc["count"]
    ata: dict[str, dict[str, float]] = {a: {} for a in attackers}
    worst: dict[str, dict[str, Any]] = {}
    for aname in attackers:
        for f in forms:
            ata[aname][f] = 100.0 * float(torch.cat(correct[f"{aname}/{f}"]).float().mean())
        pool = [f for f in forms if f not in WORST_CASE_EXCLUDED]
        wf = min(pool, key=ata[aname].__getitem__) if pool else None
        per_sample = None
        if pool:
            alive = torch.stack([torch.cat(correct[f"{aname}/{f}"]) for f in pool]).all(dim=0)
            per_sample = 100.0 * float(alive.float().mean())
        worst[aname] = {"form": wf, "ata": ata[aname][wf] if wf else None,
                        "ata_per_sample": per_sample, "forms": pool}
    cost = {}
    for k, v in exits.items():
        counts = torch.bincount(torch.cat(v), minlength=n).tolist()
        cost[k] = {**expected_cost(counts, costs),
                   "executed": expected_cost(counts, costs_run, backbone_mflops=costs[-1],
                                             convention="executed")}
    exit_acc = {"clean": (100.0 * acc["clean"][:n] / N).tolist()}
    exit_acc.update({k: (100.0 * v / N).tolist() for k, v in acc.items()
                     if k not in ("clean", "count")})
    meta = {"samples": N, "eps": eps, "eps_scale": "[0, 1]",
            "attackers": {k: repr(v) for k, v in attackers.items()}, "forms": forms,
            "seconds": time.perf_counter() - t0, "exit_mflops": costs,
            "exit_mflops_executed": costs_run,
            "worst_case_definition": "min over the K+3 forms (K branches, main, average, "
                                     "max-average); random excluded as in the paper",
            "provenance": provenance(device)}
    return MultiExitReport(ta=100.0 * float(acc["clean"][n]) / N, ata=ata, worst_case=worst,
                           cost=cost, exit_acc=exit_acc, thresholds=t.tolist(), meta=meta)


def _single_name(i: int, n: int) -> str:
    return "main" if i == n - 1 else f"branch{i + 1}"
