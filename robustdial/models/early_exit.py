"""Entropy-based early exit for multi-exit networks (RDI-Nets adaptive inference).

Hu, Chen, Wang, Wang, "Triple Wins: Boosting Accuracy, Robustness and
Efficiency Together by Enabling Input-Adaptive Inference", ICLR 2020
(RDI-Nets), Sec. 3.1 and Appendix C, Eq. 6.

A sample leaves the network at the first head whose softmax entropy is
*below* that head's threshold t_k (Appendix C says "larger than", a typo: the
main text, Sec. 3.1, and the authors' code exit on low entropy, i.e. high
confidence); the final head takes every sample still left. The entropy is the
authors' ``H = −Σ p·log(p + 1e-5)`` (the fixture README of the released
weights; Eq. 6's ``(p + ε)`` factor in front of the log is not what the code
computes). Exit indices count from 0: ``k = num_exits − 1`` is the final head.

A model takes part through the structure of :class:`MultiExitNet`:
``segments[k]`` maps the features after exit ``k − 1`` to the features that
``heads[k]`` classifies; ``exit_thresholds`` is a buffer with one threshold per
non-final exit.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdial.utils import model_device, train_mode

__all__ = [
    "ENTROPY_EPS",
    "adaptive_forward",
    "calibrate_thresholds",
    "entropy",
    "exit_entropies",
    "resolve_thresholds",
    "select_exits",
    "thresholds_for_fractions",
]

_log = logging.getLogger(__name__)

ENTROPY_EPS = 1e-5
"""ε inside the log of the authors' entropy ``−Σ p·log(p + ε)``."""


def entropy(logits: Tensor) -> Tensor:
    """Softmax entropy ``H = −Σ_c p_c·log(p_c + 1e-5)`` in nats (RDI-Nets, App. C).

    ``H`` can be a hair below 0 (≈ −1e-5) for a one-hot softmax because of ε.

    Shape:
        logits: (B, C) -> (B,).
    """
    p = F.softmax(logits.float(), dim=1)
    return -(p * torch.log(p + ENTROPY_EPS)).sum(dim=1)


def _parts(model: nn.Module) -> tuple[nn.ModuleList, nn.ModuleList]:
    segments = getattr(model, "segments", None)
    heads = getattr(model, "heads", None)
    if not isinstance(segments, nn.ModuleList) or not isinstance(heads, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} is not a multi-exit model: it needs "
                        "`segments` and `heads` nn.ModuleLists; build one with "
                        "create_model(name, exits=True)")
    if len(segments) != len(heads) or len(heads) < 2:
        raise ValueError(f"a multi-exit model needs as many segments as heads (≥ 2), got "
                         f"{len(segments)} segments and {len(heads)} heads")
    return segments, heads


def resolve_thresholds(model: nn.Module, thresholds: Sequence[float] | Tensor | None = None) -> Tensor:
    """The thresholds in force: ``thresholds`` if given, else the model's ``exit_thresholds``.

    Returns:
        float tensor (num_exits − 1,) on the model's device.

    Raises:
        ValueError: wrong length, or no thresholds anywhere (the message says
            how to calibrate them).
    """
    _, heads = _parts(model)
    k = len(heads) - 1
    if thresholds is None:
        thresholds = getattr(model, "exit_thresholds", None)
        if thresholds is None:
            raise ValueError(f"{type(model).__name__} has no stored exit thresholds; pass "
                             "thresholds=... or run robustdial.models.early_exit."
                             "calibrate_thresholds(model, val_data) first")
    t = torch.as_tensor(thresholds, dtype=torch.float32).reshape(-1).to(model_device(model))
    if t.numel() != k:
        raise ValueError(f"need one threshold per non-final exit ({k} for this "
                         f"{len(heads)}-exit model), got {t.numel()}")
    if torch.isnan(t).any():
        raise ValueError("exit thresholds are NaN (never calibrated); run "
                         "calibrate_thresholds(model, val_data) or pass thresholds=...")
    return t


def adaptive_forward(model: nn.Module, x: Tensor,
                     thresholds: Sequence[float] | Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Input-adaptive inference: each sample stops at its first confident head.

    Segment ``k`` runs only on the samples still in the network (``index_select``
    of the survivors, no per-sample Python loop), so the computation of the
    later segments and heads really is skipped for samples that have exited.
    Run it in eval mode: with train-mode BN the shrinking batches would change
    the batch statistics.

    Args:
        model: a multi-exit model (``segments``, ``heads``).
        x: input images in [0, 1].
        thresholds: one entropy threshold (nats) per non-final exit; default
            the model's ``exit_thresholds`` buffer.

    Returns:
        ``(logits, exit_index)``: each sample's logits from the head it exited
        at, and that head's index (``num_exits − 1`` = final head).

    Shape:
        x: (B, C, H, W) -> logits (B, num_classes), exit_index (B,) int64.
    """
    segments, heads = _parts(model)
    t = resolve_thresholds(model, thresholds)
    last = len(heads) - 1
    B = x.shape[0]
    exit_index = torch.full((B,), last, dtype=torch.long, device=x.device)
    active = torch.arange(B, device=x.device)  # original positions of the survivors
    out: Tensor | None = None
    h = x
    for k in range(len(heads)):
        h = segments[k](h)
        logits = heads[k](h)
        if out is None:
            out = logits.new_zeros((B, logits.shape[1]))
        if k == last:
            out = out.index_copy(0, active, logits)
            break
        done = entropy(logits) < t[k]
        if B == 1:  # one input (per-request inference): one host sync, no gather / scatter
            if bool(done):
                return logits, exit_index.fill_(k)
            continue
        idx_done = done.nonzero().reshape(-1)  # one host sync per exit: sizes decide the work
        if idx_done.numel():
            rows = active.index_select(0, idx_done)
            out = out.index_copy(0, rows, logits.index_select(0, idx_done))
            exit_index[rows] = k
        if idx_done.numel() == active.numel():
            break
        idx_keep = (~done).nonzero().reshape(-1)
        h = h[idx_keep]  # keeps the memory format (index_select would make channels_last contiguous)
        active = active.index_select(0, idx_keep)
    assert out is not None
    return out, exit_index


def select_exits(outs: Sequence[Tensor], thresholds: Sequence[float] | Tensor) -> tuple[Tensor, Tensor]:
    """The early-exit decision from every exit's logits (no computation skipped).

    Gives the same ``(logits, exit_index)`` as :func:`adaptive_forward` when
    ``outs = model.forward_exits(x)``; used where all exits are computed anyway.

    Shape:
        outs: num_exits tensors (B, classes) -> (B, classes), (B,) int64.
    """
    stacked = torch.stack(list(outs))  # (N, B, classes)
    n, B = stacked.shape[:2]
    t = torch.as_tensor(thresholds, dtype=torch.float32, device=stacked.device).reshape(-1)
    if t.numel() != n - 1:
        raise ValueError(f"need {n - 1} thresholds for {n} exits, got {t.numel()}")
    confident = torch.stack([entropy(o) for o in outs[:-1]]) < t.unsqueeze(1)  # (N-1, B)
    confident = torch.cat([confident, confident.new_ones((1, B))])
    exit_index = confident.float().argmax(dim=0)  # first True
    return stacked[exit_index, torch.arange(B, device=stacked.device)], exit_index


def exit_entropies(model: nn.Module, data: Any, *, batch_size: int = 256,
                   max_samples: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every exit's entropy, prediction correctness and the labels over ``data`` (eval mode).

    Args:
        model: a multi-exit model with ``forward_exits``.
        data: an ``ImageData``, a tuple ``(x, y)`` of tensors, or an iterable of
            ``(x, y)`` batches with ``x`` in [0, 1].
        batch_size: batch size for ``ImageData`` / tensors.
        max_samples: use only the first ``max_samples`` samples.

    Returns:
        ``(H, correct, y)``: H float (num_exits, N), correct bool (num_exits, N),
        labels (N,), all on the CPU.
    """
    ents, corr, labels = [], [], []
    seen = 0
    with train_mode(model, False), torch.no_grad():
        for x, y in iter_batches(data, batch_size, device=model_device(model)):
            if max_samples is not None:
                if seen >= max_samples:
                    break
                x, y = x[: max_samples - seen], y[: max_samples - seen]
            seen += x.shape[0]
            outs = model.forward_exits(x)
            ents.append(torch.stack([entropy(o) for o in outs]).cpu())
            corr.append(torch.stack([o.argmax(1) == y for o in outs]).cpu())
            labels.append(y.cpu())
    if not ents:
        raise ValueError("no samples in the data given for exit statistics")
    return torch.cat(ents, 1), torch.cat(corr, 1), torch.cat(labels)


def iter_batches(data: Any, batch_size: int, *, device: torch.device | None = None
                 ) -> Iterable[tuple[Tensor, Tensor]]:
    """``(x, y)`` batches from an ``ImageData``, a tensor pair or an iterable of batches."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        x_all, y_all = data
        for i in range(0, x_all.shape[0], batch_size):
            x = x_all[i:i + batch_size]
            if not x.is_floating_point():
                x = x.float() / 255
            yield x.to(device), y_all[i:i + batch_size].to(device)
        return
    if hasattr(data, "images") and hasattr(data, "labels"):
        from robustdial.data import batches

        yield from batches(data, batch_size, device=device)
        return
    for x, y in data:
        yield x.to(device), y.to(device)


def thresholds_for_fractions(H: Tensor, fractions: Sequence[float]) -> list[float]:
    """Thresholds so that ≈ ``fractions[k]`` of the samples exit at head ``k``.

    Greedy from the first head: among the samples still in the network, the
    ``round(f_k·N)`` with the lowest entropy at head ``k`` exit; ``t_k`` is the
    midpoint between the last exiting and the first staying entropy (0 when no
    sample should exit; entropies ≥ −1e-5 then still exit, see :func:`entropy`).

    Args:
        H: entropies (num_exits, N) from :func:`exit_entropies`.
        fractions: target fraction per exit (num_exits values summing to 1, or
            num_exits − 1 values summing to ≤ 1 with the rest to the final head).

    Returns:
        num_exits − 1 thresholds (nats).
    """
    n_exits, N = H.shape
    f = [float(v) for v in fractions]
    if len(f) == n_exits - 1:
        f.append(1.0 - sum(f))
    if len(f) != n_exits or any(v < -1e-9 for v in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be {n_exits} non-negative values summing to 1 (or "
                         f"{n_exits - 1} summing to ≤ 1), got {list(fractions)}")
    remaining = torch.ones(N, dtype=torch.bool)
    cum, out = 0.0, []
    for k in range(n_exits - 1):
        cum += f[k]
        want = int(round(cum * N)) - (N - int(remaining.sum()))  # exits at head k
        h = H[k][remaining]
        if want <= 0 or h.numel() == 0:
            t = 0.0
        elif want >= h.numel():
            t = float(h.max()) + 1e-6
        else:
            s = torch.sort(h).values
            t = float(0.5 * (s[want - 1] + s[want]))
        t = max(t, 0.0)
        out.append(t)
        remaining &= ~(H[k] < t)
    return out


def _expected_cost(H: Tensor, t: Sequence[float], costs: Sequence[float]) -> float:
    remaining = torch.ones(H.shape[1], dtype=torch.bool)
    total = 0.0
    for k in range(H.shape[0] - 1):
        ex = remaining & (H[k] < t[k])
        total += float(ex.sum()) * costs[k]
        remaining &= ~ex
    total += float(remaining.sum()) * costs[-1]
    return total / H.shape[1]


def calibrate_thresholds(model: nn.Module, val_data: Any, *,
                         target: str | Sequence[float] | float = "uniform",
                         batch_size: int = 256, max_samples: int | None = None,
                         store: bool = True) -> list[float]:
    """Choose the exit thresholds on a **validation** split (never the test set).

    Args:
        model: a multi-exit model.
        val_data: validation data (``ImageData``, ``(x, y)`` tensors or batches).
        target: ``"uniform"`` (≈ 1/K of the samples exit at each of the K
            heads, Huang et al. 2018, as RDI-Nets App. C); a sequence of
            per-exit fractions (see :func:`thresholds_for_fractions`); or a
            number: a budget in MFlops (conv MACs / 2²⁰ per image, the paper's
            unit): the largest constant per-head exit rate q (the fraction of
            the samples still present that leave at each non-final head) whose
            expected cost is within the budget.
        batch_size: evaluation batch size.
        max_samples: use the first ``max_samples`` validation samples.
        store: write the result into the model's ``exit_thresholds`` buffer
            (saved with the checkpoint).

    Returns:
        The num_exits − 1 thresholds (nats).
    """
    _, heads = _parts(model)
    n = len(heads)
    H, _, _ = exit_entropies(model, val_data, batch_size=batch_size, max_samples=max_samples)
    if isinstance(target, str):
        if target != "uniform":
            raise ValueError(f"target must be 'uniform', a list of per-exit fractions or a "
                             f"budget in MFlops (a number), got {target!r}")
        t = thresholds_for_fractions(H, [1.0 / n] * n)
    elif isinstance(target, (int, float)):
        t = _thresholds_for_budget(model, H, float(target))
    else:
        t = thresholds_for_fractions(H, target)
    if store:
        buf = getattr(model, "exit_thresholds", None)
        if isinstance(buf, Tensor):
            buf.copy_(torch.tensor(t, dtype=buf.dtype, device=buf.device))
        else:
            _log.warning("%s has no exit_thresholds buffer; thresholds not stored",
                         type(model).__name__)
    _log.info("calibrated exit thresholds %s on %d validation samples",
              [round(v, 4) for v in t], H.shape[1])
    return t


def _thresholds_for_budget(model: nn.Module, H: Tensor, budget: float) -> list[float]:
    costs = [m / 2**20 for m in model.exit_macs()]
    n = len(costs)
    if budget >= costs[-1]:
        return thresholds_for_fractions(H, [0.0] * (n - 1))
    if budget < costs[0]:
        raise ValueError(f"budget {budget:g} MFlops is below the cheapest exit "
                         f"({costs[0]:.3g} MFlops); valid budgets are ≥ {costs[0]:.3g}")

    def fractions(q: float) -> list[float]:
        left, f = 1.0, []
        for _ in range(n - 1):
            f.append(left * q)
            left -= left * q
        return f

    lo, hi = 0.0, 1.0  # cost decreases as the per-head exit rate q grows
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _expected_cost(H, thresholds_for_fractions(H, fractions(mid)), costs) <= budget:
            hi = mid
        else:
            lo = mid
    return thresholds_for_fractions(H, fractions(hi))
