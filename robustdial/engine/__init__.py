"""The training engine: ``fit(model, method, data, FitConfig(...))``, checkpoints, resume, DDP.

Public names: :func:`fit`, :class:`FitConfig`, :class:`FitResult`, :func:`save`,
:func:`load`, :class:`CheckpointError`, :class:`EpsWarmup`, :class:`RunDir`.
"""
from __future__ import annotations

from ._loop import StepInfo
from .checkpoint import CheckpointError, load, load_train_state, read_run_info, save
from .config import ConfigError, FitConfig
from .eps_warmup import EpsWarmup
from .trainer import FitResult, fit
from .optim import build_optimizer, build_scheduler, param_groups
from .rundir import RunDir, RunDirError

__all__ = ["CheckpointError", "ConfigError", "EpsWarmup", "FitConfig", "FitResult", "RunDir", "RunDirError",
           "build_optimizer", "build_scheduler", "fit", "load", "load_train_state", "param_groups",
           "read_run_info", "save", "StepInfo"]
