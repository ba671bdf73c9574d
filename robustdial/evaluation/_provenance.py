"""Provenance of a result: command, code version, library versions, hardware.

Every benchmark and report JSON embeds :func:`provenance` so a number can be
traced back to the code and machine that produced it. No hostname or user
name is recorded.

The code version is read when this module is first imported, i.e. when the
run starts: a long benchmark that writes its JSON hours later must not claim
a commit made while it ran. If the checkout changed in between, the state at
write time is recorded too (``git_commit_at_write``, ``git_dirty_at_write``).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance"]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_state() -> tuple[str | None, bool | None]:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return commit, (bool(status) if status is not None else None)


# The code version when the process imported this module (a constant, never reassigned).
_AT_START: tuple[str | None, bool | None] = _git_state()


def _device_name(device: torch.device | str | None) -> str:
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()})"


TIMING_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_",
              "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES")


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """Where and how a result was produced.

    Args:
        device: the device the result was computed on (default: CUDA if
            available, else CPU).

    Returns:
        dict with ``command`` (``sys.argv``), ``git_commit`` and ``git_dirty``
        (``None`` outside a git checkout) as they were when the run started
        (plus ``git_commit_at_write`` / ``git_dirty_at_write`` if the checkout
        changed since), ``robustdial``, ``torch`` and
        ``python`` versions, ``device``, ``threads`` (torch intra-op threads),
        ``platform``, a UTC ``timestamp`` (ISO 8601) and ``env``: the
        environment variables that change timings (thread counts, glibc
        allocator thresholds) that were set.
    """
    commit, dirty = _AT_START
    now = _git_state()
    try:
        from robustdial import __version__ as version
    except ImportError:  # pragma: no cover - partial installs
        version = None
    out: dict[str, Any] = {
        "command": list(sys.argv),
        "git_commit": commit,
        "git_dirty": dirty,
        "robustdial": version,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": {k: os.environ[k] for k in TIMING_ENV if k in os.environ},
    }
    if now != _AT_START:
        out["git_commit_at_write"], out["git_dirty_at_write"] = now
    return out
