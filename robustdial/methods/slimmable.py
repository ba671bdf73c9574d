"""Slimmable training: one objective at every trained width, one optimizer step.

At each width ``w`` the ``width`` dial is set for the whole inner loss, so the
inner method's attack runs at that width and the classification forwards use
that width's switchable BNs. How the per-width losses combine follows each
paper (``reduction``):

* ``"sum"``: one backward per width, gradients accumulated, one optimizer
  step. Yu, Yang, Xu, Yang, Huang, "Slimmable Neural Networks", ICLR 2019,
  Algorithm 1 (``loss.backward()`` inside the loop over widths) — the default
  of :class:`Slimmable`; and FLOAT slim / FLOATS slim (Kundu et al., WACV
  2023, Sec. 3.2, Fig. 4(b); the FLOAT loss at each slimming factor, one
  backward per width: :class:`~robustdial.methods.float_slim.FLOATSlim`).
  One backward of the summed loss gives exactly those accumulated gradients.
* ``"mean"``: OATS (Wang et al., NeurIPS 2020, Sec. 3.3 / Algorithm 2: "we
  minimize the average loss in Eq. (3) of all different-width sub-networks",
  :class:`~robustdial.methods.oats.OATS`) and its baseline PGD-ATS (Sec. 4.3,
  the slimmable network trained on "the average loss across all
  different-width subnetworks" with the PGD-AT loss,
  :class:`~robustdial.methods.pgd_ats.PGDATS`).

With SGD the two differ by a factor ``len(widths)`` on the gradient (so on the
effective learning rate relative to weight decay); the ``loss`` metric is the
combined loss that is back-propagated.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustdial.condition import Choices, conditioned, dial_specs

from .base import Method

__all__ = ["Slimmable"]


def _inner(method: Method | str | Mapping[str, Any], kwargs: dict[str, Any]) -> Method:
    if isinstance(method, Method):
        if kwargs:
            raise ValueError(f"options {sorted(kwargs)} are for a method given by name; the "
                             "method instance is already configured")
        return method
    from . import build_method

    if isinstance(method, Mapping):
        spec = dict(method)
        if "name" not in spec:
            raise ValueError("inner method dict needs a 'name', e.g. {'name': 'oat'}")
        return build_method(spec.pop("name"), **spec, **kwargs)
    return build_method(str(method), **kwargs)


REDUCTIONS = ("sum", "mean")


class Slimmable(Method):
    """Wrap a method so every step trains every width.

    Args:
        inner: the per-width objective: a :class:`Method`, a name (``"oat"``,
            ``"float"``, ``"pgd_at"`` …) or a dict with ``name``.
        widths: the width factors to train, e.g. ``(0.5, 0.75, 1.0)``; ``None``
            = every width the model declares (read on the first batch).
        reduction: ``"sum"`` (one backward per width, Yu et al. Algorithm 1) or
            ``"mean"`` of the per-width losses; see the module notes.
        **inner_kwargs: options of ``inner`` when given by name.

    Attributes:
        val_condition: the inner method's validation dials at the widest width.

    Metrics: ``loss`` (the combined loss), the other inner metrics averaged
    over widths, plus ``<metric>@w<w>`` per width.
    """

    name = "slimmable"
    default_reduction = "sum"

    def __init__(self, inner: Method | str | Mapping[str, Any] = "pgd_at",
                 widths: Sequence[float] | None = None, *, reduction: str | None = None,
                 **inner_kwargs: Any) -> None:
        reduction = self.default_reduction if reduction is None else reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.inner = _inner(inner, inner_kwargs)
        self.widths = None if widths is None else self._check(widths)
        self.attack_bn_mode = self.inner.attack_bn_mode
        self.val_condition = dict(getattr(self.inner, "val_condition", None) or {})
        if self.widths is not None:
            self.val_condition["width"] = max(self.widths)

    @staticmethod
    def _check(widths: Sequence[float]) -> tuple[float, ...]:
        from robustdial.layers.slimmable import check_widths

        return tuple(reversed(check_widths(widths)))  # widest first, as slimmable training

    def _model_widths(self, model: nn.Module) -> tuple[float, ...]:
        spec = dial_specs(model).get("width")
        if not isinstance(spec, Choices):
            raise ValueError(f"{self.name} needs a slimmable model: build it with "
                             "create_model(..., widths=(0.5, 0.75, 1.0))")
        if self.widths is None:
            self.widths = self._check(spec.values)
            self.val_condition["width"] = max(self.widths)
        missing = [w for w in self.widths if w not in spec.values]
        if missing:
            raise ValueError(f"widths {missing} are not widths of the model; it has "
                             f"{', '.join(f'{v:g}' for v in spec.values)}")
        return self.widths

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        widths = self._model_widths(model)
        total: Tensor | None = None
        sums: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        for w in widths:
            with conditioned(model, width=w):  # attack and forwards at this width
                loss_w, m = self.inner.loss(model, batch)
            total = loss_w if total is None else total + loss_w
            for k, v in m.items():
                v = torch.as_tensor(v).detach()
                metrics[f"{k}@w{w:g}"] = v
                sums[k] = v if k not in sums else sums[k] + v
        assert total is not None
        if self.reduction == "mean":
            total = total / len(widths)
        metrics.update({k: v / len(widths) for k, v in sums.items()})
        metrics["loss"] = total.detach()
        return total, metrics

    def state_dict(self) -> dict[str, Any]:
        """The inner method's state (e.g. OAT's λ sampler) and this wrapper's attack generators."""
        return {**super().state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.inner.load_state_dict(state.get("inner") or {})

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "widths": None if self.widths is None else sorted(self.widths),
                "reduction": self.reduction, "inner": self.inner.config()}


METHOD = Slimmable
