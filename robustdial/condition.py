"""Run-time dials as module state (ARCHITECTURE.md, contract 3).

A :class:`Condition` carries every dial (λ, BN threshold, width, exit, noise
mode). :func:`set_condition` walks ``model.modules()`` the way ``model.train()``
does and hands the condition to every module that defines
``apply_condition(cond)``. Dials are validated against what the model's modules
declare through ``dial_specs()``, so a wrong value fails loudly and names the
valid values instead of being silently ignored.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

import torch
from torch import nn

__all__ = [
    "Choices",
    "Condition",
    "DialSpec",
    "Interval",
    "conditioned",
    "dial_specs",
    "get_condition",
    "set_condition",
]

_ATTR = "_rd_condition"
NOISE_MODES = ("sample", "hold", "fixed", "off")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A continuous dial range ``[lo, hi]`` (inclusive)."""

    lo: float
    hi: float

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() == 0:
                raise ValueError(f"dial {name!r} got an empty tensor")
            lo, hi = value.aminmax()  # one sync, at set time
            lo, hi = torch.stack([lo, hi]).tolist()
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            lo = hi = float(value)
        else:
            raise ValueError(f"dial {name}={_short(value)} must be a number in "
                             f"{self.describe()}, got {type(value).__name__}")
        if not (self.lo <= lo and hi <= self.hi) or math.isnan(lo) or math.isnan(hi):
            raise ValueError(
                f"dial {name}={_short(value)} is outside its valid range "
                f"[{self.lo:g}, {self.hi:g}]"
            )

    def describe(self) -> str:
        return f"[{self.lo:g}, {self.hi:g}]"


@dataclasses.dataclass(frozen=True)
class Choices:
    """A discrete dial: one of ``values``."""

    values: tuple

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor) or value not in self.values:
            raise ValueError(
                f"dial {name}={_short(value)} is not available; valid values: "
                f"{', '.join(_fmt(v) for v in self.values)}"
            )

    def describe(self) -> str:
        return "{" + ", ".join(_fmt(v) for v in self.values) + "}"


DialSpec = Interval | Choices


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v)


def _short(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor(shape={tuple(v.shape)})"
    text = _fmt(v)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclasses.dataclass(frozen=True)
class Condition:
    """Every run-time dial of a model. ``None`` means "not set: module default".

    Attributes:
        lam: accuracy↔robustness dial λ ∈ [0, 1]; a float, or a (B,) tensor of
            per-sample values (OAT training).
        lam_th: BN switch threshold: samples with ``lam > lam_th`` use the
            adversarial BN (default 0: any λ > 0 is adversarial, as OAT).
        width: slimmable width factor (one of the trained widths).
        exit: multi-exit models: ``None`` (final head), an exit index, or
            ``"adaptive"`` (entropy early exit).
        thresholds: entropy thresholds overriding the stored ones, one per
            non-final exit.
        noise: weight/feature noise mode: ``"sample"`` (fresh noise every
            forward), ``"hold"`` (one random draw, kept until
            :func:`robustdial.layers.resample_noise`), ``"fixed"`` (seeded,
            deterministic) or ``"off"``.
    """

    lam: float | torch.Tensor | None = None
    lam_th: float | None = None
    width: float | None = None
    exit: int | str | None = None
    thresholds: tuple[float, ...] | None = None
    noise: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The dials that are set, as a plain dict (tensors left as tensors)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @property
    def threshold(self) -> float:
        return 0.0 if self.lam_th is None else float(self.lam_th)

    @property
    def lam_value(self) -> float:
        """λ as a Python float (0 when unset). Per-sample tensors must be uniform."""
        if self.lam is None:
            return 0.0
        if isinstance(self.lam, torch.Tensor):
            lo, hi = self.lam.min().item(), self.lam.max().item()
            if lo != hi:
                raise ValueError(
                    "this layer needs one λ for the whole batch, got per-sample "
                    f"values from {lo:g} to {hi:g}; run each λ group separately"
                )
            return float(lo)
        return float(self.lam)

    @property
    def noise_multiplier(self) -> float:
        """FLOAT's inference rescaling of the noise scale (paper Eq. 6).

        With threshold ``th``: λ ≤ th gives λ/th (clean BN side), λ > th gives
        (λ − th)/(1 − th) (adversarial BN side). ``th = 0`` reduces to λ,
        ``th = 0.5`` to Eq. 6 (2λ and 2(λ − 0.5)).
        """
        lam, th = self.lam_value, self.threshold
        if lam > th:
            return (lam - th) / (1.0 - th)
        return lam / th if th > 0 else 0.0

    @cached_property
    def bn_route(self) -> tuple[torch.Tensor | None, torch.Tensor | None, int, int] | None:
        """Per-sample BN routing, computed once per condition (one host sync).

        Returns ``None`` for a scalar λ, else ``(idx_clean, idx_adv, n_clean,
        n_adv)`` where a sample is adversarial when ``lam > lam_th``. When the
        clean samples come first (OAT's sampler puts its λ = 0 samples at the
        front), ``idx_clean`` and ``idx_adv`` are ``None``: the two parts are
        the slices ``[:n_clean]`` and ``[n_clean:]``.
        """
        if not isinstance(self.lam, torch.Tensor) or self.lam.dim() == 0:
            return None
        adv = self.lam.reshape(-1) > self.threshold
        # the one host sync: how many are adversarial, and is an adversarial sample
        # ever followed by a clean one (i.e. not "clean first")
        n_adv, mixed = torch.stack([adv.sum(), (adv[:-1] & ~adv[1:]).sum()]).tolist()
        n_adv = int(n_adv)
        n_clean = adv.numel() - n_adv
        if not mixed:
            return None, None, n_clean, n_adv  # clean first: contiguous slices
        idx_adv = adv.nonzero().reshape(-1)
        idx_clean = (~adv).nonzero().reshape(-1)
        return idx_clean, idx_adv, n_clean, n_adv

    @property
    def use_adv_bn(self) -> bool:
        """Scalar routing: adversarial BN when ``lam > lam_th``."""
        return self.lam_value > self.threshold


_FIELDS = tuple(f.name for f in dataclasses.fields(Condition))


def _has_noise(module: nn.Module) -> bool:
    # noisy weights (FLOAT, PNI) and feature noise (EnResNet) both expose resample_noise()
    return callable(getattr(module, "resample_noise", None))


def dial_specs(model: nn.Module) -> dict[str, DialSpec]:
    """The dials a model understands, merged over its modules.

    ``noise`` is a dial of every model with a noisy module (one that defines
    ``resample_noise()``: noisy weights or feature noise).
    """
    specs: dict[str, DialSpec] = {}
    for m in model.modules():
        if _has_noise(m):
            specs.setdefault("noise", Choices(NOISE_MODES))
        fn = getattr(m, "dial_specs", None)
        if fn is None or not callable(fn):
            continue
        for name, spec in fn().items():
            prev = specs.get(name)
            if prev is None or prev == spec:
                specs[name] = spec
            elif isinstance(prev, Choices) and isinstance(spec, Choices):
                # Both constrain the dial: only common values are valid.
                common = tuple(v for v in prev.values if v in spec.values)
                specs[name] = Choices(common)
            else:
                specs[name] = spec if isinstance(spec, Choices) else prev
    if "lam" in specs:
        specs.setdefault("lam_th", Interval(0.0, 0.999))
    if "exit" in specs:
        specs.setdefault("thresholds", Interval(0.0, math.inf))
    return specs


def get_condition(model: nn.Module) -> Condition:
    """The condition last set on ``model`` (``Condition()`` if never set)."""
    return getattr(_root(model), _ATTR, None) or Condition()


def _root(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / compiled wrappers keep the real model inside.
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return _root(inner)
    return model


def set_condition(model: nn.Module, cond: Condition | None = None, /, **dials: Any) -> Condition:
    """Set run-time dials on every conditional module of ``model``.

    Args:
        model: any module tree.
        cond: a full :class:`Condition` replacing the current one; when omitted,
            ``dials`` are merged into the current condition.
        **dials: dial values (``lam=0.7``, ``width=0.5``, ``exit=2`` …); a value
            of ``None`` unsets that dial.

    Returns:
        The condition now in force.

    Raises:
        ValueError: an unknown dial, a dial the model does not have (``noise``
            on a model without noisy layers included; the deterministic modes
            ``"off"`` and ``"fixed"`` are accepted there as no-ops), a value of
            the wrong type (the message names the dial), a λ tensor that is not
            floating point or not 1-D, or a value outside the valid set (the
            message lists the valid values). Whether a per-sample λ has one
            entry per sample is checked by the layers at the forward, where the
            batch is known.
    """
    unknown = set(dials) - set(_FIELDS)
    if unknown:
        raise ValueError(f"unknown dial(s) {sorted(unknown)}; dials are {list(_FIELDS)}")
    root = _root(model)
    new = cond if cond is not None else dataclasses.replace(get_condition(root), **dials)
    _validate(root, new)
    setattr(root, _ATTR, new)
    for m in root.modules():
        fn = getattr(m, "apply_condition", None)
        if fn is not None:
            fn(new)
    return new


def _validate(model: nn.Module, cond: Condition) -> None:
    specs = dial_specs(model)
    for name, value in cond.as_dict().items():
        spec = specs.get(name)
        if spec is None:
            have = ", ".join(f"{k} ∈ {s.describe()}" for k, s in specs.items()) or "none"
            why = " (it has no noisy layers)" if name == "noise" else ""
            raise ValueError(
                f"{type(model).__name__} has no {name!r} dial{why}; its dials: {have}"
            )
        if name == "thresholds":
            if isinstance(value, torch.Tensor) and value.dim() == 1:
                value = value.tolist()
            if isinstance(value, (str, bytes, torch.Tensor)) or not isinstance(value, Iterable):
                raise ValueError(f"dial thresholds={_short(value)} must be a sequence with one "
                                 "entropy threshold per early exit, e.g. thresholds=(0.02, 0.01)")
            for v in value:
                spec.check(name, v)
            continue
        if isinstance(value, torch.Tensor):
            _check_tensor_dial(name, value)
        spec.check(name, value)


def _check_tensor_dial(name: str, value: torch.Tensor) -> None:
    """Only λ may be a tensor: a scalar, or (B,) per-sample values in floating point."""
    if name != "lam":
        raise ValueError(f"dial {name} must be a Python value, not a tensor "
                         f"(only lam takes per-sample values)")
    if not value.is_floating_point():
        raise ValueError(f"dial lam: a per-sample λ tensor must be floating point, got "
                         f"{value.dtype}; pass lam.float()")
    if value.dim() > 1:
        raise ValueError(f"dial lam: a per-sample λ tensor must be 1-D with one value per sample "
                         f"(B,), got shape {tuple(value.shape)}")


@contextlib.contextmanager
def conditioned(model: nn.Module, cond: Condition | None = None, /, **dials: Any) -> Iterator[Condition]:
    """Temporarily set dials; the previous condition is restored even on error.

    Example::

        with rd.conditioned(model, lam=0.2, width=0.5):
            logits = model(x)
    """
    previous = get_condition(model)
    try:
        yield set_condition(model, cond, **dials)
    finally:
        set_condition(model, previous)


def sweep(values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian grid of dial values: ``sweep({"lam": [0, 1], "width": [.5, 1]})``."""
    grid: list[dict[str, Any]] = [{}]
    for name, vals in values.items():
        grid = [{**g, name: v} for g in grid for v in vals]
    return grid
