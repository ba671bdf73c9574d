"""Turn a conditioned model into a plain one at fixed dials (same outputs, standard layers).

At a fixed condition every dial-dependent module is an ordinary layer in
disguise; :func:`to_plain` replaces each by that layer:

* slimmable / noisy convs and linears -> ``nn.Conv2d`` / ``nn.Linear`` holding the
  weight slice actually applied (channels physically sliced to the width) and
  the noisy weight ``θ + m·α·η`` baked in with the layer's seeded η
  (``noise="fixed"``) or no noise (``noise="off"``);
* a switchable BN -> the block of the chosen width; a dual BN -> the BN that λ
  routes to (BN_a when λ > λ_th);
* FiLM at a scalar λ is the per-channel affine map ``x·μ + σ`` (OAT Sec. 3.1):
  directly after a BN in an ``nn.Sequential`` it is folded into that BN
  (``γ' = γ·μ``, ``β' = β·μ + σ``); elsewhere it becomes an equivalent
  ``BatchNorm2d(eps=0)`` with running mean 0, variance 1, weight μ, bias σ.
* EnResNet's feature noise is removed with ``noise="off"`` (it depends on the
  features, so it cannot be baked in).

The weights actually applied are recorded with forward hooks during one
forward at the dials, so shapes follow the real data flow.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..condition import dial_specs, get_condition, set_condition
from ..utils import model_device

__all__ = ["film_affine", "to_plain"]

NOISE_EXPORT = ("fixed", "off")


def film_affine(film: nn.Module, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) of a FiLM layer at scalar λ: its output is ``x·μ + σ`` per channel."""
    return film.affine(lam)


def _record(model: nn.Module, input_shape: Sequence[int]) -> dict[int, tuple]:
    """Run one eval forward; per conv/linear module id: (weight, bias, groups) applied."""
    rec: dict[int, tuple] = {}

    def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
        cin = int(inputs[0].shape[1] if isinstance(m, nn.Conv2d) else inputs[0].shape[-1])
        if hasattr(m, "sliced"):
            parts = m.sliced(cin)
            w, b = parts[0], parts[1]
            groups = parts[2] if len(parts) > 2 else 1
        else:
            fn = getattr(m, "effective_weight", None)
            w = fn() if callable(fn) else m.weight
            b, groups = m.bias, getattr(m, "groups", 1)
        rec[id(m)] = (w.detach().clone(), None if b is None else b.detach().clone(), groups)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return rec


def _plain_conv(m: nn.Conv2d, w: torch.Tensor, b: torch.Tensor | None, groups: int) -> nn.Conv2d:
    new = nn.Conv2d(w.shape[1] * groups, w.shape[0], m.kernel_size, stride=m.stride,
                    padding=m.padding, dilation=m.dilation, groups=groups, bias=b is not None,
                    padding_mode=m.padding_mode, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _plain_linear(w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _fold_film(bn: nn.BatchNorm2d, mu: torch.Tensor, sigma: torch.Tensor) -> None:
    with torch.no_grad():
        if bn.weight is None:
            bn.weight = nn.Parameter(torch.ones_like(mu))
            bn.bias = nn.Parameter(torch.zeros_like(mu))
            bn.affine = True
        bn.bias.copy_(bn.bias * mu + sigma)
        bn.weight.copy_(bn.weight * mu)


def _film_as_bn(mu: torch.Tensor, sigma: torch.Tensor) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(mu.numel(), eps=0.0, device=mu.device, dtype=mu.dtype)
    with torch.no_grad():
        bn.weight.copy_(mu)
        bn.bias.copy_(sigma)
    bn.eval()
    return bn


class _Converter:
    def __init__(self, rec: dict[int, tuple], lam: float, adv_bn: bool, noise: str) -> None:
        self.rec, self.lam, self.adv_bn, self.noise = rec, lam, adv_bn, noise

    def __call__(self, m: nn.Module) -> nn.Module:
        from ..layers.dual_bn import DualBatchNorm2d
        from ..layers.film import FiLM, NormFiLM
        from ..layers.noise_injection import NoiseInjection
        from ..layers.switchable_bn import SwitchableBatchNorm2d

        if isinstance(m, nn.Conv2d) and id(m) in self.rec:
            return _plain_conv(m, *self.rec[id(m)])
        if isinstance(m, nn.Linear) and id(m) in self.rec:
            return _plain_linear(*self.rec[id(m)][:2])
        if isinstance(m, SwitchableBatchNorm2d):
            return self(m.active)
        if isinstance(m, DualBatchNorm2d):
            return m.bn_a if self.adv_bn else m.bn_c
        if isinstance(m, FiLM):
            return _film_as_bn(*film_affine(m, self.lam))
        if isinstance(m, NoiseInjection):
            if self.noise != "off":
                raise ValueError("EnResNet feature noise depends on the features and cannot be "
                                 "baked into weights; export with noise='off' (--noise off)")
            return nn.Identity()
        prev: nn.Module | None = None
        for name, child in list(m.named_children()):
            if isinstance(m, nn.Sequential) and isinstance(child, FiLM) \
                    and isinstance(prev, nn.BatchNorm2d):
                _fold_film(prev, *film_affine(child, self.lam))  # FiLM right after a BN
                new: nn.Module = nn.Identity()
            else:
                new = self(child)
            if new is not child:
                setattr(m, name, new)
            prev = new
        if isinstance(m, NormFiLM):  # a plain Sequential in the export (same child names)
            return nn.Sequential(OrderedDict(m.named_children()))
        return m


@torch.no_grad()
def to_plain(model: nn.Module, dials: Mapping[str, Any] | None = None, *,
             input_shape: Sequence[int] = (3, 32, 32), noise: str = "fixed") -> nn.Module:
    """A copy of ``model`` at fixed dials built from standard layers, in eval mode.

    Args:
        model: a (conditioned) robustdial model; not modified.
        dials: the operating point, e.g. ``{"lam": 0.7, "width": 0.5}`` (scalar λ).
        input_shape: one image's (C, H, W), for the recording forward.
        noise: FLOAT weight noise ``"fixed"`` (seeded η baked in) or ``"off"``.

    Returns:
        The plain model; ``model(x)`` at ``dials`` with the same noise mode, in
        eval mode, equals its output to float tolerance.
    """
    if noise not in NOISE_EXPORT:
        raise ValueError(f"noise must be one of {NOISE_EXPORT} for export, got {noise!r}")
    dials = dict(dials or {})
    if isinstance(dials.get("lam"), torch.Tensor) and dials["lam"].dim() > 0:
        raise ValueError("export needs one scalar λ (lam=0.7), not a per-sample tensor")
    net = copy.deepcopy(model).eval()
    if "noise" in dial_specs(net):  # a noiseless model has no noise dial: nothing to pin
        dials["noise"] = noise
    cond = set_condition(net, **dials)
    rec = _record(net, input_shape)
    plain = _Converter(rec, get_condition(net).lam_value, cond.use_adv_bn, noise)(net)
    if hasattr(plain, "_rd_condition"):
        del plain._rd_condition
    return plain.eval()
