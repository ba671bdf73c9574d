"""Everything the robustness report measures at one operating point.

:class:`PointEvaluator` runs, at one dial setting of a model, the attacks of a
:class:`Profile` on the evaluated data and keeps per-sample results (flags
"still correctly classified", adversarial examples, exit indices), each one
stored in the :class:`~robustdial.evaluation._report_cache.ReportCache` as it
finishes. The orchestration (points, transfer matrix, records) lives in
:mod:`robustdial.evaluation.robustness_report`.

Conventions: accuracies in %, ε on the [0, 1] scale, L∞; every attack runs in
eval mode (BN running statistics) under the point's dials, with the global RNG
seeded per attack so results do not depend on the order they run in.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import FGSM, PGD, AutoAttack
from ..attacks.early_exit import slowdown_loss
from ..attacks.multi_exit import average_loss, select_max_average, single_exit_loss, with_loss
from ..condition import conditioned, dial_specs
from ..models.early_exit import adaptive_forward
from ..utils import train_mode
from ._report_cache import ReportCache
from .randomized import EOT

__all__ = ["PROFILES", "PointEvaluator", "Profile", "is_stochastic"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Profile:
    """How hard the report attacks (every field is recorded in ``report.json``).

    Attributes:
        name: ``"fast"`` or ``"standard"``.
        aa_components: AutoAttack components at deterministic points, with
            the ``standard`` version's settings (``None`` = all four).
        aa_label: the name every table and record gives the AutoAttack number.
        rand_eot: EOT forwards per APGD gradient at stochastic points
            (AutoAttack ``rand``: APGD-CE + APGD-DLR).
        pgd_steps: steps of the strong PGD (step 2.5·ε/steps, random start).
        steps_sweep: PGD step counts of the obfuscation check (the strong
            PGD is the last point of the sweep).
        eps_factors: radii of the ε sweep, as multiples of ε (PGD-10).
        unbounded_steps: steps of the ε = 1 PGD.
        square_queries: queries of the black-box Square check.
        form_steps: PGD steps of RDI's attack forms at adaptive-exit points.
        eot_samples: forwards per gradient of the EOT PGD at stochastic points.
    """

    name: str
    aa_components: tuple[str, ...] | None
    aa_label: str
    rand_eot: int
    pgd_steps: int
    steps_sweep: tuple[int, ...]
    eps_factors: tuple[float, ...]
    unbounded_steps: int
    square_queries: int
    form_steps: int
    eot_samples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "fast": Profile("fast", ("apgd-ce", "apgd-t"), "AutoAttack fast (APGD-CE + APGD-T)", 10, 50,
                    (5, 10, 20), (0.5, 2.0, 4.0), 20, 1000, 20, 10),
    "standard": Profile("standard", None, "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)",
                        20, 100, (5, 10, 20, 50), (0.25, 0.5, 2.0, 4.0, 8.0), 50, 5000, 20, 20),
}


@torch.no_grad()
def is_stochastic(model: nn.Module, x: Tensor) -> bool:
    """Whether two eval-mode forwards of the same batch differ (randomized model)."""
    a, b = model(x), model(x)
    scale = float(a.abs().max()) + 1.0
    return bool((a - b).abs().max() > 1e-5 * scale)


def _has_exit_dial(model: nn.Module) -> bool:
    return "exit" in dial_specs(model)


class PointEvaluator:
    """Attacks at one operating point; results per sample.

    Args:
        model: the conditioned model (already set to the point's dials by the caller).
        target: what is attacked and judged: the model itself or its folded
            plain graph (same logits at this point).
        x, y: evaluated images (float in [0, 1], on the device) and labels.
        point: the dials; label: their text form.
        eps: L∞ radius; profile: see :class:`Profile`.
        cache: where entries are stored; stochastic: randomized point.
        batch_size: samples per attack call; seed: seeds every attack.
        source: an independently trained model for the transfer check (or None).
        adaptive: the point is input-adaptive early exit.
    """

    def __init__(self, model: nn.Module, target: nn.Module, x: Tensor, y: Tensor, *,
                 point: dict[str, Any], label: str, eps: float, profile: Profile,
                 cache: ReportCache, stochastic: bool, batch_size: int, seed: int,
                 source: nn.Module | None = None, adaptive: bool = False) -> None:
        self.model, self.target, self.x, self.y = model, target, x, y
        self.point, self.label, self.eps, self.profile = point, label, eps, profile
        self.cache, self.stochastic = cache, stochastic
        self.batch_size, self.seed, self.source, self.adaptive = batch_size, seed, source, adaptive
        self.flags: dict[str, Tensor] = {}   # entry -> bool (N,) still correct
        self.adv: dict[str, Tensor] = {}     # entry -> adversarial examples (N, C, H, W)
        self.exits: dict[str, Tensor] = {}   # entry -> exit index (N,) at adaptive points
        self.info: dict[str, dict[str, Any]] = {}  # entry -> summary (attack, seconds …)

    # -- helpers --------------------------------------------------------------
    def _chunks(self, *tensors: Tensor) -> Iterator[tuple[Tensor, ...]]:
        for i in range(0, tensors[0].shape[0], self.batch_size):
            yield tuple(t[i:i + self.batch_size] for t in tensors)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Predicted labels (and exit indices at adaptive points) of the target on ``x``."""
        preds, exits = [], []
        thr = self.target.thresholds() if self.adaptive else None  # the dial's, else the stored ones
        for (xb,) in self._chunks(x):
            if self.adaptive:
                logits, e = adaptive_forward(self.target, xb, thr)
                exits.append(e)
            else:
                logits = self.target(xb)
            preds.append(logits.argmax(1))
        return torch.cat(preds), (torch.cat(exits) if exits else None)

    def _run(self, entry: str, description: str, settings: Any,
             make: Callable[[], tuple[Tensor | None, Tensor | None]]) -> None:
        """Compute (or load) one entry: ``make() -> (x_adv or None, flags or None)``.

        Without flags, the target's predictions on ``x_adv`` (on the clean
        inputs when ``x_adv`` is None too) decide them.
        """
        hit = self.cache.get(self.point, self.label, entry, settings)
        if hit is not None:
            tensors, summary = hit
            self.flags[entry] = tensors["flags"].bool().to(self.y.device)
            if "x_adv" in tensors:
                self.adv[entry] = tensors["x_adv"].to(self.x.device)
            if "exits" in tensors:
                self.exits[entry] = tensors["exits"].to(self.y.device)
            self.info[entry] = summary
            return
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        x_adv, flags = make()
        exits = None
        if flags is None:
            pred, exits = self.predict(self.x if x_adv is None else x_adv)
            flags = pred == self.y
        seconds = time.perf_counter() - t0
        acc = 100.0 * float(flags.float().mean())
        summary = {"attack": description, "accuracy": acc, "seconds": seconds}
        tensors = {"flags": flags.to(torch.uint8)}
        self.flags[entry] = flags.bool()
        if x_adv is not None:
            tensors["x_adv"] = x_adv
            self.adv[entry] = x_adv
        if exits is not None:
            tensors["exits"] = exits
            self.exits[entry] = exits
        self.info[entry] = summary
        self.cache.put(self.point, self.label, entry, settings, tensors, summary)
        _log.info("%s | %s: %.2f%% (%.1f s)", self.label, description, acc, seconds)

    def _attack_all(self, attack: Callable[[nn.Module, Tensor, Tensor], Tensor],
                    model: nn.Module | None = None) -> Tensor:
        model = self.target if model is None else model
        out = [attack(model, xb, yb).detach() for xb, yb in self._chunks(self.x, self.y)]
        return torch.cat(out)

    def _pgd(self, eps: float, steps: int, loss: Any = None) -> PGD:
        return PGD(eps=eps, alpha=min(1.0, 2.5 * eps / steps), steps=steps, loss=loss)

    # -- the entries ------------------------------------------------------------
    def clean(self) -> None:
        self._run("clean", "none (clean)", {}, lambda: (None, None))

    def autoattack(self) -> None:
        p = self.profile
        if self.stochastic:
            aa = AutoAttack(eps=self.eps, version="rand", eot_iter=p.rand_eot, seed=self.seed,
                            batch_size=self.batch_size)
            desc = f"AutoAttack rand (APGD-CE + APGD-DLR, EOT {p.rand_eot})"
        else:
            aa = AutoAttack(eps=self.eps, version="standard", components=p.aa_components,
                            square_queries=5000, seed=self.seed, batch_size=self.batch_size)
            desc = p.aa_label
        settings = {"aa": repr(aa), "eot": p.rand_eot if self.stochastic else None,
                    "components": p.aa_components}
        self._run("autoattack", desc, settings, lambda: (aa(self.target, self.x, self.y), None))

    def pgd(self) -> None:
        k = self.profile.pgd_steps
        attack: Any = self._pgd(self.eps, k)
        desc = f"PGD-{k} (step 2.5·ε/{k}, random start)"
        if self.stochastic:
            attack = EOT(attack, samples=self.profile.eot_samples)
            desc += f", EOT {self.profile.eot_samples}"
        self._run("pgd", desc, {"steps": k, "eot": self.stochastic and self.profile.eot_samples},
                  lambda: (self._attack_all(attack), None))
        if self.stochastic:  # what an attacker who ignores the randomness gets
            plain = self._pgd(self.eps, k)
            self._run("pgd_no_eot", f"PGD-{k} without EOT (one noisy forward per gradient)",
                      {"steps": k}, lambda: (self._attack_all(plain), None))

    def fgsm(self) -> None:
        self._run("fgsm", "FGSM", {}, lambda: (self._attack_all(FGSM(eps=self.eps)), None))

    def sweeps(self) -> None:
        for k in self.profile.steps_sweep:
            self._run(f"steps={k}", f"PGD-{k} (step 2.5·ε/{k})", {"k": k},
                      lambda k=k: (self._attack_all(self._pgd(self.eps, k)), None))
        for f in self.profile.eps_factors:
            e = min(1.0, f * self.eps)
            self._run(f"eps={e:.6g}", f"PGD-10 at ε={e:.4g}", {"e": e},
                      lambda e=e: (self._attack_all(self._pgd(e, 10)), None))
        k = self.profile.unbounded_steps
        self._run("unbounded", f"PGD-{k} at ε=1 (unbounded)", {"k": k},
                  lambda: (self._attack_all(self._pgd(1.0, k)), None))

    def square(self) -> None:
        q = self.profile.square_queries
        aa = AutoAttack(eps=self.eps, attacks=("square",), square_queries=q, seed=self.seed,
                        batch_size=self.batch_size)
        self._run("square", f"Square (black-box, {q} queries)", {"q": q},
                  lambda: (aa(self.target, self.x, self.y), None))

    def transfer(self) -> None:
        if self.source is None:
            return
        src = self.source
        k = self.profile.pgd_steps

        def make() -> tuple[Tensor, None]:
            with train_mode(src, False):
                return self._attack_all(self._pgd(self.eps, k), model=src), None

        self._run("transfer", f"transfer: PGD-{k} on an independently trained source model",
                  {"k": k, "source": _digest_of(src)}, make)

    def zero_gradients(self) -> dict[str, Any]:
        """Fraction of samples whose CE input gradient at the clean input is exactly zero."""
        zero = 0
        for xb, yb in self._chunks(self.x, self.y):
            xb = xb.clone().requires_grad_(True)
            loss = F.cross_entropy(self.target(xb), yb, reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
            zero += int((g.flatten(1).abs().sum(1) == 0).sum())
        n = int(self.x.shape[0])
        return {"zero_gradient_samples": zero, "n": n, "fraction": zero / n}

    def early_exit(self) -> None:
        """Slowdown attack and RDI's attack forms (PGD) at an adaptive-exit point."""
        k = self.profile.pgd_steps
        slow = self._pgd(self.eps, k, loss=slowdown_loss)
        self._run("slowdown", f"slowdown PGD-{k} (DeepSloth: early exits pushed to uniform)",
                  {"k": k}, lambda: (self._attack_all(slow), None))
        m = self.target  # the multi-exit network (or its folded copy): forward_exits / forward_to
        n = int(m.num_exits)
        fk = self.profile.form_steps
        base = self._pgd(self.eps, fk)
        singles: dict[int, Tensor] = {}

        def single(i: int) -> tuple[Tensor, None]:
            singles[i] = self._attack_all(with_loss(base, single_exit_loss(i)), model=m)
            return singles[i], None

        for i in range(n):
            name = "form:main" if i == n - 1 else f"form:branch{i + 1}"
            self._run(name, f"RDI single form on exit {i} (PGD-{fk})", {"k": fk, "i": i},
                      lambda i=i: single(i))
            singles[i] = self.adv[name]
        self._run("form:average", f"RDI average form (PGD-{fk})", {"k": fk},
                  lambda: (self._attack_all(with_loss(base, average_loss), model=m), None))

        def max_avg() -> tuple[Tensor, None]:
            out = []
            for j, (yb,) in enumerate(self._chunks(self.y)):
                s = slice(j * self.batch_size, j * self.batch_size + yb.shape[0])
                out.append(select_max_average(m, [singles[i][s] for i in range(n)], yb)[0].detach())
            return torch.cat(out), None

        self._run("form:max-average", f"RDI max-average form (PGD-{fk}, Eq. 4)", {"k": fk}, max_avg)

    # -- measured latency ---------------------------------------------------------
    @torch.inference_mode()
    def interleaved_latency(self, fns: dict[str, Callable[[], Any]], repeats: int = 15,
                            warmup: int = 2) -> dict[str, float]:
        """Median seconds of each no-argument callable, timed round-robin (fair on a noisy machine).

        Returns ``{name: seconds}``. With one torch thread on the CPU the clock is
        the process's CPU time (what the forward costs, unaffected by other
        processes competing for the cores); otherwise wall-clock time. The
        clock used is :meth:`latency_clock`.
        """
        clock = time.process_time if self.latency_clock() == "cpu" else time.perf_counter
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = clock()
                fn()
                if self.x.device.type == "cuda":
                    torch.cuda.synchronize(self.x.device)
                times[k].append(clock() - t0)
        return {k: statistics.median(v) for k, v in times.items()}

    def latency_clock(self) -> str:
        """``"cpu"`` (process CPU time: one-thread CPU runs) or ``"wall"``."""
        return "cpu" if self.x.device.type == "cpu" and torch.get_num_threads() == 1 else "wall"


def _digest_of(model: nn.Module) -> str:
    from ._report_cache import model_digest

    return model_digest(model)[:16]


def eval_context(model: nn.Module, point: dict[str, Any]) -> Any:
    """Eval mode and the point's dials (restored afterwards)."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(train_mode(model, False))
    if point:
        stack.enter_context(conditioned(model, **point))
    return stack
