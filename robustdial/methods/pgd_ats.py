"""PGD-ATS: PGD adversarial training of a slimmable network (fixed λ, dial-able width).

The OATS baseline of Wang et al., "Once-for-All Adversarial Training", NeurIPS
2020, Sec. 4.3: the slimmable network's classification loss replaced by the
PGD-AT loss ``(1 − λ)·CE(x) + λ·CE(x_adv)`` (their Eq. 1 / Madry et al. 2018),
averaged over widths {0.5, 0.75, 1.0} (``reduction="mean"``): the paper reads
slimmable training as "optimizing the average loss across all different-width
subnetworks" (related work) and compares PGD-ATS with OATS, which averages;
x_adv from the same-width sub-network.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .pgd_at import PGDAT
from .slimmable import Slimmable

__all__ = ["PGDATS"]


class PGDATS(Slimmable):
    """PGD-AT × widths.

    Args:
        widths: trained width factors.
        reduction: how the per-width losses combine; ``None`` = ``"mean"`` (the paper).
        **pgd_at_kwargs: :class:`~robustdial.methods.pgd_at.PGDAT` options
            (``lam``, ``attack``, ``attack_bn_mode``, ``clean_metrics``).
    """

    name = "pgd_ats"
    default_reduction = "mean"

    def __init__(self, widths: Sequence[float] = (0.5, 0.75, 1.0), *, reduction: str | None = None,
                 **pgd_at_kwargs: Any) -> None:
        super().__init__(PGDAT(**pgd_at_kwargs), widths, reduction=reduction)


METHOD = PGDATS
