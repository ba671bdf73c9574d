"""Evaluation: conditions × attacks -> rows of clean / robust accuracy; plots; provenance.

The package is ``robustdial.evaluation``; the function is ``robustdial.evaluate``
(and ``robustdial.evaluation.evaluate``): no public function shares its name
with a module, so neither can shadow the other whatever was imported first.

``evaluate(model, data, {"pgd-20": PGD(steps=20)}, [{"lam": 0.0}, {"lam": 1.0}])``
returns an :class:`EvalResult` (table, CSV, JSON).
"""
from __future__ import annotations

from .plots import plot_tradeoff, tradeoff_points
from ._provenance import provenance
from .result import EvalResult, EvalRow, condition_label
from .robustness_report import RobustnessReport, default_grid, report
from .runner import evaluate

__all__ = [
    "EvalResult",
    "EvalRow",
    "condition_label",
    "evaluate",
    "plot_tradeoff",
    "provenance",
    "RobustnessReport",
    "default_grid",
    "report",
    "tradeoff_points",
]

