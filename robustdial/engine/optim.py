"""SGD with weight-decay-free parameter groups, and per-iteration LR schedules.

Weight decay is an L2 pull towards zero; it belongs on conv/linear weights, not
on normalization scales and shifts, biases, or parameters whose value is a
learned magnitude (FLOAT's noise scale α). A module opts parameters out with
``no_weight_decay = {"alpha"}`` (names local to the module) or by setting
``param._no_weight_decay = True``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["build_optimizer", "build_scheduler", "lr_lambda", "param_groups", "no_decay_names"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def no_decay_names(model: nn.Module) -> set[str]:
    """Qualified names of the parameters that get no weight decay.

    Those of normalization layers (BatchNorm, GroupNorm, LayerNorm), every
    parameter named ``bias``, names listed in a module's ``no_weight_decay``
    attribute, and parameters with ``_no_weight_decay = True``.
    """
    out: set[str] = set()
    for mod_name, module in model.named_modules():
        marked = set(getattr(module, "no_weight_decay", ()) or ())
        is_norm = isinstance(module, _NORM_TYPES)
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or p_name == "bias" or p_name in marked or getattr(p, "_no_weight_decay", False):
                out.add(full)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two SGD parameter groups: ``decay`` (``weight_decay``) and ``no_decay`` (0).

    Shared (tied) parameters appear once; frozen ones (``requires_grad=False``)
    are left out.
    """
    skip = no_decay_names(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (no_decay if name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, *, lr: float, momentum: float = 0.9, nesterov: bool = False,
                    weight_decay: float = 5e-4) -> torch.optim.SGD:
    """SGD over :func:`param_groups`."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def lr_lambda(schedule: str, total_steps: int, milestones: Sequence[int] = (),
              gamma: float = 0.1) -> Callable[[int], float]:
    """LR multiplier as a function of the step index (0-based, one call per iteration).

    Args:
        schedule: ``"cosine"``: ½(1 + cos(π·t/T)), from 1 at t = 0 to 0 at t = T;
            ``"multistep"``: ``gamma ** (number of milestones ≤ t)``;
            ``"constant"``: 1;
            ``"cyclic"``: one triangle (Wong, Rice, Kolter, ICLR 2020, fast
            adversarial training): linear from 0 to 1 over the first 2/5 of
            the run, then linear back to 0 at t = T.
        total_steps: T, iterations of the whole run.
        milestones: multistep boundaries in iterations.
        gamma: multistep factor.
    """
    if schedule == "cosine":
        return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total_steps) / max(total_steps, 1)))
    if schedule == "multistep":
        ms = sorted(int(m) for m in milestones)
        return lambda t: gamma ** sum(1 for m in ms if t >= m)
    if schedule == "constant":
        return lambda t: 1.0
    if schedule == "cyclic":
        peak = max(1.0, 0.4 * total_steps)
        rest = max(1.0, total_steps - peak)
        # the first step already trains at peak/… > 0 (t + 1), so no step is wasted at lr 0
        return lambda t: (min(t + 1, peak) / peak) if t + 1 <= peak else max(0.0, (total_steps - t) / rest)
    raise ValueError(f"unknown schedule {schedule!r}; use cosine, multistep, constant or cyclic")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int,
                    milestones: Sequence[int] = (), gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over :func:`lr_lambda`; call ``.step()`` after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, total_steps, milestones, gamma))
