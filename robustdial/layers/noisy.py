"""Noise-conditioned weights: θ̂ = θ + m·α·η (FLOAT, Kundu et al. 2023; PNI, He et al. 2019).

Kundu, Sundaresan, Beerel et al., "FLOAT: Fast Learnable Once-for-All
Adversarial Training for Tunable Trade-off between Accuracy and Robustness",
WACV 2023, Eq. 4: ``θ̂ˡ = θˡ + λ·αˡ·ηˡ``, ``ηˡ ~ N(0, (σˡ)²)`` with σˡ the
standard deviation of the layer's weights (computed without gradient, as in
Parametric Noise Injection, He, Rakin, Fan, CVPR 2019) and αˡ a learnable
scalar per layer (init 0.25, no weight decay).

Pruned weights (FLOATS-i / -c / slim: exact zeros kept by the sparse masks)
get no noise and do not count in σˡ: σˡ is the std of the **surviving**
(non-zero) weights. Counting the zeros would shrink σ by about 1/√d at density
d (3.2× at d = 0.1 for random masks, more for magnitude pruning, which removes
the small weights), so a sparse model would be trained with much weaker noise
than the dense FLOAT model it is compared with. For a dense tensor this is the
ordinary std. At inference λ becomes the
continuous λ_n and the factor ``m`` follows Eq. 6 through
:attr:`Condition.noise_multiplier` (``m = λ`` for λ_th = 0; ``2λ`` / ``2(λ − 0.5)``
for λ_th = 0.5).

Noise modes (the ``noise`` dial):

* ``"sample"``: a fresh η on every forward (PNI / FLOAT training).
* ``"hold"``: one random η, drawn at the first forward and kept until
  :func:`resample_noise` — e.g. one draw per training step, shared by the
  attack's iterations and the loss forward (``FLOAT(attack_noise="step")``).
* ``"fixed"``: η drawn once from a per-layer seeded generator and cached, so the
  model is a deterministic function; re-drawn when shape/device/dtype change.
* ``"off"``: no noise at all.

**Evaluation behaviour (decision).** With the ``noise`` dial unset, a layer in
train mode samples fresh noise; a layer in eval mode uses the *fixed* seeded
draw. The noise stays on at evaluation (as in PNI and FLOAT: its magnitude is
what moves the model along the trade-off), but the evaluated model is
deterministic, so a white-box attack differentiates exactly the function that is
scored — no randomness that could mask gradients or need EOT, and reproducible
accuracies. ``noise="sample"`` reproduces PNI's stochastic evaluation; the
obfuscation checklist (``robustdial.evaluation.checklist``) tests both.

At m = 0 (λ = 0, or λ ≤ λ_th = 0 …) the layer *is* the plain layer: no noise is
drawn and the forward is the ordinary ``conv2d`` / ``linear`` call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..condition import Condition, DialSpec, Interval
from .dual_bn import DualBatchNorm2d

__all__ = ["NoisyConv2d", "NoisyLinear", "float_layer_set", "resample_noise"]


def resample_noise(model: nn.Module) -> None:
    """Drop every held noise draw (``noise="hold"``) in ``model``: the next forward draws anew."""
    for m in model.modules():  # noisy weights and feature-noise layers alike
        fn = getattr(m, "resample_noise", None)
        if callable(fn):
            fn()


def _surviving_std(w: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Unbiased std of ``w`` over the positions where ``alive`` (a 0-dim tensor, no host sync).

    Equals ``w.std()`` up to rounding for a dense tensor; 0 with fewer than two survivors.
    """
    n = alive.sum()
    wf = w.float()
    mean = wf.mul(alive).sum() / n.clamp(min=1)
    var = (wf - mean).square_().mul_(alive).sum() / (n - 1).clamp(min=1)
    return var.sqrt().to(w.dtype)


class _WeightNoise:
    """Shared logic of the noisy layers (mixed into nn.Conv2d / nn.Linear)."""

    weight: nn.Parameter
    alpha: nn.Parameter
    training: bool
    # α is excluded from weight decay (PNI / FLOAT): by name here, which survives
    # deepcopy, and by the parameter flag ``_no_weight_decay`` set below.
    no_weight_decay = ("alpha",)

    def _init_noise(self, alpha_init: float, noise_seed: int) -> None:
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha._no_weight_decay = True  # read by the engine's optimizer builder
        self.noise_seed = int(noise_seed)
        self._cond = Condition()
        self._mult: float | None = 0.0  # cached noise multiplier of self._cond
        self._fixed_eta: torch.Tensor | None = None
        self._held_eta: torch.Tensor | None = None

    def resample_noise(self) -> None:
        """Forget the held draw of ``noise="hold"``."""
        self._held_eta = None

    def apply_condition(self, cond: Condition) -> None:
        self._cond = cond
        self._mult = None  # computed lazily: a per-sample λ tensor errors only when used

    def dial_specs(self) -> dict[str, DialSpec]:
        return {"lam": Interval(0.0, 1.0), "lam_th": Interval(0.0, 0.999)}

    @property
    def noise_multiplier(self) -> float:
        """m of θ̂ = θ + m·α·η under the current condition (Eq. 6)."""
        if self._mult is None:
            self._mult = self._cond.noise_multiplier
        return self._mult

    @property
    def noise_mode(self) -> str:
        """``"sample"``, ``"fixed"`` or ``"off"`` (unset dial: sample in train, fixed in eval)."""
        mode = self._cond.noise
        if mode is None:
            return "sample" if self.training else "fixed"
        return mode

    def _eta(self) -> torch.Tensor:
        """Standard normal η of the weight's shape (fresh or the cached fixed draw)."""
        w = self.weight
        mode = self.noise_mode
        if mode == "sample":
            return torch.randn_like(w)
        if mode == "hold":
            eta = self._held_eta
            if eta is None or eta.shape != w.shape or eta.device != w.device or eta.dtype != w.dtype:
                eta = self._held_eta = torch.randn_like(w)
            return eta
        eta = self._fixed_eta
        if eta is None or eta.shape != w.shape or eta.device != w.device or eta.dtype != w.dtype:
            g = torch.Generator().manual_seed(self.noise_seed)
            eta = torch.randn(w.shape, generator=g, dtype=torch.float32).to(w.device, w.dtype)
            self._fixed_eta = eta
        return eta

    def effective_weight(self) -> torch.Tensor:
        """θ̂ = θ + m·α·η, η ~ N(0, σ²), σ = std of the non-zero weights; pruned zeros stay zero.

        Exactly ``self.weight`` when m = 0 or noise is off.
        """
        w = self.weight
        m = self.noise_multiplier
        if m == 0.0 or self.noise_mode == "off":
            return w
        with torch.no_grad():  # no gradient through σ
            alive = w != 0  # pruned weights (FLOATS-i/-c/slim) stay pruned and do not count in σ
            eta = self._eta().mul(_surviving_std(w, alive))
            eta.mul_(alive)
        return torch.addcmul(w, self.alpha * m, eta)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={float(self.alpha.detach()):.3g}"


class NoisyConv2d(_WeightNoise, nn.Conv2d):
    """``nn.Conv2d`` whose weight is θ + m·α·η (FLOAT Eq. 4, PNI).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups, bias: as ``nn.Conv2d``.
        alpha_init: initial noise scale α (0.25 in PNI / FLOAT).
        noise_seed: seed of the ``"fixed"`` noise draw (distinct per layer).

    Shape:
        (B, C_in, H, W) -> (B, C_out, H', W')
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, alpha_init: float = 0.25,
                 noise_seed: int = 0) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, bias=bias)
        self._init_noise(alpha_init, noise_seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)



class NoisyLinear(_WeightNoise, nn.Linear):
    """``nn.Linear`` whose weight is θ + m·α·η (FLOAT Eq. 4, PNI).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        alpha_init: initial noise scale α.
        noise_seed: seed of the ``"fixed"`` noise draw.

    Shape:
        (B, in_features) -> (B, out_features)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 alpha_init: float = 0.25, noise_seed: int = 0) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_noise(alpha_init, noise_seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


def float_layer_set(base, *, alpha_init: float = 0.25, dual_bn: bool = True,
                    noise_seed: int = 0):
    """FLOAT's layer factories: noisy conv / linear weights and dual BN.

    Args:
        base: the :class:`~robustdial.models.LayerSet` to modify.
        alpha_init: initial α of every noisy layer.
        dual_bn: BN_C / BN_A pairs (FLOAT) instead of single BNs.
        noise_seed: base seed of the fixed-noise draws; layer k uses ``noise_seed + k``.

    Returns:
        The new ``LayerSet``: ``conv`` -> :class:`NoisyConv2d`, ``linear`` / ``head``
        -> :class:`NoisyLinear`, ``norm`` / ``aux_norm`` -> ``DualBatchNorm2d``,
        ``cond`` -> Identity.
    """
    counter = [noise_seed]

    def next_seed() -> int:
        counter[0] += 1
        return counter[0] - 1

    def conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
             groups: int = 1, bias: bool = False) -> NoisyConv2d:
        return NoisyConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=bias, alpha_init=alpha_init, noise_seed=next_seed())

    def linear(in_f: int, out_f: int, bias: bool = True) -> NoisyLinear:
        return NoisyLinear(in_f, out_f, bias=bias, alpha_init=alpha_init, noise_seed=next_seed())

    def bn(C: int) -> nn.Module:
        return DualBatchNorm2d(C) if dual_bn else nn.BatchNorm2d(C)

    return base.replace(conv=conv, linear=linear, head=linear, norm=bn, aux_norm=bn,
                        cond=lambda C: nn.Identity(), tags=base.tags + ("float",))
