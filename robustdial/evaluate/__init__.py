"""Evaluation: conditions × attacks -> rows of clean / robust accuracy; plots; provenance.

``evaluate(model, data, {"pgd-20": PGD(steps=20)}, [{"lam": 0.0}, {"lam": 1.0}])``
returns an :class:`EvalResult` (table, CSV, JSON).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from .plots import plot_tradeoff, tradeoff_points
from .provenance import provenance
from .result import EvalResult, EvalRow, condition_label
from .runner import evaluate

__all__ = [
    "EvalResult",
    "EvalRow",
    "condition_label",
    "evaluate",
    "plot_tradeoff",
    "provenance",
    "tradeoff_points",
]


class _CallablePackage(types.ModuleType):
    """``robustdial.evaluate`` is both this package and the function.

    The top-level lazy export ``robustdial.evaluate`` resolves to the function
    only until the sub-package is imported, after which Python binds the
    package under the same name; making the package callable keeps
    ``rd.evaluate(model, data, ...)`` working either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> EvalResult:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
