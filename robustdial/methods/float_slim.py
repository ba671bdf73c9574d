"""FLOAT slim: FLOAT trained jointly over slimming factors (FLOATS slim with sparse masks).

Kundu, Sundaresan, Beerel et al., "FLOAT: Fast Learnable Once-for-All
Adversarial Training for Tunable Trade-off between Accuracy and Robustness",
WACV 2023, Sec. 3.2 ("A globally structured locally irregular pruning",
Fig. 4(b)) and Table 1: the FLOAT loss ``0.5·L_C + 0.5·L_A`` (Algorithm 1) at
each slimming factor SF ∈ {1.0, 0.5}, one backward per width, one optimizer
step, switchable BNs per SF. One backward per width accumulates the gradients
of every width, so the per-width losses are **summed** (``reduction="sum"``,
as Yu et al.'s slimmable training, Algorithm 1), not averaged. FLOATS slim adds the sparse-learning masks of
:class:`robustdial.compress.SparseMomentum` (a training transform, d = 0.3 in
Table 1). Build the model with
``create_model(name, conditioning="float", widths=(0.5, 1.0))``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .float import FLOAT
from .slimmable import Slimmable

__all__ = ["FLOATSlim"]


class FLOATSlim(Slimmable):
    """FLOAT × widths.

    Args:
        widths: slimming factors (FLOATS slim: 0.5, 1.0).
        reduction: how the per-width losses combine; ``None`` = ``"sum"`` (the paper).
        **float_kwargs: :class:`~robustdial.methods.float.FLOAT` options
            (``attack``, ``attack_bn_mode``, ``lam_th``, ``attack_noise``).
    """

    name = "float_slim"
    default_reduction = "sum"

    def __init__(self, widths: Sequence[float] = (0.5, 1.0), *, reduction: str | None = None,
                 **float_kwargs: Any) -> None:
        super().__init__(FLOAT(**float_kwargs), widths, reduction=reduction)


METHOD = FLOATSlim
