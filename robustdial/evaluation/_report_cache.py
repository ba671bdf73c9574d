"""On-disk results of a robustness report, one file per (operating point, attack).

A long report stores every (point, attack) result as soon as it finishes, so an
interrupted report resumes where it stopped. Each entry is a safetensors file
(tensors only: per-sample flags, adversarial examples, exit indices) whose
metadata holds the entry's JSON summary and its *key*: the SHA-256 of the
model's tensors and spec, the evaluated data, the point's dials and the
attack's settings. A changed model, data or setting gives another key, so a
stale entry is never reused; files are parsed as data only (no pickle).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ReportCache", "data_digest", "model_digest", "settings_digest"]

_log = logging.getLogger(__name__)


def _update_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(str(t.dtype).encode())
    h.update(str(tuple(t.shape)).encode())
    if t.dtype == torch.bfloat16:
        t = t.float()
    h.update(t.numpy().tobytes() if t.numel() else b"")


def model_digest(model: nn.Module) -> str:
    """SHA-256 of every tensor of the state dict (sorted by name) and the model's spec."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(model, "rd_spec", None), sort_keys=True, default=str).encode())
    h.update(type(model).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        _update_tensor(h, t)
    return h.hexdigest()


def data_digest(x: Tensor, y: Tensor) -> str:
    """SHA-256 of the evaluated images and labels."""
    h = hashlib.sha256()
    _update_tensor(h, x)
    _update_tensor(h, y)
    return h.hexdigest()


def settings_digest(*parts: Any) -> str:
    """SHA-256 of JSON-serialised settings (dicts with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:80] or "point"


class ReportCache:
    """Entries of one report under ``root`` (``None``: keep nothing on disk).

    Args:
        root: directory for the entry files (created on first write).
        base_key: digest of the model and the data; part of every entry's key.
    """

    def __init__(self, root: str | Path | None, base_key: str) -> None:
        self.root = None if root is None else Path(root)
        self.base_key = base_key
        self.hits = 0
        self.writes = 0

    def _path(self, point: str, entry: str, key: str) -> Path:
        assert self.root is not None
        return self.root / f"{_slug(point)}__{_slug(entry)}__{key[:16]}.safetensors"

    def key(self, point: dict[str, Any], entry: str, settings: Any) -> str:
        return settings_digest(self.base_key, point, entry, settings)

    def get(self, point: dict[str, Any], label: str, entry: str,
            settings: Any) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """The stored ``(tensors, summary)`` of an entry with exactly these settings, or None."""
        if self.root is None:
            return None
        key = self.key(point, entry, settings)
        path = self._path(label, entry, key)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("key") != key:
                    return None
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            summary = json.loads(meta.get("summary", "{}"))
        except Exception as exc:  # noqa: BLE001 - a broken cache file is recomputed, never trusted
            _log.warning("ignoring unreadable cache entry %s (%s: %s)", path, type(exc).__name__, exc)
            return None
        self.hits += 1
        return tensors, summary

    def put(self, point: dict[str, Any], label: str, entry: str, settings: Any,
            tensors: dict[str, Tensor], summary: dict[str, Any]) -> None:
        """Store an entry atomically (write a temporary file, then rename)."""
        if self.root is None:
            return
        from safetensors.torch import save_file

        key = self.key(point, entry, settings)
        path = self._path(label, entry, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(clean, str(tmp), metadata={"key": key, "entry": entry, "point": label,
                                             "summary": json.dumps(summary, default=str)})
        os.replace(tmp, path)
        self.writes += 1
