"""Slimmable training: one objective averaged over the trained widths.

Yu et al., "Slimmable Neural Networks", ICLR 2019 (loss averaged over the
widths, one optimizer step); OATS = OAT × widths (Wang et al., NeurIPS 2020,
Sec. 3.3, Algorithm 2: "we minimize the average loss in Eq. (3) of all
different-width sub-networks", x_adv generated with the same-width
sub-network); FLOAT slim / FLOATS slim (Kundu et al., WACV 2023, Sec. 3.2,
Fig. 4(b)); PGD-ATS (OAT paper Sec. 4.3: PGD-AT loss in a slimmable network).

At each width ``w`` the ``width`` dial is set for the whole inner loss, so the
inner method's attack runs at that width and the classification forwards use
that width's switchable BNs. The returned loss is the mean over widths; one
``backward`` of that sum gives the same gradients as one backward per width
accumulated (the engine then takes one optimizer step).
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


class Slimmable(Method):
    """Wrap a method so every step trains every width (mean loss over widths).

    Args:
        inner: the per-width objective: a :class:`Method`, a name (``"oat"``,
            ``"float"``, ``"pgd_at"`` …) or a dict with ``name``.
        widths: the width factors to train, e.g. ``(0.5, 0.75, 1.0)``; ``None``
            = every width the model declares (read on the first batch).
        **inner_kwargs: options of ``inner`` when given by name.

    Attributes:
        val_condition: the inner method's validation dials at the widest width.

    Metrics: the inner metrics averaged over widths, plus ``<metric>@w<w>`` per width.
    """

    name = "slimmable"

    def __init__(self, inner: Method | str | Mapping[str, Any] = "pgd_at",
                 widths: Sequence[float] | None = None, **inner_kwargs: Any) -> None:
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
        total = total / len(widths)
        metrics.update({k: v / len(widths) for k, v in sums.items()})
        metrics["loss"] = total.detach()
        return total, metrics

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "widths": None if self.widths is None else sorted(self.widths),
                "inner": self.inner.config()}


METHOD = Slimmable
