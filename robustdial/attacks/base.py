"""Shared pieces of every attack: call shape, pluggable loss, input gradient, projections.

Every attack is constructed with keyword-only hyper-parameters and called as
``x_adv = attack(model, x, y)``. Inputs live in [0, 1] (ARCHITECTURE.md,
contract 1); ε and step sizes are on that scale. Attacks

* take gradients with ``torch.autograd.grad`` with respect to the input only,
  so parameter ``.grad`` is never touched and parameter gradients are not even
  computed;
* never change ``model.training`` (the caller picks the BN mode, e.g. with
  :func:`robustdial.utils.train_mode`);
* take a pluggable ``loss(model, x_adv, y) -> (B,)`` so multi-exit forms and
  TRADES' KL reuse the same optimisers;
* draw random starts from an optional ``torch.Generator`` (on ``x``'s device)
  for run-to-run determinism; without one the global RNG is used.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Attack",
    "LossFn",
    "ce_loss",
    "check_inputs",
    "clamp_unit",
    "l2_norm",
    "linf_bounds",
    "model_num_classes",
    "project_l2",
    "random_l2",
    "random_linf",
]

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``loss(model, x_adv, y) -> per-sample loss (B,)``; attacks ascend it."""

_TINY = 1e-12  # guards divisions by a zero gradient / perturbation norm


def ce_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy of ``model(x)``.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) int64 -> (B,).
    """
    return F.cross_entropy(model(x), y, reduction="none")


def clamp_unit(x: Tensor) -> Tensor:
    """Clamp to the image range [0, 1] (in place when ``x`` allows it)."""
    return x.clamp_(0.0, 1.0)


def linf_bounds(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-element box ``[max(x − ε, 0), min(x + ε, 1)]``: ε-ball ∩ [0, 1].

    Precomputed once per attack so each step's projection and clamp is a
    single fused ``clamp_(lo, hi)``.
    """
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def l2_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shape (B, 1, ..., 1) so it broadcasts against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_l2(delta: Tensor, eps: float) -> Tensor:
    """Scale each sample of ``delta`` into the L2 ball of radius ``eps`` (in place)."""
    factor = (eps / l2_norm(delta).clamp_min(_TINY)).clamp_(max=1.0)
    return delta.mul_(factor)


def random_linf(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """``x + U(−ε, ε)`` clamped to [0, 1] (Madry et al. 2018 random start)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return noise.mul_(2 * eps).sub_(eps).add_(x).clamp_(0.0, 1.0)


def random_l2(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """``x + δ`` with δ a random direction scaled to radius ``r·ε``, r ~ U(0, 1), clamped to [0, 1].

    The same start as torchattacks' PGDL2; clamping to [0, 1] only shrinks δ
    (``x`` itself lies in [0, 1]), so the result stays in the ball.
    """
    B = x.shape[0]
    delta = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    r = torch.rand((B,), generator=generator, device=x.device, dtype=x.dtype)
    r = r.view(-1, *([1] * (x.dim() - 1)))
    delta.mul_(r * eps / l2_norm(delta).clamp_min(_TINY))
    return delta.add_(x).clamp_(0.0, 1.0)


def _number(name: str, value: Any) -> float:
    if not isinstance(value, (bool, str, bytes)):
        try:
            return float(value)  # ints, floats, NumPy scalars, one-element tensors
        except (TypeError, ValueError):
            pass
    scale = (f" on the [0, 1] pixel scale (e.g. 8/255 = {8 / 255:.5f})"
             if name in ("eps", "alpha") else "")
    raise TypeError(f"{name} must be a number{scale}, got {value!r}")


def _check_eps(name: str, value: float, *, allow_zero: bool = True, unit: bool = False) -> float:
    """A finite, non-negative hyper-parameter; with ``unit`` also at most 1 (an L∞ radius).

    ``unit`` catches radii written on the 0..255 scale: ``eps=8`` is refused with
    "8/255, not 8".
    """
    value = _number(name, value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {need} on the [0, 1] pixel scale "
                         f"(e.g. 8/255 = {8/255:.5f}), got {value!r}")
    if unit and value > 1:
        raise ValueError(f"{name}={value:g} is larger than the whole [0, 1] pixel range: ε and "
                         f"step sizes are on the [0, 1] scale, so write {value:g}/255, not {value:g}")
    return value


def _check_step(name: str, value: float, *, eps: float) -> float:
    """A step size: finite and > 0 (0 only for a zero-radius attack, which is a no-op)."""
    return _check_eps(name, value, allow_zero=eps == 0)


def _check_steps(name: str, value: int) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if not ok or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return int(value)


def model_num_classes(model: nn.Module) -> int | None:
    """The number of classes a model predicts, when it says so (``rd_spec`` or ``num_classes``)."""
    for attr in ("module", "_orig_mod"):  # DDP / compiled wrappers
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return model_num_classes(inner)
    spec = getattr(model, "rd_spec", None)
    k = spec.get("num_classes") if isinstance(spec, dict) else getattr(model, "num_classes", None)
    return k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None


def check_inputs(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Refuse inputs an attack cannot be trusted with; returns ``y`` as int64.

    Checks types and shapes on the host, then the value ranges (x finite and in
    [0, 1]; labels in [0, K)) with one fused reduction and a single host sync
    per call, never per step.

    Raises:
        TypeError: x not a floating tensor, x's dtype differs from the model's
            (outside autocast), labels not integers.
        ValueError: shapes, x outside [0, 1] or not finite, labels outside [0, K)
            (including ``ignore_index`` values such as −100).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("x must be a float tensor of images in [0, 1]; convert uint8 "
                        "images with x.float() / 255")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"y must be a (B,) tensor matching x's batch size {x.shape[0]}, "
                         f"got {got}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels (int64), got {y.dtype}; pass y.long()")
    if y.dtype != torch.int64:
        y = y.long()
    params = getattr(model, "parameters", None)
    p = next(iter(params()), None) if callable(params) else None
    if (p is not None and p.is_floating_point() and p.dtype != x.dtype
            and not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f"x is {x.dtype} but the model's parameters are {p.dtype}; pass "
                        f"x.to({p.dtype}) (or convert the model) — attacks do not cast silently")
    if x.numel() == 0:
        return y
    k = model_num_classes(model)
    lo, hi = torch.aminmax(x.detach())
    ylo, yhi = torch.aminmax(y)
    # the one host sync of the call
    lo, hi, ylo, yhi = torch.stack([lo.float(), hi.float(), ylo.float(), yhi.float()]).tolist()
    if not (lo >= 0.0 and hi <= 1.0):  # NaN fails both comparisons
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("x holds NaN or infinite values; attacks need finite images in [0, 1]")
        hint = (" — scale 0..255 images with x / 255" if hi > 1.5 else
                " — keep normalisation inside the model (robustdial.layers.Normalize)" if lo < 0
                else "")
        raise ValueError(f"x must be images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")
    if ylo < 0 or (k is not None and yhi >= k):
        bad = int(ylo) if ylo < 0 else int(yhi)
        kk = "K" if k is None else str(k)
        extra = (" (ignore_index labels such as -100 get no gradient: drop those samples)"
                 if bad == -100 else "")
        raise ValueError(f"labels must be class indices in [0, {kk}), got {bad}{extra}")
    return y


class _Bare(str):
    """A string shown without quotes in ``repr`` (function names)."""

    def __repr__(self) -> str:
        return str(self)


class Attack:
    """Base class: validation, the loss hook, the input gradient and ``__repr__``.

    Subclasses implement :meth:`perturb` and list their hyper-parameters in
    ``_repr_fields``.

    Args:
        loss: ``loss(model, x_adv, y) -> (B,)`` to ascend; default
            :func:`ce_loss`.
        targeted: if True, ``y`` holds target labels and the attack descends
            the loss instead (moves towards the targets).
        generator: ``torch.Generator`` on ``x``'s device for random starts.
    """

    _repr_fields: tuple[str, ...] = ()

    def __init__(self, *, loss: LossFn | None = None, targeted: bool = False,
                 generator: torch.Generator | None = None) -> None:
        if loss is not None and not callable(loss):
            raise TypeError(f"loss must be callable as loss(model, x_adv, y) -> (B,), got {loss!r}")
        self.loss = loss
        self.targeted = bool(targeted)
        self.generator = generator

    # -- the call -----------------------------------------------------------------
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return adversarial examples for ``(x, y)``; the model's mode is untouched.

        Shape:
            x: (B, ...) float in [0, 1]; y: (B,) labels (targets if
            ``targeted``) -> (B, ...) like ``x``, detached.

        Raises:
            TypeError / ValueError: inputs the attack cannot be trusted with
                (see :func:`check_inputs`: one fused check per call).
        """
        y = check_inputs(model, x, y)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside torch.inference_mode() "
                               "(torch.no_grad() around the call is fine)")
        if x.is_inference():
            x = x.clone()
        if y.is_inference():
            y = y.clone()
        x = x.detach()
        with torch.enable_grad():
            return self.perturb(model, x, y).detach()

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The attack itself; ``x`` is detached and grad mode is on."""
        raise NotImplementedError

    # -- shared helpers -----------------------------------------------------------
    def loss_value(self, model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
        """Per-sample loss (B,) of the configured loss function."""
        fn = self.loss if self.loss is not None else ce_loss
        value = fn(model, x_adv, y)
        if value.shape != (x_adv.shape[0],):
            raise ValueError(f"the attack loss must return one value per sample, shape "
                             f"({x_adv.shape[0]},); got {tuple(value.shape)} — use "
                             "reduction='none'")
        return value

    def input_grad(self, model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
        """Gradient of the summed per-sample loss w.r.t. ``x_adv`` (ascent direction).

        For a targeted attack the sign is flipped so that callers always step
        along the returned direction. ``x_adv`` must be a leaf without grad.
        """
        x_adv.requires_grad_(True)
        if self.loss is None:  # default CE: summed in the kernel, one op fewer per step
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        else:
            loss = self.loss_value(model, x_adv, y).sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        return grad.neg_() if self.targeted else grad

    def _hparams(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self._repr_fields}
        if self.loss is not None:
            d["loss"] = _Bare(getattr(self.loss, "__name__", type(self.loss).__name__))
        if self.targeted:
            d["targeted"] = True
        return d

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            return f"{v:.6g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)

        args = ", ".join(f"{k}={fmt(v)}" for k, v in self._hparams().items())
        return f"{type(self).__name__}({args})"
