"""Parameter counts and storage at b-bit weights.

Storage follows FLOAT's convention (Sec. 4, Fig. 7(b)): every parameter stored
at ``bits`` bits, *neglecting the conditioning overhead that FLOAT adds* — the
second BN of a dual-BN pair and the per-layer noise scales α. Under that rule an
8-bit FLOAT ResNet-34 costs 21.28 MB and the OAT ResNet-34 of the paper
(d = 1, single BN) 31.4 MB, the "1.47×" of the paper.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

__all__ = ["ParamCount", "count_params", "storage_bytes"]


@dataclasses.dataclass(frozen=True)
class ParamCount:
    """Parameter totals.

    Attributes:
        total: every parameter element.
        nonzero: elements that are not exactly zero (pruned weights excluded).
        storage_params: elements counted for storage (FLOAT convention, see module doc).
        storage_nonzero: of those, the non-zero ones.
    """

    total: int
    nonzero: int
    storage_params: int
    storage_nonzero: int


def _skipped_for_storage(model: nn.Module) -> set[int]:
    """ids of parameters the FLOAT storage convention neglects."""
    skip: set[int] = set()
    for m in model.modules():
        second_bn = getattr(m, "bn_a", None)
        if isinstance(second_bn, nn.BatchNorm2d) and hasattr(m, "bn_c"):
            skip.update(id(p) for p in second_bn.parameters())
    for p in model.parameters():
        if getattr(p, "_no_weight_decay", False) and p.numel() == 1:
            skip.add(id(p))  # FLOAT's per-layer noise scale α
    return skip


def count_params(model: nn.Module) -> ParamCount:
    """Count parameters of ``model`` (masks already applied to the weights count as zeros)."""
    skip = _skipped_for_storage(model)
    total = nonzero = storage = storage_nz = 0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        nz = int(torch.count_nonzero(p.detach()))
        total += n
        nonzero += nz
        if id(p) not in skip:
            storage += n
            storage_nz += nz
    return ParamCount(total, nonzero, storage, storage_nz)


def storage_bytes(model: nn.Module, bits: int = 8, *, sparse: bool = False) -> float:
    """Storage of the model's weights at ``bits`` bits each, in bytes.

    Args:
        model: the model.
        bits: bits per stored parameter (FLOAT's convention: 8).
        sparse: count only non-zero parameters (the cost of a sparse model without
            index overhead; compression ratio CR = 1/d as in FLOAT Table 1).
    """
    if bits <= 0:
        raise ValueError(f"bits must be positive, got {bits}")
    pc = count_params(model)
    n = pc.storage_nonzero if sparse else pc.storage_params
    return n * bits / 8.0
