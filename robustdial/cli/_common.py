"""Parsing helpers shared by the subcommands: fractions, ``--set``, ``--dial``, YAML recipes."""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["UsageError", "apply_overrides", "check_positive", "check_writable", "input_shape",
           "load_recipe", "parse_device", "parse_dials", "parse_eps", "parse_fraction", "parse_set",
           "resolve_checkpoint", "RECIPE_SECTIONS"]

RECIPE_SECTIONS = ("model", "data", "method", "train", "eval", "transforms")


class UsageError(ValueError):
    """Bad command-line input; the message says how to fix it (exit status 2)."""


def parse_fraction(text: str | float | int) -> float:
    """``"8/255"`` -> 0.0313…, ``"0.3"`` -> 0.3; for ε and step sizes on the [0, 1] scale.

    Raises:
        UsageError: not a number or fraction, or not finite.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(s)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{text!r} is not a number; write ε on the [0, 1] scale as a decimal "
                             "(0.031) or a fraction (8/255)") from None
    if not math.isfinite(value):
        raise UsageError(f"{text!r} is not a finite number")
    return value


def parse_eps(text: str | float | int, flag: str = "--eps") -> float:
    """An L∞ radius on the [0, 1] scale: ``"8/255"`` -> 0.0313…; ``"8"`` is refused ("8/255, not 8").

    Raises:
        UsageError: not a number, negative, or above 1.
    """
    value = parse_fraction(text)
    if value < 0:
        raise UsageError(f"{flag} {text}: ε must be ≥ 0 (on the [0, 1] pixel scale)")
    if value > 1:
        raise UsageError(f"{flag} {text}: ε is on the [0, 1] pixel scale, so write {value:g}/255, "
                         f"not {value:g}")
    return value


def check_positive(value: int | None, flag: str) -> int | None:
    """``value`` if it is ≥ 1 (or None), else :class:`UsageError` naming ``flag``."""
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be ≥ 1, got {value}")
    return value


def parse_device(text: str | None):
    """``--device`` as a ``torch.device`` that exists here (None stays None: the command's default).

    Raises:
        UsageError: not a device name, or a device this machine does not have
            (e.g. ``cuda`` on a CPU-only build), instead of torch's RuntimeError /
            AssertionError deep inside the work.
    """
    if text is None:
        return None
    import torch

    try:
        device = torch.device(str(text).strip())
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise UsageError(f"--device {text}: CUDA is not available ({why}); use --device cpu")
        n = torch.cuda.device_count()
        if device.index is not None and device.index >= n:
            raise UsageError(f"--device {text}: this machine has {n} CUDA device(s), "
                             f"cuda:0 … cuda:{n - 1}")
        return device
    backend = getattr(torch, device.type, None) or getattr(torch.backends, device.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        raise UsageError(f"--device {text}: {device.type} is not available on this machine; "
                         "use --device cpu")
    return device


def check_writable(path: str | Path | None, flag: str) -> Path | None:
    """Fail before the work starts if ``flag PATH`` cannot be written (missing folder, no permission).

    Nothing is created. Returns ``Path(path)`` (None stays None).
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory; give a file name, e.g. {p / 'out.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {p}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{flag} {p}: not writable (permission denied)")
    return p


def input_shape(arg: str | None, run_info: Mapping[str, Any] | None = None, model: Any = None,
                flag: str = "--input-shape") -> tuple[int, int, int]:
    """One image's (C, H, W): ``--input-shape``, else the run's dataset, else the model's own, else 3,32,32."""
    if arg:
        try:
            shape = tuple(int(v) for v in str(arg).split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise UsageError(f"{flag} must look like C,H,W, e.g. 3,32,32; got {arg!r}")
        return shape  # type: ignore[return-value]
    ds = (run_info or {}).get("dataset") or (run_info or {}).get("data")
    shape = ds.get("shape") if isinstance(ds, Mapping) else None
    if isinstance(shape, (list, tuple)) and len(shape) == 3:
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    name = ds.get("name") if isinstance(ds, Mapping) else ds if isinstance(ds, str) else None
    if name:
        from robustdial.data import dataset_info

        try:
            info = dataset_info(str(name))
        except ValueError:
            info = None
        if info is not None and info.channels:
            return (int(info.channels), int(info.size), int(info.size))
    size = getattr(model, "input_size", None)
    if isinstance(size, tuple) and len(size) == 3:
        return tuple(int(v) for v in size)  # type: ignore[return-value]
    options = ((getattr(model, "rd_spec", None) or {}).get("options") or {})
    channels = options.get("in_channels", 3)
    return (int(channels), 32, 32)


def _yaml_value(text: str) -> Any:
    s = text.strip()
    if "/" in s and s.count("/") == 1 and not s.startswith(("/", ".")):
        try:
            return parse_fraction(s)
        except UsageError:
            pass
    try:
        return yaml.safe_load(s) if s else ""
    except yaml.YAMLError:
        return s


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` -> ``(["train", "epochs"], 3)``; values are YAML-typed.

    ``[80, 120]`` becomes a list, ``true`` a bool, ``8/255`` a float, ``null`` None.
    """
    if "=" not in item:
        raise UsageError(f"--set {item!r} must look like SECTION.KEY=VALUE, e.g. train.epochs=3")
    key, value = item.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not parts or any(not p for p in parts):
        raise UsageError(f"--set {item!r}: empty key; write e.g. train.lr=0.05 or method.attack.steps=10")
    return parts, _yaml_value(value)


def apply_overrides(recipe: Mapping[str, Any], items: list[str]) -> dict[str, Any]:
    """A deep copy of ``recipe`` with every ``--set`` item applied (creating sub-dicts)."""
    out = copy.deepcopy(dict(recipe))
    for item in items:
        parts, value = parse_set(item)
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise UsageError(f"--set {item!r}: {p!r} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML training recipe and check its top-level sections.

    Raises:
        UsageError: missing file, invalid YAML, unknown sections, missing ``model``/``data``.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {file} not found; see configs/*.yaml for examples")
    try:
        recipe = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{file}: invalid YAML: {exc}") from None
    if not isinstance(recipe, dict):
        raise UsageError(f"{file}: expected a mapping with sections {', '.join(RECIPE_SECTIONS)}")
    return recipe


def check_recipe(recipe: Mapping[str, Any], where: str = "config") -> None:
    """Unknown sections or missing required ones raise :class:`UsageError`."""
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if unknown:
        raise UsageError(f"{where}: unknown section(s) {unknown}; valid: {', '.join(RECIPE_SECTIONS)}")
    for section in ("model", "data"):
        if not isinstance(recipe.get(section), dict) or "name" not in recipe[section]:
            raise UsageError(f"{where}: section {section!r} needs at least a name, e.g. "
                             f"{section}: {{name: {'small_cnn' if section == 'model' else 'mnist'}}}")
    for section in ("method", "train", "eval"):
        if recipe.get(section) is not None and not isinstance(recipe[section], dict):
            raise UsageError(f"{where}: section {section!r} must be a mapping")


_FLOAT_DIALS = ("lam", "lam_th", "width")


def _dial_value(name: str, text: str) -> Any:
    value = _yaml_value(text)
    if name in _FLOAT_DIALS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def parse_dials(items: list[str]) -> dict[str, list[Any]]:
    """``["lam=0,0.2", "width=0.5,1"]`` -> ``{"lam": [0.0, 0.2], "width": [0.5, 1.0]}``.

    Raises:
        UsageError: an item without ``=`` or with an empty value list.
    """
    out: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--dial {item!r} must look like NAME=V1[,V2...], e.g. lam=0,0.2,1")
        name, values = item.split("=", 1)
        name = name.strip()
        vals = [v for v in values.split(",") if v.strip()]
        if not name or not vals:
            raise UsageError(f"--dial {item!r}: give a dial name and at least one value")
        out.setdefault(name, []).extend(_dial_value(name, v) for v in vals)
    return out


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory: ``path`` itself, or a run directory's ``best/``, else its ``last/``.

    ``best/`` is taken whenever it exists. A run without one (``select="last"``,
    or no validation split) gives ``last/``. A ``best/`` that exists but is
    broken (``run.json`` missing, unreadable, of an unknown format or without
    the weights' sha256; weights missing or not matching it) is an error naming
    it, never a silent fall-back to ``last/``: pass ``DIR/last`` to use that.

    Raises:
        UsageError: ``path`` does not exist or holds no checkpoint.
        CheckpointError: ``path/best`` exists but is broken.
    """
    p = Path(path)
    if (p / "run.json").is_file():
        return p
    best, last = p / "best", p / "last"
    if best.exists():
        from robustdial.engine.checkpoint import CheckpointError, check_dir

        try:
            check_dir(best)
        except CheckpointError as exc:
            hint = (f"; to use the last checkpoint instead, pass {last} explicitly"
                    if (last / "run.json").is_file() else "")
            raise CheckpointError(f"{best} is broken, and the run's checkpoint is not replaced by "
                                  f"{last.name}/ silently: {exc}{hint}") from None
        return best
    if (last / "run.json").is_file():
        return last
    if not p.exists():
        raise UsageError(f"checkpoint directory {p} does not exist")
    raise UsageError(f"{p} is not a checkpoint directory: it holds no run.json (nor best/ or last/); "
                     "pass the directory written by `robustdial train --out DIR`")
