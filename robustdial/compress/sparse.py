"""Sparse learning with momentum redistribution and regrowth (FLOATS-i).

Dettmers & Zettlemoyer, "Sparse Networks from Scratch: Faster Training without
Losing Performance", 2019; used by FLOAT sparse-irregular (Kundu et al., WACV
2023, Sec. 3.2, Eq. 5 and Algorithm 1 ``pruneRegrow`` / ``updateMask``).

Procedure (REFERENCE.md, FLOAT section):

* **Masks** (one bool tensor per masked weight) are held by this transform and
  saved through :meth:`state_dict` (the engine stores it in ``train_state.pt``,
  so resume restores them; every DDP rank holds the same masks because weights
  and momenta are identical across ranks). The model's ``state_dict`` is
  untouched, so checkpoints load into an ordinary model.
* **Which weights**: every ``nn.Conv2d`` / ``nn.Linear`` weight (subclasses
  included: noisy and slimmable layers), the first conv and the classifier
  included (as Dettmers' reference code), except layers inside a FiLM (OAT's
  conditioning MLPs) and names matching ``exclude``. BN parameters, biases and
  FLOAT's α are never masked.
* **Initial masks** at global density ``d``: ``init="uniform"`` (default:
  every layer at density d) or ``"erk"`` (Erdős–Rényi-kernel, Evci et al.
  2020: density ∝ (Σ dims)/(Π dims), capped at 1). Integer counts are
  allotted by largest remainder so the total is exactly ``round(d·N)``; the
  positions are random (seeded generator).
* **After every optimizer step** (``after_step``) the weights are multiplied by
  their masks. Gradients and momenta of inactive weights are left dense: the
  momentum of an inactive weight is what regrowth ranks.
* **Once per epoch** (``on_epoch_end``; skipped after the last epoch) with the
  prune rate ``p_t = p·½(1 + cos(π·t/T))`` (``prune_schedule="cosine"``) or
  constant ``p``:

  1. layer importance = mean |momentum| over the layer's active weights;
  2. prune ``round(p_t·active_l)`` smallest-magnitude active weights per layer;
  3. regrow the same total, split across layers in proportion to importance
     (capped by each layer's free positions, remainder redistributed), at the
     inactive positions with the largest |momentum| — never at a position that
     is still active, so the global count stays exactly ``round(d·N)``;
  4. weights and momenta of pruned and regrown positions are set to zero.

Needs SGD with momentum (``optimizer.state[p]["momentum_buffer"]``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SparseMomentum", "allot", "sparse_weight_names"]

_log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "constant")
INITS = ("uniform", "erk")


def sparse_weight_names(model: nn.Module, exclude: Sequence[str] = ()) -> list[str]:
    """Names of the weights sparse learning masks (see the module doc), registration order."""
    from robustdial.layers.film import FiLM

    skip: set[str] = set()
    for name, m in model.named_modules():
        if isinstance(m, FiLM):
            skip.update(f"{name}.{n}" if name else n for n, _ in m.named_modules())
    out = []
    for name, m in model.named_modules():
        if name in skip or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        pname = f"{name}.weight" if name else "weight"
        if any(e and e in pname for e in exclude):
            continue
        out.append(pname)
    return out


def allot(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Integers ``n_l ≤ caps[l]`` summing exactly to ``total``, proportional to ``weights``.

    Largest-remainder rounding; what a capped layer cannot take goes to the others.

    Raises:
        ValueError: ``total`` exceeds the sum of the caps.
    """
    if total > sum(caps):
        raise ValueError(f"cannot place {total} weights in layers with room for {sum(caps)}")
    n = [0] * len(caps)
    open_ = [i for i, c in enumerate(caps) if c > 0]
    left = total
    while left > 0:
        wsum = sum(max(weights[i], 0.0) for i in open_)
        share = {i: (max(weights[i], 0.0) / wsum if wsum > 0 else 1.0 / len(open_)) * left
                 for i in open_}
        floors = {i: min(int(math.floor(share[i])), caps[i] - n[i]) for i in open_}
        for i, f in floors.items():
            n[i] += f
        placed = sum(floors.values())
        rest = left - placed
        # largest remainders get one more, while room is left
        order = sorted(open_, key=lambda i: share[i] - math.floor(share[i]), reverse=True)
        for i in order:
            if rest == 0:
                break
            if n[i] < caps[i]:
                n[i] += 1
                rest -= 1
        left = rest
        open_ = [i for i in open_ if n[i] < caps[i]]
        if left > 0 and not open_:  # pragma: no cover - excluded by the check above
            raise RuntimeError("allotment failed")
    return n


class SparseMomentum:
    """Sparse-momentum masks at a fixed global density (a training transform).

    Args:
        density: global fraction d ∈ (0, 1] of non-zero masked weights.
        prune_rate: initial fraction p of each layer's active weights pruned
            (and regrown) per epoch (0.5 in Dettmers & Zettlemoyer).
        prune_schedule: ``"cosine"`` (p·½(1 + cos(π·t/T)), needs ``epochs``) or
            ``"constant"``.
        epochs: total training epochs T (for the cosine schedule; no update after
            the last epoch).
        init: initial per-layer densities, ``"uniform"`` or ``"erk"``.
        exclude: substrings of weight names never masked (e.g. ``("fc",)``).
        seed: seed of the initial random mask positions.

    Example::

        fit(model, method, data, cfg, transforms=[SparseMomentum(0.1, epochs=cfg.epochs)])
    """

    def __init__(self, density: float, *, prune_rate: float = 0.5, prune_schedule: str = "cosine",
                 epochs: int | None = None, init: str = "uniform", exclude: Sequence[str] = (),
                 seed: int = 0) -> None:
        if not 0.0 < float(density) <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        if not 0.0 <= float(prune_rate) < 1.0:
            raise ValueError(f"prune_rate must be in [0, 1), got {prune_rate!r}")
        if prune_schedule not in SCHEDULES:
            raise ValueError(f"prune_schedule must be one of {SCHEDULES}, got {prune_schedule!r}")
        if prune_schedule == "cosine" and (epochs is None or int(epochs) < 1):
            raise ValueError("the cosine prune schedule needs the number of training epochs: pass "
                             "epochs=<train.epochs>, or prune_schedule='constant'")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.density = float(density)
        self.prune_rate = float(prune_rate)
        self.prune_schedule = prune_schedule
        self.epochs = None if epochs is None else int(epochs)
        self.init = init
        self.exclude = tuple(exclude)
        self.seed = int(seed)
        self.masks: dict[str, Tensor] = {}
        self._params: dict[str, nn.Parameter] = {}

    # -- set-up ----------------------------------------------------------------------
    def target_count(self) -> int:
        """``round(d·N)``: the exact number of active weights."""
        return round(self.density * sum(m.numel() for m in self.masks.values()))

    def _bind(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        names = sparse_weight_names(model, self.exclude)
        if not names:
            raise ValueError("the model has no conv or linear weight to sparsify")
        self._params = {n: params[n] for n in names}

    def init_masks(self, model: nn.Module) -> dict[str, Tensor]:
        """Random initial masks at global density d (exact count); applied to the weights."""
        self._bind(model)
        sizes = [p.numel() for p in self._params.values()]
        target = round(self.density * sum(sizes))
        if self.init == "uniform":
            raw = [float(s) for s in sizes]  # ∝ size: the same density everywhere
        else:  # ERK: density_l ∝ Σ dims / Π dims, i.e. count ∝ Σ dims
            raw = [float(sum(p.shape)) for p in self._params.values()]
        counts = allot(target, raw, sizes)
        g = torch.Generator().manual_seed(self.seed)
        self.masks = {}
        for (name, p), k in zip(self._params.items(), counts, strict=True):
            flat = torch.zeros(p.numel(), dtype=torch.bool)
            flat[torch.randperm(p.numel(), generator=g)[:k]] = True
            self.masks[name] = flat.view(p.shape).to(p.device)
        self.apply(model)
        return self.masks

    # -- engine hooks ----------------------------------------------------------------
    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.masks:  # loaded from a state dict before training started
            self._bind(model)
            self._check_masks()
            self.masks = {n: m.to(self._params[n].device) for n, m in self.masks.items()}
            self.apply(model)
        else:
            self.init_masks(model)
        _log.info("sparse momentum: %d masked tensors, %d of %d weights active (d = %g)",
                  len(self.masks), self.active_count(), self.total_count(), self.density)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.apply(model)

    def on_epoch_end(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.epochs is not None and epoch + 1 >= self.epochs:
            return  # no mask change after the final epoch
        self.prune_regrow(optimizer, self.rate_at(epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"density": self.density, "masks": {k: v.cpu() for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if abs(float(state["density"]) - self.density) > 1e-12:
            raise ValueError(f"saved masks are at density {state['density']}, this transform at "
                             f"{self.density}")
        device = {n: p.device for n, p in self._params.items()}
        self.masks = {k: v.bool().to(device.get(k, "cpu")) for k, v in state["masks"].items()}
        if self._params:
            self._check_masks()

    # -- the algorithm ---------------------------------------------------------------
    def rate_at(self, epoch: int) -> float:
        """Prune rate after epoch ``epoch`` (0-based)."""
        if self.prune_schedule == "constant":
            return self.prune_rate
        return self.prune_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    @torch.no_grad()
    def apply(self, model: nn.Module | None = None) -> None:
        """Zero the masked weights."""
        if model is not None and not self._params:
            self._bind(model)
        for name, mask in self.masks.items():
            self._params[name].mul_(mask)

    @torch.no_grad()
    def prune_regrow(self, optimizer: torch.optim.Optimizer, rate: float) -> dict[str, int]:
        """One prune / redistribute / regrow round; returns the regrown count per layer."""
        names = list(self.masks)
        momenta = [self._momentum(optimizer, n) for n in names]
        importance = []
        for n, mom in zip(names, momenta, strict=True):
            mask = self.masks[n]
            importance.append(float(mom.abs()[mask].mean()) if mask.any() else 0.0)
        removed = 0
        for n in names:  # 2. magnitude pruning of active weights
            mask, w = self.masks[n], self._params[n]
            k = round(rate * int(mask.sum()))
            if k == 0:
                continue
            score = w.abs().masked_fill(~mask, math.inf).flatten()
            idx = torch.topk(score, k, largest=False).indices
            mask.view(-1)[idx] = False
            removed += k
        free = [int((~self.masks[n]).sum()) for n in names]
        counts = allot(removed, importance, free)
        for n, mom, k in zip(names, momenta, counts, strict=True):  # 3. momentum regrowth
            if k == 0:
                continue
            mask = self.masks[n]
            score = mom.abs().masked_fill(mask, -math.inf).flatten()
            idx = torch.topk(score, k).indices
            mask.view(-1)[idx] = True
        for n, mom in zip(names, momenta, strict=True):  # 4. fresh start for changed weights
            self._params[n].mul_(self.masks[n])
            mom.mul_(self.masks[n])
        return dict(zip(names, counts, strict=True))

    def _momentum(self, optimizer: torch.optim.Optimizer, name: str) -> Tensor:
        buf = optimizer.state.get(self._params[name], {}).get("momentum_buffer")
        if buf is None:
            raise ValueError("SparseMomentum needs SGD with momentum > 0 (no momentum buffer for "
                             f"{name}); set train.momentum, e.g. 0.9")
        return buf

    def _check_masks(self) -> None:
        for n, p in self._params.items():
            m = self.masks.get(n)
            if m is None or m.shape != p.shape:
                raise ValueError(f"saved masks do not fit this model ({n}: "
                                 f"{None if m is None else tuple(m.shape)} vs {tuple(p.shape)})")

    # -- metrics ---------------------------------------------------------------------
    def active_count(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    def total_count(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def layer_densities(self) -> dict[str, float]:
        """Fraction of active positions per masked weight."""
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def __repr__(self) -> str:
        return (f"SparseMomentum(density={self.density:g}, prune_rate={self.prune_rate:g}, "
                f"prune_schedule={self.prune_schedule!r}, epochs={self.epochs}, init={self.init!r})")
