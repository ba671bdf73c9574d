"""``evaluate``: clean and robust accuracy over a grid of conditions × attacks.

For every condition (a dict of dials, set with
:func:`robustdial.condition.conditioned`) the model runs in eval mode
(:func:`robustdial.utils.train_mode`, restored afterwards), clean accuracy is
computed once, and each attack runs under the same condition. Counts stay on
the device; the host syncs once per (condition, attack).
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..condition import Condition, conditioned
from ..utils import model_device, train_mode
from ._provenance import provenance
from .result import EvalResult, EvalRow, condition_label

__all__ = ["ANY_ATTACK", "evaluate"]

ANY_ATTACK = "any attack (per-sample worst case)"
"""Row name of the per-sample worst case: a sample counts only if every attack failed on it."""

_log = logging.getLogger(__name__)

AttackFn = Callable[[nn.Module, Tensor, Tensor], Tensor]  # attack(model, x, y) -> x_adv


def _as_tensors(data: Any, max_samples: int | None) -> tuple[Tensor, Tensor, bool]:
    """(images, labels, is_uint8) from an ImageData-like object or an (x, y) tuple."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError("data must be an ImageData (robustdial.load_dataset) or a tuple "
                        f"(x float in [0, 1] (N, C, H, W), y int64 (N,)); got {type(data).__name__}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("data must hold torch tensors; convert numpy arrays with torch.from_numpy")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"data has {x.shape[0]} images but {y.shape[0]} labels")
    is_uint8 = x.dtype == torch.uint8
    if not is_uint8 and not x.is_floating_point():
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be ≥ 1, got {max_samples}")
        x, y = x[:max_samples], y[:max_samples]
    return x, y, is_uint8


def _as_attacks(attacks: Any) -> dict[str, AttackFn]:
    if attacks is None:
        return {}
    if isinstance(attacks, Mapping):
        out = dict(attacks)
    elif callable(attacks):
        out = {repr(attacks): attacks}
    elif isinstance(attacks, Sequence) and not isinstance(attacks, str):
        out = {}
        for a in attacks:
            if repr(a) in out:
                raise ValueError(f"two attacks share the name {repr(a)!r}; pass a dict name -> attack")
            out[repr(a)] = a
    else:
        raise TypeError("attacks must be a dict name -> attack, a list of attacks or None")
    for name, a in out.items():
        if not callable(a):
            raise TypeError(f"attack {name!r} is not callable as attack(model, x, y)")
    return out


def _as_conditions(conditions: Any) -> list[dict[str, Any]]:
    if conditions is None:
        return [{}]
    if isinstance(conditions, (Mapping, Condition)):
        conditions = [conditions]
    out = []
    for c in conditions:
        if isinstance(c, Condition):
            c = c.as_dict()
        if not isinstance(c, Mapping):
            raise TypeError(f"each condition must be a dict of dials such as {{'lam': 0.5}}, got {c!r}")
        d = {}
        for k, v in c.items():
            if isinstance(v, Tensor):
                if v.numel() != 1:
                    raise ValueError(f"condition dial {k!r} must be a scalar for evaluation, "
                                     f"got a tensor of shape {tuple(v.shape)}")
                v = v.item()
            d[k] = v
        out.append(d)
    return out


def _batches(x: Tensor, y: Tensor, is_uint8: bool, batch_size: int,
             device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        xb = xb.float().div_(255) if is_uint8 else xb.float()
        yield xb, y[i:i + batch_size].to(device, non_blocking=True)


def _condition_ctx(model: nn.Module, cond: dict[str, Any]) -> contextlib.AbstractContextManager:
    return conditioned(model, **cond) if cond else contextlib.nullcontext()


def evaluate(model: nn.Module, data: Any,
             attacks: Mapping[str, AttackFn] | Sequence[AttackFn] | AttackFn | None = None,
             conditions: Sequence[dict[str, Any] | Condition] | None = None, *, batch_size: int = 256,
             device: torch.device | str | None = None, max_samples: int | None = None,
             seed: int = 0) -> EvalResult:
    """Clean and robust accuracy of ``model`` for every condition × attack.

    Args:
        model: classifier, ``model(x) -> logits``, already on ``device``.
        data: an ``ImageData`` (uint8 images, converted per batch to [0, 1])
            or a tuple ``(x float in [0, 1] (N, C, H, W), y int64 (N,))``.
        attacks: dict name -> attack, a list of attacks (named by their
            ``repr``), a single attack, or ``None`` (clean accuracy only, one
            row per condition with attack ``"none"``).
        conditions: list of dial dicts, e.g. ``[{"lam": 0.0}, {"lam": 1.0}]``
            (or :class:`~robustdial.condition.Condition` objects); ``None``
            evaluates the model as it is.
        batch_size: samples per forward / attack call.
        device: where to run; default the model's device.
        max_samples: evaluate only the first ``max_samples`` samples.
        seed: seeds the global RNG for each (condition, attack), so attacks
            with random starts are reproducible and independent of the order;
            the caller's RNG state is restored afterwards.

    Returns:
        :class:`EvalResult` with one :class:`EvalRow` per (condition, attack)
        and, when two or more attacks run, one more row per condition,
        ``attack == ANY_ATTACK``: the per-sample worst case (a sample counts as
        robust only if it survives every attack),
        accuracies in %, and ``meta`` (settings, timings, provenance).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    x, y, is_uint8 = _as_tensors(data, max_samples)
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("data is empty: nothing to evaluate")
    attack_map = _as_attacks(attacks)
    conds = _as_conditions(conditions)
    rng_devices = [device] if device.type == "cuda" else []
    rows: list[EvalRow] = []
    seconds: dict[str, float] = {}

    with torch.random.fork_rng(devices=rng_devices), train_mode(model, False):
        for cond in conds:
            label = condition_label(cond)
            with _condition_ctx(model, cond):
                correct = torch.zeros((), dtype=torch.int64, device=device)
                with torch.no_grad():
                    for xb, yb in _batches(x, y, is_uint8, batch_size, device):
                        correct += (model(xb).argmax(1) == yb).sum()
                clean = 100.0 * correct.item() / n  # one sync per condition
                if not attack_map:
                    rows.append(EvalRow(dict(cond), "none", clean, clean, n))
                survived: Tensor | None = None  # per sample: correct under every attack so far
                for name, attack in attack_map.items():
                    torch.manual_seed(seed)
                    if rng_devices:
                        torch.cuda.manual_seed(seed)
                    t0 = time.perf_counter()
                    flags = []
                    for xb, yb in _batches(x, y, is_uint8, batch_size, device):
                        x_adv = attack(model, xb, yb)
                        with torch.no_grad():
                            flags.append(model(x_adv).argmax(1) == yb)
                    ok = torch.cat(flags)
                    survived = ok if survived is None else survived & ok
                    rob = 100.0 * ok.sum().item() / n  # one sync per (condition, attack)
                    seconds[f"{label} | {name}"] = time.perf_counter() - t0
                    rows.append(EvalRow(dict(cond), name, clean, rob, n))
                    _log.info("%s | %s: clean %.2f%% robust %.2f%% (n=%d)", label, name, clean, rob, n)
                if len(attack_map) > 1 and survived is not None:
                    rows.append(EvalRow(dict(cond), ANY_ATTACK, clean,
                                        100.0 * survived.sum().item() / n, n))

    meta = {"batch_size": batch_size, "seed": seed, "max_samples": max_samples, "n": n,
            "device": str(device), "attack_seconds": seconds,
            "dataset": {k: getattr(data, k) for k in ("name", "split") if hasattr(data, k)},
            "provenance": provenance(device)}
    return EvalResult(rows=rows, meta=meta)
