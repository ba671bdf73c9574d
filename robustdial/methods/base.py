"""The ``Method`` base class: one training objective, ``loss(model, batch) -> (loss, metrics)``.

A method decides how adversarial examples are made (which attack, which BN
mode) and how the losses combine. It never calls ``.backward()``, ``.to()`` or
``print``: the engine owns the loop, the devices and the logging. Metrics are
detached tensors (no ``.item()``), so the engine decides when to synchronise.

Resume: whatever randomness or counters a method owns (OAT's λ sampler, an
attack built with its own ``generator``) goes into :meth:`Method.state_dict`,
which the engine saves with the training state and gives back through
:meth:`Method.load_state_dict`, so a resumed run equals an uninterrupted one.
Randomness drawn from the global torch RNG (PGD random starts, FLOAT's weight
noise) needs nothing: the engine saves that RNG.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.attacks import FGSM, PGD, Attack
from robustdial.utils import train_mode

__all__ = ["BN_MODES", "Method", "accuracy", "attack_config", "build_attack", "ce_mean"]

BN_MODES = ("eval", "train")


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of correct top-1 predictions as a 0-dim detached float tensor (no sync)."""
    return (logits.detach().argmax(dim=1) == y).float().mean()


def _number(value: Any, name: str) -> float:
    """A float from a number or a fraction string such as ``"8/255"``."""
    if isinstance(value, str) and "/" in value:
        num, den = value.split("/", 1)
        try:
            return float(num) / float(den)
        except ValueError:
            pass
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"attack setting {name!r} must be a number on the [0, 1] scale "
                         f"(e.g. 0.3 or 8/255), got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"attack setting {name!r} must be finite, got {value!r}")
    return out


def build_attack(spec: Attack | Mapping[str, Any] | str | None, default: Attack | None = None) -> Attack:
    """An attack from an instance, a dict, a spec string, or ``None`` (-> ``default``).

    Args:
        spec: an :class:`~robustdial.attacks.Attack`; a dict such as
            ``{"name": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40}``
            (``name`` in ``pgd``/``pgdl2``/``fgsm``/``rsfgsm``, the other keys
            are the attack's keyword arguments; ``eps``/``alpha`` accept
            fractions such as ``"8/255"``); a spec string for
            :func:`robustdial.attacks.parse_attack` (``"pgd-7"``, with ``eps``
            given as ``"pgd-7:eps=0.3"``); or ``None``.
        default: returned when ``spec`` is ``None``.

    Returns:
        The attack.

    Raises:
        ValueError: an unknown name or bad setting; the message lists the valid ones.
    """
    if spec is None:
        if default is None:
            raise ValueError("no attack given and no default; pass e.g. "
                             "attack={'name': 'pgd', 'eps': 8/255, 'alpha': 2/255, 'steps': 7}")
        return default
    if isinstance(spec, Attack):
        return spec
    if isinstance(spec, str):
        from robustdial.attacks import parse_attack

        return parse_attack(spec)
    if not isinstance(spec, Mapping):
        raise TypeError(f"attack must be an Attack, a dict or a spec string, got {type(spec).__name__}")
    kw = dict(spec)
    name = str(kw.pop("name", "pgd")).lower()
    for key in ("eps", "alpha"):
        if key in kw and kw[key] is not None:
            kw[key] = _number(kw[key], key)
    if name in ("pgd", "pgdl2"):
        if name == "pgdl2":
            kw.setdefault("norm", "l2")
        cls: type[Attack] = PGD
    elif name in ("fgsm", "rsfgsm"):
        if name == "rsfgsm":
            kw.setdefault("random_start", True)
        cls = FGSM
    else:
        raise ValueError(f"unknown training attack {name!r}; use one of pgd, pgdl2, fgsm, rsfgsm")
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ValueError(f"bad settings for attack {name!r}: {exc}") from None


def attack_config(attack: Attack) -> dict[str, Any]:
    """A JSON-able description of an attack (``name`` plus its hyper-parameters).

    The dict round-trips through :func:`build_attack` for PGD and FGSM.
    """
    out: dict[str, Any] = {"name": type(attack).__name__.lower()}
    for key in ("eps", "alpha", "steps", "norm", "random_start"):
        if hasattr(attack, key):
            out[key] = getattr(attack, key)
    if getattr(attack, "loss", None) is not None:
        out["loss"] = getattr(attack.loss, "__name__", type(attack.loss).__name__)
    return out


class Method:
    """Base class of training objectives.

    Subclasses implement :meth:`loss` and list their hyper-parameters in
    :meth:`config`. ``batch = (x, y)`` arrives on the model's device, with the
    model in train mode.

    Attributes:
        name: registry name (``"pgd_at"`` …), recorded in ``run.json``.
        attack_bn_mode: ``"eval"`` (attack sees BN running statistics, which it
            leaves unchanged) or ``"train"`` (attack sees batch statistics and
            updates the running ones, as Madry et al.'s original code).
    """

    name: str = "method"
    attack_bn_mode: str = "eval"

    def _set_bn_mode(self, mode: str) -> None:
        if mode not in BN_MODES:
            raise ValueError(f"attack_bn_mode must be one of {BN_MODES}, got {mode!r}")
        self.attack_bn_mode = mode

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar training loss and detached metrics for one batch."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-able dict (for ``run.json``)."""
        return {"name": self.name}

    def state_dict(self) -> dict[str, Any]:
        """The method's own training state (RNGs, counters) for an exact resume.

        Only tensors and plain values (loadable with ``torch.load(...,
        weights_only=True)``). The base class saves the state of every
        ``torch.Generator`` held by the method's attacks (``attack.generator``,
        ``fusion_generator``); subclasses add theirs.
        """
        gens = {f"{attr}.{g}": gen.get_state() for attr, g, gen in self._attack_generators()}
        return {"attack_generators": gens} if gens else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the state names generators this method does not have.
        """
        saved = dict(state.get("attack_generators") or {})
        for attr, g, gen in self._attack_generators():
            key = f"{attr}.{g}"
            if key in saved:
                gen.set_state(saved.pop(key))
        if saved:
            raise ValueError(f"{type(self).__name__}: saved state has attack generators {sorted(saved)} "
                             "that this method's attacks do not have")

    def _attack_generators(self) -> list[tuple[str, str, torch.Generator]]:
        """``(attribute, generator attribute, generator)`` of each attack attribute's own RNG."""
        out = []
        for attr, value in sorted(vars(self).items()):
            if isinstance(value, Attack):
                for g in ("generator", "fusion_generator"):
                    gen = getattr(value, g, None)
                    if isinstance(gen, torch.Generator):
                        out.append((attr, g, gen))
        return out

    def adversarial(self, model: nn.Module, x: Tensor, y: Tensor, attack: Attack) -> Tensor:
        """``attack(model, x, y)`` under :attr:`attack_bn_mode`; every module's mode is restored.

        Returns:
            Detached adversarial examples, shape of ``x``.
        """
        with train_mode(model, self.attack_bn_mode == "train"):
            return attack(model, x, y)

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.config().items() if k != "name"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


def _check_weight(name: str, value: float, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= value <= hi) or math.isnan(value):
        rng = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f"≥ {lo:g}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def ce_mean(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy (scalar)."""
    return torch.nn.functional.cross_entropy(logits, y)
