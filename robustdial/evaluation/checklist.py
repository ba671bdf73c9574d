"""Gradient-obfuscation checklist (Athalye, Carlini, Wagner, ICML 2018, Sec. 3.1).

FLOAT (Kundu et al., WACV 2023) Table 2 backs its robustness numbers with five
tests that a model whose robustness comes from masked or obfuscated gradients
tends to fail. For each condition (dial setting) of the model:

1. ``fgsm_vs_pgd``: single-step FGSM is not stronger than iterative PGD
   (accuracy under FGSM ≥ accuracy under PGD − tol).
2. ``transfer_vs_whitebox``: black-box transfer examples crafted with PGD on an
   independently trained ``source_model`` are not stronger than white-box PGD
   (transfer accuracy ≥ white-box accuracy − tol). Skipped without a source.
3. ``eps_sweep``: accuracy does not increase with ε (within tol) and the largest
   ε drives it to ≈ 0 % (≤ ``zero_acc``).
4. ``steps_sweep``: accuracy does not increase with the PGD step count (within
   tol) and flattens (the last two differ by ≤ ``flat_tol``).
5. ``unbounded``: PGD with ε = 1 (the whole image range) reaches ≈ 0 %.

Every attack is run by :func:`robustdial.evaluation.evaluate` (eval-mode BN,
seeded random starts). Accuracies are % of the evaluated samples; ε and step
sizes are on the [0, 1] pixel scale.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks import FGSM, PGD
from robustdial.condition import conditioned
from robustdial.utils import train_mode

from .result import condition_label
from .runner import evaluate

__all__ = ["CheckResult", "ChecklistResult", "TransferAttack", "judge_checks", "obfuscation_checklist"]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One test at one condition: ``passed`` is None when the test was skipped."""

    condition: dict[str, Any]
    name: str
    passed: bool | None
    numbers: dict[str, Any]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ChecklistResult:
    """All checks; ``passed`` is True when no check failed (skipped ones don't count)."""

    checks: list[CheckResult]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed is False]

    def to_table(self) -> str:
        rows = [("condition", "check", "result", "numbers")]
        for c in self.checks:
            res = "skip" if c.passed is None else ("PASS" if c.passed else "FAIL")
            rows.append((condition_label(c.condition), c.name, res, c.detail))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}" for r in rows)

    def __str__(self) -> str:
        return self.to_table()

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks],
                "meta": self.meta}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=str)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text


class TransferAttack:
    """Black-box transfer: ``attack(model, x, y)`` ignores ``model`` and attacks ``source``.

    Args:
        source: an independently trained model (eval-mode BN during the attack).
        attack: the attack run on ``source``.
        condition: dials set on ``source`` while attacking (``{}`` = as is).
    """

    def __init__(self, source: nn.Module, attack: Any, condition: dict[str, Any] | None = None) -> None:
        self.source, self.attack, self.condition = source, attack, dict(condition or {})

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with train_mode(self.source, False):
            if self.condition:
                with conditioned(self.source, **self.condition):
                    return self.attack(self.source, x, y)
            return self.attack(self.source, x, y)

    def __repr__(self) -> str:
        return f"Transfer({self.attack!r})"


def _non_increasing(accs: Sequence[float], tol: float) -> bool:
    return all(b <= a + tol for a, b in zip(accs, accs[1:]))


def judge_checks(acc: Mapping[str, float], cond: dict[str, Any], *, clean: float, n: int,
                 eps_sweep: Sequence[float], steps_sweep: Sequence[int], pgd_name: str = "PGD",
                 unbounded_name: str = "ε=1 PGD", tol: float = 1.0, flat_tol: float = 2.0,
                 zero_acc: float = 2.0) -> list[CheckResult]:
    """The five tests judged from accuracies (%) already measured.

    Args:
        acc: accuracy per attack: ``"fgsm"``, ``"pgd"`` (white-box at ε),
            optionally ``"transfer"``, ``"eps=<e:.6g>"`` for every radius of
            ``eps_sweep``, ``"steps=<k>"`` for every count of ``steps_sweep``,
            and ``"unbounded"``.
        cond: the dials the accuracies were measured at.
        clean: clean accuracy (%).
        n: number of evaluated samples (the slacks are at least one sample).
        eps_sweep, steps_sweep: the sweeps, in increasing order.
        pgd_name, unbounded_name: names of those attacks in the details.
        tol, flat_tol, zero_acc: see :func:`obfuscation_checklist`.
    """
    one = 100.0 / max(n, 1) + 1e-9  # one sample, in pp
    tol, flat_tol = max(tol, one), max(flat_tol, one)
    checks: list[CheckResult] = []
    f, p = acc["fgsm"], acc["pgd"]
    checks.append(CheckResult(cond, "fgsm_vs_pgd", f >= p - tol, {"fgsm": f, "pgd": p, "clean": clean},
                              f"FGSM {f:.2f}% vs {pgd_name} {p:.2f}% (clean {clean:.2f}%)"))
    if "transfer" in acc:
        t = acc["transfer"]
        checks.append(CheckResult(cond, "transfer_vs_whitebox", t >= p - tol,
                                  {"transfer": t, "whitebox": p},
                                  f"transfer {t:.2f}% vs white-box {p:.2f}%"))
    else:
        checks.append(CheckResult(cond, "transfer_vs_whitebox", None, {},
                                  "skipped: no source model (an independently trained baseline) given"))
    e_acc = [acc[f"eps={e:.6g}"] for e in eps_sweep]
    ok = _non_increasing(e_acc, tol) and e_acc[-1] <= zero_acc
    checks.append(CheckResult(cond, "eps_sweep", ok, {"eps": list(eps_sweep), "acc": e_acc},
                              "ε " + ", ".join(f"{e:.3g}:{a:.1f}%" for e, a in zip(eps_sweep, e_acc))))
    s_acc = [acc[f"steps={k}"] for k in steps_sweep]
    ok = _non_increasing(s_acc, tol) and abs(s_acc[-1] - s_acc[-2]) <= flat_tol
    checks.append(CheckResult(cond, "steps_sweep", ok, {"steps": list(steps_sweep), "acc": s_acc},
                              "k " + ", ".join(f"{k}:{a:.1f}%" for k, a in zip(steps_sweep, s_acc))))
    u = acc["unbounded"]
    checks.append(CheckResult(cond, "unbounded", u <= zero_acc, {"acc": u}, f"{unbounded_name}: {u:.2f}%"))
    return checks


def obfuscation_checklist(model: nn.Module, data: Any, *, eps: float,
                          conditions: Sequence[dict[str, Any]] | None = None,
                          source_model: nn.Module | None = None,
                          source_condition: dict[str, Any] | None = None,
                          steps: int = 20, alpha: float | None = None,
                          eps_sweep: Sequence[float] | None = None,
                          steps_sweep: Sequence[int] = (1, 2, 5, 10, 20, 50),
                          unbounded_steps: int = 50, tol: float = 1.0, flat_tol: float = 2.0,
                          zero_acc: float = 2.0, batch_size: int = 256,
                          max_samples: int | None = None, seed: int = 0,
                          device: torch.device | str | None = None) -> ChecklistResult:
    """Run the five obfuscation tests at every condition.

    Args:
        model: the defended classifier (already on ``device``).
        data: ``ImageData`` or ``(x in [0, 1], y)`` tensors (the test split).
        eps: L∞ threat radius on the [0, 1] scale (e.g. 8/255 CIFAR, 0.3 MNIST).
        conditions: dial dicts, e.g. ``[{"lam": 0.0}, {"lam": 1.0}]``; ``None`` = as is.
        source_model: independently trained model for the transfer test.
        source_condition: dials set on ``source_model`` while attacking.
        steps: white-box PGD steps (PGD-20 by default).
        alpha: white-box PGD step size (default 2.5·ε/steps, Madry et al.).
        eps_sweep: radii of test 3 (default ε·{¼, ½, 1, 2, 4, 8}, capped at 1).
        steps_sweep: PGD step counts of test 4 (each with step 2.5·ε/k).
        unbounded_steps: PGD steps of test 5 (ε = 1, step 2.5/k).
        tol: slack (percentage points) for the ordering tests (1, 2 and monotonicity).
        flat_tol: max. change (pp) between the last two step counts of test 4.
            Both slacks are raised to at least one sample (100/n pp) on small sets.
        zero_acc: accuracy (%) counted as "≈ 0 %" in tests 3 and 5.
        batch_size, max_samples, seed, device: as :func:`~robustdial.evaluation.evaluate`.

    Returns:
        :class:`ChecklistResult` (table via ``str``, JSON via ``to_json``).
    """
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be in (0, 1] on the [0, 1] pixel scale, got {eps!r}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if eps_sweep is None:
        eps_sweep = sorted({min(1.0, eps * k) for k in (0.25, 0.5, 1, 2, 4, 8)})
    eps_sweep = sorted(float(e) for e in eps_sweep)
    steps_sweep = sorted(int(k) for k in steps_sweep)
    if len(steps_sweep) < 2:
        raise ValueError("steps_sweep needs at least two step counts to judge an asymptote")

    pgd = PGD(eps=eps, alpha=alpha, steps=steps)
    attacks: dict[str, Any] = {"fgsm": FGSM(eps=eps), "pgd": pgd}
    if source_model is not None:
        attacks["transfer"] = TransferAttack(source_model, pgd, source_condition)
    for e in eps_sweep:
        attacks[f"eps={e:.6g}"] = PGD(eps=e, alpha=min(1.0, 2.5 * e / steps), steps=steps)
    for k in steps_sweep:
        attacks[f"steps={k}"] = PGD(eps=eps, alpha=min(1.0, 2.5 * eps / k), steps=k)
    attacks["unbounded"] = PGD(eps=1.0, alpha=2.5 / unbounded_steps, steps=unbounded_steps)

    checks: list[CheckResult] = []
    tables = []
    for cond in (conditions if conditions is not None else [{}]):
        cond = dict(cond)
        res = evaluate(model, data, attacks, [cond], batch_size=batch_size, device=device,
                       max_samples=max_samples, seed=seed)
        tables.append(res.to_dict())
        acc = {r.attack: r.robust_acc for r in res.rows}
        checks += judge_checks(acc, cond, clean=res.rows[0].clean_acc, n=res.rows[0].n,
                               eps_sweep=eps_sweep, steps_sweep=steps_sweep, pgd_name=f"PGD-{steps}",
                               unbounded_name=f"ε=1 PGD-{unbounded_steps}", tol=tol,
                               flat_tol=flat_tol, zero_acc=zero_acc)

    meta = {"eps": eps, "steps": steps, "alpha": alpha, "tol": tol, "flat_tol": flat_tol,
            "zero_acc": zero_acc, "evaluations": tables,
            "attacks": {k: repr(v) for k, v in attacks.items()}}
    return ChecklistResult(checks=checks, meta=meta)
