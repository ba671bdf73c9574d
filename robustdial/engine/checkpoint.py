"""Checkpoint directories and resumable training state.

A checkpoint is a directory::

    model.safetensors   the weights (safetensors: no code can hide in it)
    run.json            model name + options (``model.rd_spec``), method config,
                        supported dials, dataset, metrics, seed, FitConfig,
                        robustdial / torch versions, git commit, sha256 of the weights

:func:`load` rebuilds the model from the directory alone with
``create_model(**rd_spec)``; a ``run.json`` of another ``format`` or without
the weights' sha256 is refused (the weights could not be checked).

Resumable state (``train_state.pt``: model, optimizer, scheduler, RNG states,
epoch, step, transforms, the method's own state, GradScaler, and what
identifies the run: model spec, method config, data set) holds only tensors
and plain Python values, so it loads with ``weights_only=True``: a tampered
pickle is refused, never executed. Every write goes to a temporary file first
and is moved into place with ``os.replace`` (atomic on POSIX).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils import rng_state as rng_state_plain  # noqa: F401  (re-exported)
from ..utils import set_rng_state as set_rng_state_plain  # noqa: F401

__all__ = ["CheckpointError", "check_dir", "save", "load", "save_train_state", "load_train_state",
           "rng_state_plain", "set_rng_state_plain", "unwrap", "sha256_file"]

_log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
RUN_JSON = "run.json"
TRAIN_STATE = "train_state.pt"
FORMAT = "robustdial-checkpoint/1"
_STATE_KEYS = ("epoch", "epoch_step", "step", "model", "optimizer", "scheduler", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, tampered with or does not fit the model."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str | None:
    """The repository's HEAD commit (``+dirty`` if modified), or ``None`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def _jsonable(obj: Any) -> Any:
    """Tensors, tuples, paths and numpy scalars as JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _dials(model: nn.Module) -> dict[str, str]:
    from robustdial.condition import dial_specs

    return {name: spec.describe() for name, spec in dial_specs(model).items()}


def save(model: nn.Module, path: str | os.PathLike[str], run_info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a checkpoint directory.

    Args:
        model: the model (DDP / compiled wrappers are unwrapped). Models from
            ``create_model`` carry ``rd_spec`` so :func:`load` can rebuild them.
        path: directory (created if needed; its files are replaced).
        run_info: extra provenance for ``run.json`` (method, dataset, metrics,
            seed, fit_config …).

    Returns:
        The directory.
    """
    from safetensors.torch import save_model

    import robustdial

    model = unwrap(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (WEIGHTS + ".tmp")
    save_model(model, str(tmp))  # drops duplicate names of tied tensors
    os.chmod(tmp, 0o644)  # safetensors creates it owner-only
    digest = sha256_file(tmp)
    os.replace(tmp, path / WEIGHTS)
    spec = getattr(model, "rd_spec", None)
    info = {
        "format": FORMAT,
        "model": spec,
        "dials": _dials(model),
        **(run_info or {}),
        "sha256": {WEIGHTS: digest},
        "robustdial_version": robustdial.__version__,
        "torch_version": torch.__version__,
        "git_commit": _git_commit(),
    }
    _atomic_write_text(path / RUN_JSON, json.dumps(_jsonable(info), indent=2, sort_keys=False) + "\n")
    return path


def read_run_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of a checkpoint directory as a dict.

    Raises:
        CheckpointError: missing, not a JSON object, or not of this robustdial's
            checkpoint ``format``.
    """
    file = Path(path) / RUN_JSON
    if not file.is_file():
        raise CheckpointError(f"{file}: not found; a checkpoint directory holds {WEIGHTS} and {RUN_JSON}")
    try:
        info = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(info).__name__}")
    fmt = info.get("format")
    if fmt != FORMAT:
        what = "has no 'format' field" if fmt is None else f"has format {fmt!r}"
        raise CheckpointError(f"{file} {what}; this robustdial reads {FORMAT!r} checkpoints only "
                              "(written by robustdial.engine.save). Re-save the model with this "
                              "version, or load it with a version that knows that format")
    return info


def check_dir(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Check a checkpoint directory without building the model.

    Args:
        path: the directory written by :func:`save`.
        verify: also hash the weights and compare with ``run.json``.

    Returns:
        The ``run.json`` dict.

    Raises:
        CheckpointError: ``run.json`` missing, unreadable, of an unknown format or
            without the weights' sha256; the weights missing or (``verify``) modified.
    """
    path = Path(path)
    info = read_run_info(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: not found")
    if verify:
        digests = info.get("sha256")
        expected = digests.get(WEIGHTS) if isinstance(digests, dict) else None
        if not isinstance(expected, str):
            raise CheckpointError(f"{path / RUN_JSON} records no sha256 of {WEIGHTS}, so the weights "
                                  "cannot be checked; refusing to load them (pass verify=False to load "
                                  "an unverified file you trust)")
        if sha256_file(weights) != expected:
            raise CheckpointError(f"{weights}: sha256 differs from the one in {path / RUN_JSON}; the "
                                  "file was modified or truncated (pass verify=False to load it anyway)")
    return info


def load(path: str | os.PathLike[str], device: torch.device | str | None = None, *,
         model: nn.Module | None = None, verify: bool = True) -> nn.Module:
    """Rebuild a model from a checkpoint directory.

    Args:
        path: the directory written by :func:`save` (or a run's ``best/`` / ``last/``).
        device: where the model goes (default CPU).
        model: load into this model instead of rebuilding from ``run.json``.
        verify: check the weights' sha256 against ``run.json`` (a ``run.json``
            without one is refused).

    Returns:
        The model in eval mode, with ``model.rd_run`` = the ``run.json`` dict.

    Raises:
        CheckpointError: missing, truncated or tampered files, a ``run.json`` of
            another format or without the sha256, or weights that do not fit the
            model (missing keys, wrong shapes); the file is named.
    """
    from safetensors.torch import load_model

    path = Path(path)
    info = check_dir(path, verify=verify)
    weights = path / WEIGHTS
    if model is None:
        spec = info.get("model")
        if not isinstance(spec, dict) or "name" not in spec:
            raise CheckpointError(f"{path / RUN_JSON}: no model spec; the model was not built with "
                                  "create_model, so pass the architecture: load(path, model=my_model)")
        from robustdial.models import create_model

        try:
            model = create_model(spec["name"], num_classes=spec.get("num_classes", 10),
                                 **dict(spec.get("options") or {}))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path / RUN_JSON}: cannot rebuild model {spec!r}: {exc}") from None
    try:
        load_model(model, str(weights), strict=True, device="cpu")
    except Exception as exc:  # SafetensorError (bad header), RuntimeError (keys, shapes)
        raise CheckpointError(f"{weights}: cannot load into {type(model).__name__}: {exc}") from None
    model.rd_run = info
    model.to(device if device is not None else "cpu")
    return model.eval()


# ---------------------------------------------------------------- train state
def save_train_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and plain values only) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_train_state(path: str | os.PathLike[str], map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read ``train_state.pt`` with ``weights_only=True`` (a pickle with code is refused)."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError / EOFError when truncated
        raise CheckpointError(f"{path}: refused to load ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path}: not a robustdial training state (missing {missing})")
    return state
