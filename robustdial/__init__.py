"""robustdial: adversarial robustness you can dial at inference time.

Train one model once; at inference choose the accuracy↔robustness trade-off
(λ), the width, the sparsity, the bit-width and the exit — without retraining.

Imports are plain: ``import robustdial as rd`` gives every sub-package
(``rd.attacks``, ``rd.evaluation`` …) and the main functions (``rd.create_model``,
``rd.fit``, ``rd.evaluate``, ``rd.report`` …). No public function shares its
name with a module.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import (attacks, compress, condition, cost, data, engine, evaluation, export, layers, methods,
               models, utils)
from .condition import Condition, conditioned, dial_specs, get_condition, set_condition
from .data import load_dataset
from .engine import CheckpointError, FitConfig, FitResult, fit, load, save
from .evaluation import evaluate, report
from .models import create_model, list_models, register_model

__all__ = ["CheckpointError", "Condition", "FitConfig", "FitResult", "__version__", "attacks",
           "compress", "condition", "conditioned", "cost", "create_model", "data", "dial_specs",
           "engine", "evaluate", "evaluation", "export", "fit", "get_condition", "layers",
           "list_models", "load", "load_dataset", "methods", "models", "register_model", "report", "save",
           "set_condition", "utils"]
