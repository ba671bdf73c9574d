"""Slimmable conv / linear layers: run the first ⌈w·C⌉ channels at width w.

Yu, Yang, Xu, Yang, Huang, "Slimmable Neural Networks", ICLR 2019; used by OATS
(Wang et al. 2020, Sec. 3.3, Algorithm 2) and FLOATS slim (Kundu et al. 2023,
Sec. 3.2, Fig. 4(b)).

Rules at width ``w`` (the ``width`` dial, one of the trained widths):

* a layer uses the **first** ``⌈w·C_out⌉`` output channels (filters) and as
  many input channels as the incoming tensor has, so the stem conv that reads a
  3-channel image needs no special case;
* the classifier (``head`` factory) keeps its output fixed (``fixed_out``);
* a depthwise conv (``groups == in_channels == out_channels``) follows its
  input: ``groups = out = C_in(x)``;
* other grouped convs are rejected at construction (no slicing rule is
  defined for them).

Composition with FLOAT noise (:mod:`robustdial.layers.noisy`): the slimmable
classes subclass the plain *and* the noisy layers, so the noisy
``θ̂ = θ + m·α·η`` is computed on the **full** tensor (η's std is the std of the
whole weight, as at width 1) and then sliced. :meth:`effective_weight` returns
the slice applied in the last forward (what cost counters and export need).

The layers stay ``nn.Conv2d`` / ``nn.Linear`` subclasses with the same
parameter names, so ``robustdial.cost.count_macs`` (forward hooks on the real
input/output shapes) reports the sliced MACs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..condition import Choices, Condition, DialSpec
from ._widths import check_widths, scaled_channels, width_index
from .noisy import NoisyConv2d, NoisyLinear
from .switchable_bn import SwitchableBatchNorm2d

__all__ = ["SlimmableConv2d", "SlimmableLinear", "SlimmableNoisyConv2d", "SlimmableNoisyLinear",
           "check_widths", "make_slimmable", "scaled_channels", "slimmable_layer_set"]


class _Slim:
    """Width logic shared by the slimmable conv / linear classes (a mixin)."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_slim(self, widths: Sequence[float], fixed_out: bool) -> None:
        self.widths = check_widths(widths)
        self.fixed_out = bool(fixed_out)
        self._width = self.widths[-1]
        self._last_in: int | None = None  # input channels of the last forward

    @property
    def width(self) -> float:
        """The width factor in force."""
        return self._width

    def apply_condition(self, cond: Condition) -> None:
        parent = getattr(super(), "apply_condition", None)
        if parent is not None:
            parent(cond)
        self._width = self.widths[width_index(self.widths, cond.width)]

    def dial_specs(self) -> dict[str, DialSpec]:
        parent = getattr(super(), "dial_specs", None)
        specs = dict(parent()) if parent is not None else {}
        specs["width"] = Choices(self.widths)
        return specs

    def full_effective_weight(self) -> torch.Tensor:
        """The unsliced weight actually used (noisy θ̂ for noisy layers)."""
        parent = getattr(super(), "effective_weight", None)
        return parent() if parent is not None else self.weight

    def _out_channels(self, full_out: int, in_now: int, depthwise: bool) -> int:
        if depthwise:
            return in_now
        return full_out if self.fixed_out else scaled_channels(full_out, self._width)

    def _check_in(self, in_now: int, full_in: int) -> None:
        if in_now > full_in:
            raise ValueError(f"{type(self).__name__} got {in_now} input channels but holds "
                             f"weights for {full_in}; check the model's widths")


class SlimmableConv2d(_Slim, nn.Conv2d):
    """``nn.Conv2d`` that runs its first ``⌈w·C_out⌉`` filters on the incoming channels.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias: as ``nn.Conv2d`` (full width). ``groups`` must be 1 or
            depthwise (``groups == in_channels == out_channels``).
        widths: the trained width factors.
        fixed_out: never slim the output channels.

    Shape:
        (B, c_in ≤ C_in, H, W) -> (B, ⌈w·C_out⌉, H', W')
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *,
                 widths: Sequence[float] = (1.0,), fixed_out: bool = False) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, bias=bias)
        _check_groups(self)
        self._init_slim(widths, fixed_out)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    def sliced(self, in_now: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(weight, bias, groups) applied to an input of ``in_now`` channels at the current width."""
        self._check_in(in_now, self.in_channels)
        w = self.full_effective_weight()
        out = self._out_channels(self.out_channels, in_now, self.depthwise)
        if self.depthwise:
            w, groups = w[:out], out
        else:
            w, groups = w[:out, :in_now], 1
        b = None if self.bias is None else self.bias[:out]
        return w, b, groups

    def effective_weight(self) -> torch.Tensor:
        """The (noisy) weight slice of the last forward (full input if none yet)."""
        in_now = self._last_in if self._last_in is not None else self.in_channels
        return self.sliced(in_now)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._last_in = int(x.shape[1])
        w, b, groups = self.sliced(self._last_in)
        if self.padding_mode != "zeros":
            raise ValueError("slimmable convs support padding_mode='zeros' only")
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", widths={self.widths}" + (", fixed_out" if self.fixed_out else "")


class SlimmableLinear(_Slim, nn.Linear):
    """``nn.Linear`` on the first incoming features with ``⌈w·out⌉`` (or fixed) outputs.

    Incoming features are the leading columns: a flattened (C, H, W) map keeps
    its first ⌈w·C⌉ channels, which are the first ⌈w·C⌉·H·W columns.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (full width).
        widths: the trained width factors.
        fixed_out: never slim the outputs (classifier heads).

    Shape:
        (B, f_in ≤ in_features) -> (B, ⌈w·out⌉ or out)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 widths: Sequence[float] = (1.0,), fixed_out: bool = False) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_slim(widths, fixed_out)

    def sliced(self, in_now: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) applied to ``in_now`` input features at the current width."""
        self._check_in(in_now, self.in_features)
        out = self._out_channels(self.out_features, in_now, False)
        w = self.full_effective_weight()[:out, :in_now]
        b = None if self.bias is None else self.bias[:out]
        return w, b

    def effective_weight(self) -> torch.Tensor:
        in_now = self._last_in if self._last_in is not None else self.in_features
        return self.sliced(in_now)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._last_in = int(x.shape[-1])
        w, b = self.sliced(self._last_in)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", widths={self.widths}" + (", fixed_out" if self.fixed_out else "")


class SlimmableNoisyConv2d(SlimmableConv2d, NoisyConv2d):
    """FLOAT slim: a noisy conv (θ̂ from the full tensor) sliced to the width."""


class SlimmableNoisyLinear(SlimmableLinear, NoisyLinear):
    """FLOAT slim: a noisy linear layer (θ̂ from the full tensor) sliced to the width."""


def _check_groups(conv: nn.Conv2d) -> None:
    if conv.groups != 1 and not (conv.groups == conv.in_channels == conv.out_channels):
        raise ValueError(f"slimmable convs support groups=1 or depthwise convs; got groups="
                         f"{conv.groups} with {conv.in_channels}->{conv.out_channels} channels")


# plain / noisy class -> its slimmable counterpart
_SLIM_CLASSES: dict[type, type] = {
    nn.Conv2d: SlimmableConv2d,
    nn.Linear: SlimmableLinear,
    NoisyConv2d: SlimmableNoisyConv2d,
    NoisyLinear: SlimmableNoisyLinear,
}


def make_slimmable(module: nn.Module, widths: Sequence[float], *, fixed_out: bool = False) -> nn.Module:
    """Turn a freshly built conv / linear layer into its slimmable counterpart, in place.

    The module keeps its parameters, buffers and settings (e.g. a noisy layer's
    α and seed); only its class changes to the slimmable subclass.

    Raises:
        TypeError: a layer type without a slimmable counterpart.
    """
    cls = _SLIM_CLASSES.get(type(module))
    if cls is None:
        if type(module) in _SLIM_CLASSES.values():
            raise TypeError(f"{type(module).__name__} is already slimmable")
        raise TypeError(f"no slimmable version of {type(module).__name__}; supported: "
                        f"{', '.join(c.__name__ for c in _SLIM_CLASSES)}")
    if isinstance(module, nn.Conv2d):
        _check_groups(module)
    module.__class__ = cls
    module._init_slim(widths, fixed_out)
    return module


def slimmable_layer_set(base: Any, widths: Sequence[float]) -> Any:
    """Slimmable versions of a :class:`~robustdial.models.LayerSet`'s factories.

    Applied after the OAT / FLOAT conditioning: convs and hidden linears slim
    their outputs, ``head`` keeps its output, every ``norm`` / ``aux_norm``
    becomes a :class:`~robustdial.layers.switchable_bn.SwitchableBatchNorm2d`
    holding one copy of the base norm per width (BN, dual BN, or dual BN +
    FiLM for OATS: one FiLM per width, see that module), and a non-identity
    ``cond`` (OAT FiLM in BN-free nets) is switched per width too.

    Args:
        base: the layer set to make slimmable.
        widths: width factors, e.g. ``(0.5, 0.75, 1.0)``.
    """
    ws = check_widths(widths)

    def conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
             groups: int = 1, bias: bool = False) -> nn.Module:
        m = base.conv(in_ch, out_ch, kernel_size, stride=stride, padding=padding, groups=groups,
                      bias=bias)
        return make_slimmable(m, ws)

    def linear(in_f: int, out_f: int, bias: bool = True) -> nn.Module:
        return make_slimmable(base.linear(in_f, out_f, bias=bias), ws)

    def head(in_f: int, out_f: int, bias: bool = True) -> nn.Module:
        return make_slimmable(base.head(in_f, out_f, bias=bias), ws, fixed_out=True)

    def switch(factory: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        def build(C: int) -> nn.Module:
            m = SwitchableBatchNorm2d(C, ws, factory)
            if all(isinstance(inner, nn.Identity) for inner in m.bns):
                return nn.Identity()
            return m
        return build

    return base.replace(conv=conv, linear=linear, head=head, norm=switch(base.norm),
                        aux_norm=switch(base.aux_norm), cond=switch(base.cond),
                        tags=base.tags + ("slimmable",))
