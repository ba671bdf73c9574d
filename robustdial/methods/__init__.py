"""Training objectives: ``method.loss(model, (x, y)) -> (loss, metrics)``.

Build one by name with :func:`build_method`; :func:`list_methods` names every
method (one file each: ``standard``, ``pgd_at``, ``trades``, ``tradeoff``,
``oat``, ``oats``, ``float``, ``float_slim``, ``pgd_ats``, ``rdi``,
``slimmable``).
"""
from __future__ import annotations

from typing import Any

from .base import BN_MODES, Method, accuracy, attack_config, build_attack
from .float import FLOAT
from .float_slim import FLOATSlim
from .oat import OAT
from .oats import OATS
from .pgd_at import PGDAT
from .pgd_ats import PGDATS
from .rdi import RDI
from .slimmable import Slimmable
from .standard import Standard
from .tradeoff import Tradeoff
from .trades import TRADES, TradesKL, kl_per_sample

__all__ = [
    "BN_MODES",
    "FLOAT",
    "FLOATSlim",
    "Method",
    "OAT",
    "OATS",
    "PGDAT",
    "PGDATS",
    "RDI",
    "Slimmable",
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

# name -> class (read-only after import)
_METHODS: dict[str, type[Method]] = {
    "standard": Standard, "pgd_at": PGDAT, "trades": TRADES, "tradeoff": Tradeoff,
    "oat": OAT, "oats": OATS, "float": FLOAT, "float_slim": FLOATSlim, "pgd_ats": PGDATS,
    "rdi": RDI, "slimmable": Slimmable,
}
_ALIASES = {"pgdat": "pgd_at", "pgd": "pgd_at", "natural": "standard", "at": "pgd_at"}


def _key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def method_class(name: str) -> type[Method]:
    """The class registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the available methods).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"method name must be a non-empty string, got {name!r}; "
                         f"available: {', '.join(list_methods())}")
    cls = _METHODS.get(_key(name))
    if cls is None:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return cls


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
    """Names accepted by :func:`build_method`."""
    return sorted(_METHODS)
