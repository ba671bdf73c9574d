"""Channel pruning by input-channel importance (FLOATS-c).

Kundu, Sundaresan, Beerel et al., "FLOAT", WACV 2023, Sec. 3.2: a conv weight
θ (C_out, C_in, k, k) is split into C_in slices; the importance of input
channel c is ``f_c = ‖θ[:, c, :, :]‖²_F`` and the channels are kept or removed
by the ranking of the f_c (Fig. 4(a): channel densities differ per layer).

Choices made here (documented, the paper leaves them open):

* **Global ranking** across layers of the *mean* squared magnitude of a slice,
  ``f_c / (C_out·k²)``, so slices of different sizes compare fairly; the kept
  slices fill a parameter budget ``round(d·N)`` over the pruned layers
  (Eq. 5's density in parameters). Every layer keeps at least one channel.
* **Layers**: every ungrouped conv except the stem (its input channels are the
  image's colour channels); fully connected, depthwise and FiLM layers are not
  pruned.
* **Schedule**: the target density goes from 1 to d over ``ramp_epochs``
  epochs (cubic, Zhu & Gupta 2017), re-ranked at each epoch end on the current
  weights; ``ramp_epochs=0`` prunes to d once when training starts. A removed
  channel stays removed (its slice is held at zero after every step).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ChannelPrune", "channel_importance", "prunable_convs", "prune_channels"]

_log = logging.getLogger(__name__)


def channel_importance(weight: Tensor) -> Tensor:
    """``f_c = ‖θ[:, c, ...]‖²_F`` for every input channel c.

    Args:
        weight: (C_out, C_in, ...) weight tensor.

    Returns:
        (C_in,) float tensor.
    """
    if weight.dim() < 2:
        raise ValueError(f"channel importance needs a weight with ≥ 2 dims, got {tuple(weight.shape)}")
    w = weight.detach().float()
    return w.transpose(0, 1).reshape(w.shape[1], -1).pow(2).sum(dim=1)


def prunable_convs(model: nn.Module, exclude: Sequence[str] = ()) -> list[str]:
    """Weight names of the convs FLOATS-c prunes (ungrouped, not the stem), registration order."""
    out, first = [], True
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if first:  # the stem reads the image channels
            first = False
            continue
        pname = f"{name}.weight"
        if m.groups == 1 and not any(e and e in pname for e in exclude):
            out.append(pname)
    return out


def prune_channels(model: nn.Module, density: float, *, layers: Sequence[str] | None = None
                   ) -> dict[str, Tensor]:
    """Channel keep-masks at parameter density ``density`` by global importance ranking.

    Args:
        model: the network (not modified).
        density: fraction of the pruned layers' parameters to keep, in (0, 1].
        layers: weight names (default :func:`prunable_convs`).

    Returns:
        ``{weight name: (C_in,) bool keep-mask}``.
    """
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    params = dict(model.named_parameters())
    names = list(layers) if layers is not None else prunable_convs(model)
    if not names:
        raise ValueError("no prunable conv layer found (ungrouped convs after the stem)")
    scores, sizes, owner = [], [], []
    for li, n in enumerate(names):
        if n not in params:
            raise ValueError(f"{n!r} is not a parameter of the model")
        w = params[n]
        per = w[:, 0].numel()  # parameters in one input-channel slice
        scores.append(channel_importance(w) / per)
        sizes.append(torch.full((w.shape[1],), per, dtype=torch.long))
        owner.append(torch.full((w.shape[1],), li, dtype=torch.long))
    score, size, own = torch.cat(scores).cpu(), torch.cat(sizes), torch.cat(owner)
    budget = round(float(density) * int(size.sum()))
    keep = torch.zeros_like(score, dtype=torch.bool)
    # one channel per layer first (its most important one), then the global ranking
    for li in range(len(names)):
        idx = (own == li).nonzero().flatten()
        keep[idx[score[idx].argmax()]] = True
    used = int(size[keep].sum())
    for i in torch.argsort(score, descending=True, stable=True).tolist():
        if keep[i]:
            continue
        if used + int(size[i]) > budget:
            continue
        keep[i] = True
        used += int(size[i])
    out, start = {}, 0
    for n in names:
        c = params[n].shape[1]
        out[n] = keep[start:start + c].to(params[n].device)
        start += c
    return out


class ChannelPrune:
    """FLOATS-c training transform: zero whole input-channel slices of low importance.

    Args:
        density: final parameter density d of the pruned convs, in (0, 1].
        ramp_epochs: epochs over which the target goes from 1 to d (0: prune once
            at the start of training).
        exclude: substrings of weight names never pruned.

    Example::

        fit(model, FLOAT(), data, cfg, transforms=[ChannelPrune(0.34, ramp_epochs=5)])
    """

    def __init__(self, density: float, *, ramp_epochs: int = 0, exclude: Sequence[str] = ()) -> None:
        if not 0.0 < float(density) <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        if int(ramp_epochs) < 0:
            raise ValueError(f"ramp_epochs must be ≥ 0, got {ramp_epochs!r}")
        self.density = float(density)
        self.ramp_epochs = int(ramp_epochs)
        self.exclude = tuple(exclude)
        self.keep: dict[str, Tensor] = {}
        self._params: dict[str, nn.Parameter] = {}

    def target_at(self, epoch: int) -> float:
        """Target density after epoch ``epoch`` (0-based); ``epoch = -1`` = training start."""
        if self.ramp_epochs == 0:
            return self.density
        t = min(1.0, max(0.0, (epoch + 1) / self.ramp_epochs))
        return self.density + (1.0 - self.density) * (1.0 - t) ** 3

    def _bind(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        self._params = {n: params[n] for n in prunable_convs(model, self.exclude)}

    def update(self, model: nn.Module, density: float) -> None:
        """Re-rank and set the keep-masks at ``density``; removed channels stay removed."""
        if not self._params:
            self._bind(model)
        new = prune_channels(model, density, layers=list(self._params))
        if self.keep:
            new = {n: k & self.keep[n].to(k.device) for n, k in new.items()}
        self.keep = new
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the removed input-channel slices."""
        for n, k in self.keep.items():
            p = self._params[n]
            p.mul_(k.to(p.device).view(1, -1, *([1] * (p.dim() - 2))).to(p.dtype))

    def on_train_start(self, model: nn.Module, optimizer: Any) -> None:
        self._bind(model)
        if self.keep:
            self.apply()
        elif self.target_at(-1) < 1.0:
            self.update(model, self.target_at(-1))

    def after_step(self, model: nn.Module, optimizer: Any) -> None:
        if self.keep:
            self.apply()

    def on_epoch_end(self, epoch: int, model: nn.Module, optimizer: Any) -> None:
        if self.ramp_epochs and epoch < self.ramp_epochs:
            self.update(model, self.target_at(epoch))
            _log.info("channel prune: epoch %d target density %.3f, channel density %.3f",
                      epoch, self.target_at(epoch), self.channel_density(model))

    def channel_density(self, model: nn.Module) -> float:
        """Fraction of non-zero input-channel slices (``compress.metrics``) over the pruned convs."""
        from .metrics import channel_density

        return channel_density(model, layers=list(self._params) or prunable_convs(model, self.exclude))

    def weight_density(self, model: nn.Module) -> float:
        from .metrics import weight_density

        return weight_density(model, layers=list(self._params) or prunable_convs(model, self.exclude))

    def state_dict(self) -> dict[str, Any]:
        return {"density": self.density, "keep": {k: v.cpu() for k, v in self.keep.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keep = {k: v.bool() for k, v in state["keep"].items()}

    def __repr__(self) -> str:
        return f"ChannelPrune(density={self.density:g}, ramp_epochs={self.ramp_epochs})"

