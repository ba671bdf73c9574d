"""Layer factories: how one architecture file serves every conditional variant.

Architectures never instantiate ``nn.Conv2d`` / ``nn.BatchNorm2d`` directly;
they ask a :class:`LayerSet`. Conditioning options swap the factories:
``"oat"`` (dual BN + FiLM), ``"float"`` (noisy conv/linear + dual BN), and
``widths`` (slimmable layers with switchable BN) compose on top.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..layers.film import oat_layer_set
from ..layers.noisy import float_layer_set
from ..layers.slimmable import slimmable_layer_set

__all__ = ["LayerSet", "build_layer_set", "plain_layer_set"]


def _conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
          groups: int = 1, bias: bool = False) -> nn.Module:
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                     groups=groups, bias=bias)


def _linear(in_f: int, out_f: int, bias: bool = True) -> nn.Module:
    return nn.Linear(in_f, out_f, bias=bias)


def _identity(num_features: int) -> nn.Module:
    return nn.Identity()


@dataclasses.dataclass(frozen=True)
class LayerSet:
    """Factories every architecture builds its layers with.

    Attributes:
        conv: ``conv(in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1, bias=False)``
        linear: ``linear(in_f, out_f, bias=True)`` for hidden fully connected layers.
        head: ``head(in_f, out_f, bias=True)`` for classifiers (output never slimmed).
        norm: ``norm(C)`` main BatchNorm (OAT: dual BN followed by FiLM).
        aux_norm: ``aux_norm(C)`` shortcut / final BN (OAT: dual BN, no FiLM).
        cond: ``cond(C)`` conditioning point in nets without BN (default Identity).
        tags: what was applied, e.g. ``("oat",)``, for introspection.
    """

    conv: Callable[..., nn.Module] = _conv
    linear: Callable[..., nn.Module] = _linear
    head: Callable[..., nn.Module] = _linear
    norm: Callable[[int], nn.Module] = nn.BatchNorm2d
    aux_norm: Callable[[int], nn.Module] = nn.BatchNorm2d
    cond: Callable[[int], nn.Module] = _identity
    tags: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> "LayerSet":
        return dataclasses.replace(self, **changes)


def plain_layer_set() -> LayerSet:
    """Ordinary ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d``."""
    return LayerSet()


_CONDITIONINGS: dict[str, Callable[..., LayerSet]] = {"oat": oat_layer_set, "float": float_layer_set}


def build_layer_set(conditioning: str | None = None, widths: Sequence[float] | None = None,
                    **opts: Any) -> LayerSet:
    """The factories for a conditioning and optional slimmable widths.

    Args:
        conditioning: ``None``, ``"oat"`` or ``"float"``.
        widths: slimmable width factors, e.g. ``(0.5, 0.75, 1.0)``; ``None`` = fixed width.
        **opts: the conditioning's settings (``embed_dim``, ``dual_bn``,
            ``lam_values``, ``alpha_init`` …).
    """
    layers = plain_layer_set()
    if conditioning is not None:
        key = str(conditioning).lower()
        if key not in _CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; choose one of "
                             f"{sorted(_CONDITIONINGS)} or None")
        layers = _CONDITIONINGS[key](layers, **opts)
    elif opts:
        raise TypeError(f"options {sorted(opts)} need conditioning='oat' or 'float'")
    if widths is not None:
        layers = slimmable_layer_set(layers, tuple(float(w) for w in widths))
    return layers
