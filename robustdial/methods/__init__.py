"""Training objectives: ``method.loss(model, (x, y)) -> (loss, metrics)``.

Build one by name with :func:`build_method` (``"standard"``, ``"pgd_at"``,
``"trades"``, ``"tradeoff"``, and every method file that defines a
module-level ``METHOD`` class, e.g. ``"oat"`` -> ``robustdial.methods.oat``).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import BN_MODES, Method, accuracy, attack_config, build_attack
from .pgd_at import PGDAT
from .standard import Standard
from .tradeoff import Tradeoff
from .trades import TRADES, TradesKL, kl_per_sample

__all__ = [
    "BN_MODES",
    "Method",
    "PGDAT",
    "Standard",
    "TRADES",
    "Tradeoff",
    "TradesKL",
    "accuracy",
    "attack_config",
    "build_attack",
    "build_method",
    "kl_per_sample",
    "list_methods",
    "method_class",
]

# Built-in names -> classes. Other methods live in their own files and are
# imported on first use (name "oat" -> module robustdial.methods.oat, class
# given by that module's ``METHOD`` attribute). Read-only after import.
_BUILTIN: dict[str, type[Method]] = {
    "standard": Standard,
    "pgd_at": PGDAT,
    "trades": TRADES,
    "tradeoff": Tradeoff,
}
_ALIASES = {"pgdat": "pgd_at", "pgd": "pgd_at", "natural": "standard", "at": "pgd_at"}
_NOT_METHODS = {"base", "standard", "pgd_at", "trades", "tradeoff"}


def _key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def method_class(name: str) -> type[Method]:
    """The class registered under ``name`` (imports ``robustdial.methods.<name>`` if needed).

    Raises:
        ValueError: unknown name (the message lists the available methods).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"method name must be a non-empty string, got {name!r}; "
                         f"available: {', '.join(list_methods())}")
    key = _key(name)
    if key in _BUILTIN:
        return _BUILTIN[key]
    if key.isidentifier() and not key.startswith("_"):
        try:
            module = importlib.import_module(f"{__name__}.{key}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{key}":
                raise
        else:
            cls = getattr(module, "METHOD", None)
            if isinstance(cls, type) and issubclass(cls, Method):
                return cls
    raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}")


def build_method(name: str, **kwargs: Any) -> Method:
    """Construct a method by name, e.g. ``build_method("pgd_at", lam=1.0, attack={...})``.

    Raises:
        ValueError: unknown name or options (the message lists the valid options).
    """
    cls = method_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        import inspect

        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise ValueError(f"method {name!r}: {exc}; its options: {params}") from None


def list_methods() -> list[str]:
    """Names accepted by :func:`build_method`: built-ins plus method files present."""
    names = set(_BUILTIN)
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            names.add(info.name)
    return sorted(names)
