"""Dual batch normalization (OAT Sec. 3.2; FLOAT Sec. 3): BN_c for clean, BN_a for adversarial.

Routing follows the ``lam`` dial: a sample uses BN_a when ``lam > lam_th``.
With a scalar λ the whole batch takes one BN; with a per-sample λ tensor the
batch is split by the indices precomputed once per condition
(:attr:`Condition.bn_route`), each part normalized by its own BN (so batch
statistics stay separate, as in the papers), and scattered back in place.
When the clean samples come first (OAT's batches), the parts are plain slices
and the outputs are concatenated: no gather, one copy.
"""
from __future__ import annotations

import torch
from torch import nn

from ..condition import Condition, DialSpec, Interval


class DualBatchNorm2d(nn.Module):
    """Two BatchNorm2d layers selected per sample by λ.

    Args:
        num_features: channels C.
        **bn_kwargs: passed to both ``nn.BatchNorm2d``.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, num_features: int, **bn_kwargs) -> None:
        super().__init__()
        self.num_features = num_features
        self.bn_c = nn.BatchNorm2d(num_features, **bn_kwargs)
        self.bn_a = nn.BatchNorm2d(num_features, **bn_kwargs)
        self._cond = Condition()

    def apply_condition(self, cond: Condition) -> None:
        self._cond = cond

    def dial_specs(self) -> dict[str, DialSpec]:
        return {"lam": Interval(0.0, 1.0), "lam_th": Interval(0.0, 0.999)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self._cond.bn_route
        if route is None:
            return self.bn_a(x) if self._cond.use_adv_bn else self.bn_c(x)
        idx_c, idx_a, n_c, n_a = route
        if n_c + n_a != x.shape[0]:
            raise ValueError(
                f"per-sample λ has {n_c + n_a} entries but the batch has {x.shape[0]}"
            )
        if n_a == 0:
            return self.bn_c(x)
        if n_c == 0:
            return self.bn_a(x)
        if idx_c is None:  # clean samples first: contiguous slices
            return torch.cat([self.bn_c(x[:n_c]), self.bn_a(x[n_c:])], dim=0)
        if idx_c.device != x.device:
            raise RuntimeError("the per-sample λ tensor is on a different device than the input")
        out_c = self.bn_c(x.index_select(0, idx_c))
        out_a = self.bn_a(x.index_select(0, idx_a))
        out = x.new_empty((x.shape[0],) + out_c.shape[1:], dtype=out_c.dtype)
        out.index_copy_(0, idx_c, out_c)
        out.index_copy_(0, idx_a, out_a)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}"
