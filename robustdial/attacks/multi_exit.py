"""Attack forms on multi-exit networks: single, average, max-average, random.

Hu, Chen, Wang, Wang, "Triple Wins" (RDI-Nets), ICLR 2020, Sec. 3.2 and
App. D. An *attack form* is the objective; any attacker algorithm (PGD, FGSM,
WRM …) solves it. The forms here are per-sample losses
``loss(model, x_adv, y) -> (B,)`` for the attacks' pluggable ``loss=``, plus
the one form that is not a loss, :class:`MaxAverage` (Eq. 4), which wraps an
attack factory.

* Single attack on exit i (Eq. 2): CE of head i only. Exit K+1 (the final
  head) is the "main branch".
* Average attack (Eq. 3): mean CE over all N = K+1 heads.
* Max-average attack (Eq. 4): solve the N single attacks, then per sample keep
  the candidate whose loss averaged over all heads is largest.
* Random attack (Eq. 7, App. D): ``(1/N)·Σ_j c_j·CE_j`` with random fusion
  weights; here the weights are convex (uniform draws normalised to sum 1).

The paper's worst case (Sec. 4, "ATA (Worst-Case)") is the minimum over the
K+3 deterministic forms: K+1 single attacks (K branches and the main branch),
the average and the max-average attack. The random attack (Table 6) is
reported beside them but, as in the paper, is not part of that minimum
(:data:`WORST_CASE_FORMS` says which forms count).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Attack, LossFn

__all__ = [
    "MaxAverage",
    "RandomFusion",
    "WORST_CASE_EXCLUDED",
    "attack_forms",
    "average_loss",
    "exit_logits",
    "fused_loss",
    "per_exit_ce",
    "random_fusion_loss",
    "select_max_average",
    "single_exit_loss",
    "with_loss",
    "worst_case",
]

AttackFactory = Callable[[LossFn], Attack]
"""``make_attack(loss) -> Attack``: the attacker algorithm with a given objective."""

WORST_CASE_EXCLUDED = ("random",)
"""Forms reported but not part of the paper's K+3-form worst case."""


def _num_exits(model: nn.Module) -> int:
    n = getattr(model, "num_exits", None)
    if n is None:
        raise TypeError(f"{type(model).__name__} is not a multi-exit model (no num_exits); "
                        "build one with create_model(name, exits=True)")
    return int(n)


def exit_logits(model: nn.Module, x: Tensor, i: int) -> Tensor:
    """Logits of exit ``i`` alone, computing only the segments it needs.

    Uses ``model.forward_to(x, i)`` or ``segments[:i+1]`` and ``heads[i]`` when the model has them (the
    early exits of a ResNet-38 cost a fraction of the full forward), else
    ``forward_exits(x)[i]``. Negative ``i`` counts from the final head.
    """
    n = _num_exits(model)
    if not -n <= i < n:
        raise IndexError(f"exit {i} out of range for a {n}-exit model (valid: 0..{n - 1} or -1)")
    i %= n
    if callable(getattr(model, "forward_to", None)):
        return model.forward_to(x, i)
    segments, heads = getattr(model, "segments", None), getattr(model, "heads", None)
    if isinstance(segments, nn.ModuleList) and isinstance(heads, nn.ModuleList):
        h = x
        for k in range(i + 1):
            h = segments[k](h)
        return heads[i](h)
    return model.forward_exits(x)[i]


def per_exit_ce(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample CE of every exit, shape (num_exits, B)."""
    return torch.stack([F.cross_entropy(o, y, reduction="none") for o in model.forward_exits(x)])


def single_exit_loss(i: int) -> LossFn:
    """Single attack form (Eq. 2): per-sample CE of exit ``i`` (``-1`` = main branch)."""

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(exit_logits(model, x, i), y, reduction="none")

    loss.__name__ = "main_exit_ce" if i == -1 else f"exit{i}_ce"
    return loss


def average_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Average attack form (Eq. 3): mean over the N heads of the per-sample CE."""
    return per_exit_ce(model, x, y).mean(dim=0)


def fused_loss(weights: Sequence[float] | Tensor) -> LossFn:
    """``Σ_j w_j·CE_j`` with fixed fusion weights (one per exit)."""
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1, 1)

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        ce = per_exit_ce(model, x, y)
        if ce.shape[0] != w.shape[0]:
            raise ValueError(f"{w.shape[0]} fusion weights for a {ce.shape[0]}-exit model")
        return (w.to(ce) * ce).sum(dim=0)

    loss.__name__ = "fused_ce"
    return loss


def _convex(n: int, generator: torch.Generator | None) -> Tensor:
    c = torch.rand((n,), generator=generator)
    return c / c.sum()


def random_fusion_loss(generator: torch.Generator | None = None) -> LossFn:
    """Random attack form (Eq. 7) with fresh convex weights at **every call** of the loss.

    Each gradient step of an attack then ascends a differently fused
    objective. For the paper's one fusion vector per attack use
    :class:`RandomFusion`.

    Args:
        generator: CPU ``torch.Generator`` for the weights (global RNG if None).
    """

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        ce = per_exit_ce(model, x, y)
        return (_convex(ce.shape[0], generator).to(ce).unsqueeze(1) * ce).sum(dim=0)

    loss.__name__ = "random_fusion_ce"
    return loss


def with_loss(attack: Attack, loss: LossFn) -> Attack:
    """A shallow copy of ``attack`` ascending ``loss`` instead of its own."""
    out = copy.copy(attack)
    out.loss = loss
    return out


class RandomFusion(Attack):
    """Random attack (Eq. 7): one convex fusion vector C drawn per call, fixed over the steps.

    Args:
        make_attack: ``make_attack(loss) -> Attack``.
        generator: CPU ``torch.Generator`` for C (global RNG if None).
    """

    def __init__(self, make_attack: AttackFactory, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.make_attack = make_attack
        self.fusion_generator = generator
        self.last_weights: Tensor | None = None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        c = _convex(_num_exits(model), self.fusion_generator)
        self.last_weights = c
        return self.make_attack(fused_loss(c))(model, x, y)

    def __repr__(self) -> str:
        return f"RandomFusion({self.make_attack(average_loss)!r})"


@torch.no_grad()
def select_max_average(model: nn.Module, candidates: Sequence[Tensor], y: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """Eq. 4: per sample, the candidate with the largest loss averaged over all heads.

    Args:
        model: the multi-exit model (its current train/eval mode is used).
        candidates: N adversarial batches, one per single attack, each like ``x``.
        y: labels (B,).

    Returns:
        ``(x_max, choice)``: the selected examples (B, ...) and the index of
        the chosen candidate per sample (B,).
    """
    cand = torch.stack(list(candidates))  # (N, B, C, H, W)
    scores = torch.stack([per_exit_ce(model, c, y).mean(dim=0) for c in cand])  # (N, B)
    choice = scores.argmax(dim=0)  # (B,)
    B = y.shape[0]
    x_max = cand[choice, torch.arange(B, device=cand.device)]
    return x_max, choice


class MaxAverage(Attack):
    """Max-average attack form (Eq. 4) around any attacker algorithm.

    Runs one attack per head on that head's own CE (the N single attacks of
    Eq. 2), then keeps per sample the candidate with the largest loss summed
    (equivalently averaged) over all heads.

    Args:
        make_attack: ``make_attack(loss) -> Attack``, e.g.
            ``lambda loss: PGD(eps=8/255, alpha=2/255, steps=20, loss=loss)``.
    """

    def __init__(self, make_attack: AttackFactory) -> None:
        super().__init__()
        if not callable(make_attack):
            raise TypeError("MaxAverage needs make_attack(loss) -> Attack, e.g. "
                            "lambda loss: PGD(eps=8/255, alpha=2/255, steps=10, loss=loss)")
        self.make_attack = make_attack
        self.last_choice: Tensor | None = None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        cands = [self.make_attack(single_exit_loss(i))(model, x, y)
                 for i in range(_num_exits(model))]
        x_max, self.last_choice = select_max_average(model, cands, y)
        return x_max

    def __repr__(self) -> str:
        return f"MaxAverage({self.make_attack(average_loss)!r})"


def attack_forms(model: nn.Module, make_attack: AttackFactory | Attack, *,
                 generator: torch.Generator | None = None,
                 include_random: bool = True) -> dict[str, Attack]:
    """Every attack form for ``model``: the paper's K+3 and the random form.

    Args:
        model: a multi-exit model with N = K+1 exits.
        make_attack: ``make_attack(loss) -> Attack``, or an attack instance
            whose loss is swapped per form (:func:`with_loss`).
        generator: CPU generator for the random form's fusion weights.
        include_random: add ``"random"`` (App. D; not in the worst case).

    Returns:
        ``{"branch1": …, …, "branchK": …, "main": …, "average": …,
        "max-average": …, "random": …}`` — names as in the paper's tables.
    """
    if isinstance(make_attack, Attack):
        base = make_attack
        make_attack = lambda loss: with_loss(base, loss)  # noqa: E731
    n = _num_exits(model)
    forms: dict[str, Attack] = {}
    for i in range(n - 1):
        forms[f"branch{i + 1}"] = make_attack(single_exit_loss(i))
    forms["main"] = make_attack(single_exit_loss(n - 1))
    forms["average"] = make_attack(average_loss)
    forms["max-average"] = MaxAverage(make_attack)
    if include_random:
        forms["random"] = RandomFusion(make_attack, generator=generator)
    return forms


def worst_case(accuracies: dict[str, float]) -> tuple[str, float]:
    """The paper's ATA (Worst-Case): the lowest accuracy over the K+3 forms.

    Forms in :data:`WORST_CASE_EXCLUDED` (``"random"``) are skipped.

    Returns:
        ``(form, accuracy)`` of the strongest form.
    """
    pool = {k: v for k, v in accuracies.items() if k not in WORST_CASE_EXCLUDED}
    if not pool:
        raise ValueError("no attack-form accuracies to take the worst case of")
    name = min(pool, key=pool.__getitem__)
    return name, pool[name]
