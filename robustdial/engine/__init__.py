"""The training engine: ``fit(model, method, data, FitConfig(...))``, checkpoints, resume, DDP.

Public names: :func:`fit`, :class:`FitConfig`, :class:`FitResult`, :func:`save`,
:func:`load`, :class:`CheckpointError`, :class:`EpsWarmup`.
"""
from __future__ import annotations

from ._loop import StepInfo
from .checkpoint import CheckpointError, load, load_train_state, read_run_info, save
from .config import FitConfig
from .eps_warmup import EpsWarmup
from .trainer import FitResult, fit
from .optim import build_optimizer, build_scheduler, param_groups

__all__ = ["CheckpointError", "EpsWarmup", "FitConfig", "FitResult", "build_optimizer", "build_scheduler", "fit",
           "load", "load_train_state", "param_groups", "read_run_info", "save", "StepInfo"]
