"""Model registry: ``@register_model`` entrypoints and the one public door ``create_model``."""
from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from torch import nn

from ._layers import build_layer_set

__all__ = ["create_model", "list_models", "register_model", "model_entrypoint"]

# The registry is the one module-level table (ARCHITECTURE.md: "nothing global
# except the model registry"). It is filled at import time only.
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Options consumed here and turned into layer factories for the entrypoint.
_LAYER_OPTIONS = ("conditioning", "widths", "embed_dim", "dual_bn", "alpha_init", "encoding_seed", "noise_seed",
                  "lam_values", "switchable_bn", "film_init")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name (``resnet34``, ``small_cnn`` …)."""
    name = fn.__name__
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    _ensure_loaded()
    key = name.replace("-", "_").lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def create_model(name: str, num_classes: int = 10, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see :func:`list_models`).
        num_classes: classifier outputs, a positive int.
        **options: architecture options (``in_channels``, ``exits``,
            ``noise_injection`` …) and conditioning options:
            ``conditioning`` (``None`` | ``"oat"`` | ``"float"``), ``widths``
            (slimmable width factors), and the conditioning's own settings
            (``embed_dim``, ``dual_bn``, ``alpha_init`` …).

    Raises:
        ValueError: unknown name, or ``num_classes`` < 1.
        TypeError: ``num_classes`` not an int, or an option the entrypoint lacks.

    Returns:
        The model, with ``model.rd_spec`` = ``{"name", "num_classes", "options"}``
        so checkpoints can rebuild it.
    """
    fn = model_entrypoint(name)
    num_classes = _check_num_classes(num_classes)
    layer_opts = {k: options.pop(k) for k in _LAYER_OPTIONS if k in options}
    layers = build_layer_set(**layer_opts)
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    bad = [k for k in options if k not in params and not accepts_any]
    if bad:
        valid = [p for p in params if p not in ("layers", "num_classes")]
        raise TypeError(f"{name} got unknown option(s) {bad}; its options: {valid}")
    model = fn(num_classes=num_classes, layers=layers, **options)
    model.rd_spec = {"name": fn.__name__, "num_classes": num_classes,
                     "options": {**layer_opts, **options}}
    return model


def _check_num_classes(value: Any) -> int:
    """``num_classes`` as a positive int (NumPy ints accepted; bools, floats and strings refused)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"num_classes must be a positive int, got {value!r} "
                        f"({type(value).__name__})") from None
    if n < 1:
        raise ValueError(f"num_classes must be a positive int, got {n}")
    return n


def _ensure_loaded() -> None:
    # Importing the package registers every architecture file.
    from . import _zoo  # noqa: F401
