"""Multi-exit networks: one backbone split into segments, one head per exit.

Paper: T. Chen, Z. Zhang, S. Liu, S. Chang, Z. Wang, "Triple Wins: Boosting
Accuracy, Robustness and Efficiency Together by Enabling Input-Adaptive
Inference" (ICLR 2020, RDI-Nets), Sec. 3 and Appendix B. A (K+1)-output
network: exit k sees ``segments[0..k]`` and then ``heads[k]``; the final
classifier is the last head, so parameters are nested θ₁ ⊆ … ⊆ θ_{K+1}.

The plain (single-exit) model of an architecture is the same class with one
segment and one head; it has no ``exit`` dial.

Cost convention (RDI-Nets' "MFlops"): conv multiply-accumulates only (linear
layers ignored); cost of exit k = backbone convs up to exit k plus exit k's own
head convs (earlier heads are not added). MFlops = MACs / 2²⁰. The
``"executed"`` convention of :meth:`MultiExitNet.exit_macs` adds the heads of
the earlier exits too: what adaptive inference really runs for a sample that
leaves at exit k (it had to evaluate every earlier head to decide to go on).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..condition import Choices, Condition, DialSpec

__all__ = ["MultiExitNet", "conv_macs_hook_targets"]


def conv_macs_hook_targets(module: nn.Module) -> list[nn.Module]:
    """Leaf conv-like modules: those owning a 4-D ``weight`` themselves.

    Wrappers that hold an inner conv (slimmable, masked …) are skipped so each
    convolution is counted once; subclasses of ``nn.Conv2d`` (noisy convs)
    are counted.
    """
    out = []
    for m in module.modules():
        w = m._parameters.get("weight")
        if w is not None and w.dim() == 4:
            out.append(m)
    return out


def _conv_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    # Per-sample MACs = output elements × (input channels per group × kh × kw).
    w = m._parameters["weight"]
    groups = int(getattr(m, "groups", 1))
    cin_per_group = inp.shape[1] if groups == 1 else w.shape[1]
    per_out = int(cin_per_group) * int(w.shape[2]) * int(w.shape[3])
    return int(out[0].numel()) * per_out


class MultiExitNet(nn.Module):
    """Backbone segments with one classifier head after each.

    Args:
        segments: backbone pieces; segment k ends where exit k attaches.
        heads: one classifier per segment, the final classifier last.
        input_size: ``(C, H, W)`` of a dummy input for :meth:`exit_macs`.
        exit_weights: training-loss weight per exit (RDI Eq. 2 ``w_i``);
            default all 1.
        exit_thresholds: entropy threshold per non-final exit (nats), stored
            as the buffer ``exit_thresholds`` (saved in the state dict);
            default ``+inf`` (every sample would leave at the first exit), so
            calibrate them on validation data before adaptive inference.
        fixed_input_size: the net only accepts ``input_size`` images (a flatten
            feeds a fixed-size linear layer); other sizes raise a clear error.

    Dials (``robustdial.condition``):
        ``exit``: ``None`` (final head), ``0 … K-1`` (compute only up to that
        exit and return its logits), ``"adaptive"`` (entropy early exit with
        the ``thresholds`` dial or the stored buffer). Only when K > 1.

    Shape:
        ``forward``: (B, C, H, W) -> (B, num_classes);
        ``forward_exits``: list of K tensors (B, num_classes), earliest first.
    """

    def __init__(self, segments: Sequence[nn.Module], heads: Sequence[nn.Module], *,
                 input_size: tuple[int, int, int],
                 exit_weights: Sequence[float] | None = None,
                 exit_thresholds: Sequence[float] | None = None,
                 fixed_input_size: bool = False) -> None:
        super().__init__()
        if len(segments) != len(heads) or len(heads) == 0:
            raise ValueError(f"need one head per segment, got {len(segments)} segments "
                             f"and {len(heads)} heads")
        self.segments = nn.ModuleList(segments)
        self.heads = nn.ModuleList(heads)
        self.input_size = tuple(int(s) for s in input_size)
        self.fixed_input_size = fixed_input_size
        k = len(heads)
        weights = tuple(float(w) for w in (exit_weights if exit_weights is not None
                                           else (1.0,) * k))
        if len(weights) != k:
            raise ValueError(f"exit_weights needs {k} values (one per exit), got {len(weights)}")
        self.exit_weights = weights
        if k > 1:
            thr = (tuple(exit_thresholds) if exit_thresholds is not None
                   else (math.inf,) * (k - 1))
            if len(thr) != k - 1:
                raise ValueError(f"exit_thresholds needs {k - 1} values (one per non-final "
                                 f"exit), got {len(thr)}")
            self.register_buffer("exit_thresholds", torch.tensor(thr, dtype=torch.float32))
        self._exit: int | str | None = None
        self._thresholds: tuple[float, ...] | None = None

    @property
    def num_exits(self) -> int:
        """Number of outputs K (early exits + final head)."""
        return len(self.heads)

    # -- dials -----------------------------------------------------------------
    def dial_specs(self) -> dict[str, DialSpec]:
        if self.num_exits == 1:
            return {}
        return {"exit": Choices(tuple(range(self.num_exits)) + ("adaptive",))}

    def apply_condition(self, cond: Condition) -> None:
        self._exit = cond.exit
        thr = cond.thresholds
        self._thresholds = None if thr is None else tuple(float(t) for t in thr)

    def thresholds(self) -> tuple[float, ...]:
        """Entropy thresholds in force: the ``thresholds`` dial, else the stored buffer."""
        if self._thresholds is not None:
            thr = self._thresholds
        elif self.num_exits > 1:
            thr = tuple(float(t) for t in self.exit_thresholds.tolist())  # host sync
        else:
            thr = ()
        if len(thr) != self.num_exits - 1:
            raise ValueError(f"{type(self).__name__} has {self.num_exits - 1} early exits but "
                             f"{len(thr)} thresholds were given; pass one per early exit")
        return thr

    # -- forward ---------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input this net cannot take."""
        if x.dim() != 4 or x.shape[1] != self.input_size[0]:
            raise ValueError(f"{type(self).__name__} expects (B, {self.input_size[0]}, H, W) "
                             f"images, got shape {tuple(x.shape)}; set in_channels to match")
        if self.fixed_input_size and tuple(x.shape[2:]) != self.input_size[1:]:
            raise ValueError(f"{type(self).__name__} only takes {self.input_size[1]}×"
                             f"{self.input_size[2]} images, got {tuple(x.shape[2:])}")

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, earliest first, final head last."""
        self.check_input(x)
        outs = []
        for seg, head in zip(self.segments, self.heads):
            x = seg(x)
            outs.append(head(x))
        return outs

    def forward_to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Logits of exit ``k``, computing only segments ``0..k``."""
        if not 0 <= k < self.num_exits:
            raise ValueError(f"exit {k} does not exist; valid exits 0..{self.num_exits - 1}")
        self.check_input(x)
        for seg in self.segments[: k + 1]:
            x = seg(x)
        return self.heads[k](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exit_ = self._exit
        if exit_ is None:
            return self.forward_to(x, self.num_exits - 1)
        if exit_ == "adaptive":
            from .early_exit import adaptive_forward  # sibling helper, imported lazily

            # The stored buffer goes in as a tensor (no host sync); a dial value is checked here.
            thr = self.exit_thresholds if self._thresholds is None else self.thresholds()
            logits, _ = adaptive_forward(self, x, thr)
            return logits
        return self.forward_to(x, int(exit_))

    # -- cost ------------------------------------------------------------------
    @torch.no_grad()
    def exit_macs(self, convention: str = "rdi") -> list[int]:
        """Per-sample conv MACs of a sample that leaves at each exit.

        Args:
            convention: ``"rdi"`` (the papers' tables: backbone up to exit k +
                head k) or ``"executed"`` (backbone up to exit k + heads 0…k,
                what :func:`~robustdial.models.early_exit.adaptive_forward`
                runs). Both give the same final-exit-only backbone cost
                ``exit_macs("rdi")[-1]``, the reference of a saving.

        Runs one dummy input of ``input_size`` through the model in eval mode
        (the training mode is restored) with forward hooks on every conv, so
        the count follows the dials in force (e.g. a slimmable ``width``).
        """
        if convention not in ("rdi", "executed"):
            raise ValueError(f"convention must be 'rdi' or 'executed', got {convention!r}")
        param = next(self.parameters())
        x = torch.zeros((1, *self.input_size), device=param.device, dtype=param.dtype)
        counter = [0]

        def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            counter[0] += _conv_macs(m, inp[0], out)

        handles = [m.register_forward_hook(hook) for m in conv_macs_hook_targets(self)]
        was_training = self.training
        self.eval()
        try:
            costs = []
            backbone = heads_before = 0
            for seg, head in zip(self.segments, self.heads):
                counter[0] = 0
                x = seg(x)
                backbone += counter[0]
                counter[0] = 0
                head(x)
                extra = heads_before if convention == "executed" else 0
                costs.append(backbone + extra + counter[0])
                heads_before += counter[0]
        finally:
            for h in handles:
                h.remove()
            self.train(was_training)
        return costs

    def exit_mflops(self, convention: str = "rdi") -> list[float]:
        """:meth:`exit_macs` / 2²⁰ — the papers' "MFlops"."""
        return [m / 2**20 for m in self.exit_macs(convention)]
