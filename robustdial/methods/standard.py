"""Standard (natural) training: mean cross-entropy on clean inputs.

The baseline every robustness paper compares against; no attack, no BN-mode
choice to make.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import Method, accuracy, ce_mean

__all__ = ["Standard"]


class Standard(Method):
    """``L = CE(f(x), y)`` averaged over the batch.

    Metrics: ``loss_clean``, ``acc_clean`` (detached 0-dim tensors).
    """

    name = "standard"

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        logits = model(x)  # (B, num_classes)
        loss = ce_mean(logits, y)
        return loss, {"loss": loss.detach(), "loss_clean": loss.detach(), "acc_clean": accuracy(logits, y)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


METHOD = Standard
