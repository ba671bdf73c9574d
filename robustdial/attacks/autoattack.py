"""AutoAttack adapter (parameter-free ensemble evaluation).

Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020. ``version="standard"``: APGD-CE,
APGD-T, FAB-T, Square; ``version="rand"``: APGD-CE and APGD-DLR with EOT over
20 draws, for randomised models (FLOAT's noisy weights, EnResNet's noise).

Needs the ``pyautoattack`` package (``pip install "robustdial[eval]"``); the
original ``autoattack`` package from GitHub works too. The adapter calls
``model(x)`` unchanged and keeps the library's contracts that the package
itself does not: parameter ``.grad`` is preserved (FAB calls ``.backward()``),
the global RNG state is restored (the package reseeds it), the package's
console output is off and its warnings go to the ``auto-attack`` logger.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import Attack, _check_eps

__all__ = ["AutoAttack"]

_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
_VERSIONS = ("standard", "rand", "plus")
_COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


def _load_autoattack_class() -> type:
    for name in ("pyautoattack", "autoattack"):
        try:
            return importlib.import_module(name).AutoAttack
        except ImportError:
            continue
    raise ImportError('AutoAttack needs the "pyautoattack" package: pip install "robustdial[eval]"')


@contextlib.contextmanager
def _preserve_param_grads(model: nn.Module) -> Iterator[None]:
    """Park every parameter's ``.grad`` and put it back afterwards, untouched."""
    params = list(model.parameters())
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, g in zip(params, saved):
            p.grad = g


class AutoAttack(Attack):
    """Run AutoAttack on a batch and return its adversarial examples.

    Args:
        norm: ``"Linf"``, ``"L2"`` or ``"L1"`` (case-insensitive).
        eps: radius on the [0, 1] scale (8/255 for CIFAR L∞).
        version: ``"standard"`` (deterministic models) or ``"rand"``
            (randomised models, EOT); ``"plus"`` is accepted too.
        seed: seed of AutoAttack's internal randomness (the caller's global
            RNG state is restored afterwards).
        batch_size: AutoAttack's internal batch size (default: the whole batch).
        attacks: run only these components (``version="custom"``, the
            package's per-component defaults: APGD with 5 restarts …), e.g.
            ``("square",)``; names: apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square.
        components: run only these components *with the settings of*
            ``version``: ``AutoAttack(version="standard", components=("apgd-ce",
            "apgd-t"))`` is the "fast" profile (APGD-CE with 1 restart, APGD-T
            with 9 target classes, 100 iterations each; FAB-T and Square
            skipped), the same as a direct ``pyautoattack.AutoAttack(...,
            version="standard")`` whose ``attacks_to_run`` is set to those two.
        square_queries: Square's query budget (the package's default 5000).
        eot_iter: EOT forwards per APGD gradient (``version="rand"`` uses 20).

    Samples the model already misclassifies are returned unchanged, as
    AutoAttack does.
    """

    _repr_fields = ("norm", "eps", "version")

    def __init__(self, *, norm: str = "Linf", eps: float = 8 / 255, version: str = "standard",
                 seed: int = 0, batch_size: int | None = None,
                 attacks: Sequence[str] | None = None, components: Sequence[str] | None = None,
                 square_queries: int | None = None, eot_iter: int | None = None) -> None:
        super().__init__()
        key = norm.lower() if isinstance(norm, str) else norm
        if key not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(set(_NORMS.values()))}, got {norm!r}")
        if attacks is not None:
            bad = set(attacks) - set(_COMPONENTS)
            if bad or not attacks:
                raise ValueError(f"attacks must be a non-empty subset of {_COMPONENTS}, got {attacks!r}")
            version = "custom"
        elif version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}, got {version!r}")
        if components is not None:
            if attacks is not None:
                raise ValueError("pass either attacks= (custom settings) or components= "
                                 "(a version's settings), not both")
            bad = set(components) - set(_COMPONENTS)
            if bad or not components:
                raise ValueError(f"components must be a non-empty subset of {_COMPONENTS}, "
                                 f"got {components!r}")
        for name, value in (("square_queries", square_queries), ("eot_iter", eot_iter)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        eps = _check_eps("eps", eps, allow_zero=False, unit=key == "linf")
        self._cls = _load_autoattack_class()  # fail at construction, not mid-evaluation
        self.norm = _NORMS[key]
        self.eps = eps
        self.version = version
        self.seed = int(seed)
        self.batch_size = batch_size
        self.attacks = None if attacks is None else tuple(attacks)
        self.components = None if components is None else tuple(components)
        self.square_queries = None if square_queries is None else int(square_queries)
        self.eot_iter = None if eot_iter is None else int(eot_iter)
        if self.attacks is not None:
            self._repr_fields = ("norm", "eps", "version", "attacks")
        elif self.components is not None:
            self._repr_fields = ("norm", "eps", "version", "components")

    def _build(self, model: nn.Module, device: torch.device) -> Any:
        params = inspect.signature(self._cls).parameters
        kw: dict[str, Any] = {"norm": self.norm, "eps": self.eps, "version": self.version,
                              "seed": self.seed, "device": device}
        if "verbose" in params:  # the original package
            kw["verbose"] = False
        if self.attacks is not None:
            kw["attacks" if "attacks" in params else "attacks_to_run"] = list(self.attacks)
        aa = self._cls(model, **{k: v for k, v in kw.items() if k in params})
        aa.verbose = False
        if self.components is not None:  # the version's settings, fewer components
            order = list(aa.attacks_to_run)  # the version's order: cheap components first
            aa.attacks_to_run = ([c for c in order if c in self.components]
                                 + [c for c in self.components if c not in order])
        if self.square_queries is not None:
            aa.square.n_queries = self.square_queries
        if self.eot_iter is not None:
            aa.apgd.eot_iter = self.eot_iter
            aa.apgd_targeted.eot_iter = self.eot_iter
        return aa

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        aa = self._build(model, x.device)
        bs = self.batch_size or x.shape[0]
        run_params = inspect.signature(aa.run_standard_evaluation).parameters
        bs_kw = {"batch_size": bs} if "batch_size" in run_params else {"bs": bs}
        rng_devices = [x.device] if x.device.type == "cuda" else []
        tracer = sys.gettrace()  # the package's dynamic-defence check resets sys.settrace
        try:
            with _preserve_param_grads(model), torch.random.fork_rng(devices=rng_devices):
                out = aa.run_standard_evaluation(x, y, **bs_kw)
        finally:
            sys.settrace(tracer)
        x_adv = out[0] if isinstance(out, tuple) else out
        return x_adv.to(dtype=x.dtype, device=x.device)
