"""The paper's projections written out independently of ``robustdial.compress``.

REFERENCE.md (Binary-Relax): binary ``mean|w|·sign(w)``; ternary ``δ = 0.7·mean|w|``,
mask ``|w| ≥ δ``, scale = mean over *all* elements of ``|w|·mask``; 4-bit
``δ = max|w|/15``, level ``j`` when ``(2j−1)δ < |w| ≤ (2j+1)δ`` (0 below δ, 7 above
13δ), least-squares scale ``Σ|w|q/Σq²``. The 4-bit level is computed here by
counting the thresholds ``(2j−1)δ`` that ``|w|`` exceeds — a different formula
from the library's, on purpose.
"""
from __future__ import annotations

import torch


def sign_pm1(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def binary(w: torch.Tensor) -> torch.Tensor:
    return w.abs().mean() * sign_pm1(w)


def ternary(w: torch.Tensor) -> torch.Tensor:
    a = w.abs()
    mask = (a >= 0.7 * a.mean()).to(w.dtype)
    return (a * mask).sum() / w.numel() * mask * sign_pm1(w)


def four_bit(w: torch.Tensor) -> torch.Tensor:
    a = w.abs()
    delta = a.max() / 15
    q = sum((a > (2 * j - 1) * delta).to(w.dtype) for j in range(1, 8))
    scale = (a * q).sum() / (q * q).sum()
    return scale * q * sign_pm1(w)


BY_HAND = {"binary": binary, "ternary": ternary, "4bit": four_bit}
