"""EnResNet's Gaussian feature-noise injection after each residual add.

Paper: B. Wang, B. Yuan, Z. Shi, S. Osher, "ResNets Ensemble via the
Feynman-Kac Formalism to Improve Natural and Robust Accuracies" (NeurIPS 2019),
used in papers/binary-relax-enresnet-tradeoff.txt: the output of every residual
block becomes ``out + c·std(out)·N(0, 1)`` (the diffusion term of the
convection-diffusion ODE), ``c = 0.1``, the standard deviation taken over the
whole tensor (batch included), and the noise stays on at test time.

Deviation from the authors' code (documented choice): ``std(out)`` is
detached, so the noise scale is a constant for back-propagation; the noise
direction itself carries no gradient in either version.
"""
from __future__ import annotations

import torch
from torch import nn

from ..condition import NOISE_MODES, Choices, Condition, DialSpec

__all__ = ["NoiseInjection"]


class NoiseInjection(nn.Module):
    """``x + c·std(x)·η``, η ~ N(0, I), controlled by the ``noise`` dial.

    Dial ``noise``:
        ``"sample"`` (default; training and evaluation): fresh η every forward
        from the global torch RNG. ``"fixed"``: η from a generator seeded with
        ``seed`` on every forward, so repeated forwards of the same batch shape
        agree (a deterministic model for debugging and gradient checks).
        ``"hold"``: one random η kept (while the input shape stays the same)
        until :meth:`resample_noise`. ``"off"``: identity.

    Args:
        coef: c, noise strength relative to the feature std (0.1 in the paper).
            ``0`` makes the layer an identity.
        seed: per-layer seed for ``"fixed"`` mode; give each layer its own.

    Shape:
        any -> same shape.
    """

    def __init__(self, coef: float = 0.1, *, seed: int = 0) -> None:
        super().__init__()
        if coef < 0:
            raise ValueError(f"noise coefficient must be >= 0, got {coef}")
        self.coef = float(coef)
        self.seed = int(seed)
        self._mode = "sample"
        self._held: torch.Tensor | None = None

    def resample_noise(self) -> None:
        """Forget the held draw of ``noise="hold"``."""
        self._held = None

    def apply_condition(self, cond: Condition) -> None:
        self._mode = "sample" if cond.noise is None else cond.noise

    def dial_specs(self) -> dict[str, DialSpec]:
        return {"noise": Choices(NOISE_MODES)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coef == 0.0 or self._mode == "off":
            return x
        std = x.detach().std()  # scalar over the whole tensor, no gradient
        if self._mode == "fixed":
            gen = torch.Generator(device=x.device)
            gen.manual_seed(self.seed)
            eta = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        elif self._mode == "hold":
            eta = self._held
            if eta is None or eta.shape != x.shape or eta.device != x.device or eta.dtype != x.dtype:
                eta = self._held = torch.randn_like(x)
        else:
            eta = torch.randn_like(x)
        return x + (self.coef * std) * eta

    def extra_repr(self) -> str:
        return f"coef={self.coef:g}, seed={self.seed}"
