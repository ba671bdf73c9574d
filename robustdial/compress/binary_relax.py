"""BinaryConnect and Binary-Relax as engine weight transforms.

Courbariaux, Bengio, David, "BinaryConnect" (NeurIPS 2015); Yin, Zhang, Lyu,
Osher, Qi, Xin, "BinaryRelax" (SIAM J. Imaging Sci. 2018); used for robust
models in Li, Wang, Xin, "An Integrated Approach to Produce Robust Deep
Neural Network Models with High Efficiency" (LOD 2021), Algorithm 1:

    w_t = w_{t−1} − γ ∇L(u_{t−1})                       (float weights, optimizer)
    u_t = (λ_t · Proj_Q(w_t) + w_t) / (λ_t + 1)          (t < M, relaxed)
    u_t = Proj_Q(w_t)                                    (t ≥ M, BinaryConnect)
    λ_{t+1} = ρ · λ_t                                    (per epoch)

The float weights ``w`` stay the model's parameters and are stepped by the
optimizer. :meth:`before_forward` saves ``w`` and writes ``u`` into the
parameter (in place, so optimizer state and DDP buckets keep pointing at the
same storage); forward *and* backward run at ``u``; :meth:`after_backward`
writes ``w`` back, leaving ``.grad`` = ∇L(u) for the optimizer's step on ``w``.

Epoch indexing follows the authors' code (``if epoch < 120`` with 0-based
epochs): during the e-th epoch (e = 0, 1, ...) the relaxation weight is
``η = η₀·ρ^e`` while ``e < cutoff_epoch``; from epoch ``cutoff_epoch`` on,
``u = Proj_Q(w)``. The count of finished epochs is the transform's state
(:meth:`state_dict`), advanced by :meth:`on_epoch_end`.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .projections import Scheme, bits_of, normalize_scheme, quantize, quantized_layers

__all__ = ["BinaryConnect", "BinaryRelax"]

log = logging.getLogger(__name__)


class BinaryConnect:
    """BinaryConnect: forward/backward at ``u = Proj_Q(w)``, optimizer steps float ``w``.

    Args:
        scheme: projection (``"binary"``, ``"ternary"``, ``"4bit"``, int k);
            see :mod:`robustdial.compress.projections`.
        layers: explicit module/parameter names to quantize; default the
            paper's rule (:func:`~robustdial.compress.projections.quantized_layers`).

    Use as an engine transform (``fit(..., transforms=[BinaryConnect()])``),
    then call :meth:`finalize` to write ``Q(w)`` into the model for
    evaluation and export, or evaluate inside ``with t.applied(model):``.
    """

    def __init__(self, scheme: Scheme = "binary", layers: Sequence[str] | None = None) -> None:
        self.scheme = normalize_scheme(scheme)
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str)
                                                                      for n in layers)):
            raise TypeError(f"layers must be a list of module/parameter names, got {layers!r}")
        self.layers = list(layers) if layers is not None else None
        self.epochs_done = 0
        self._params: list[tuple[str, nn.Parameter]] | None = None
        self._model_id: int | None = None
        self._saved: list[Tensor] | None = None

    # -- the relaxation ------------------------------------------------------------------
    @property
    def eta(self) -> float | None:
        """Relaxation weight η of the current epoch; ``None`` means hard ``Q(w)``."""
        return None

    @property
    def bits(self) -> int:
        return bits_of(self.scheme)

    def target(self, w: Tensor) -> Tensor:
        """The weights used in forward/backward: ``Q(w)`` or ``(η·Q(w) + w)/(η + 1)``."""
        q = quantize(w, self.scheme)
        eta = self.eta
        if eta is None:
            return q
        return q.mul_(eta).add_(w).div_(eta + 1.0)

    # -- parameters ----------------------------------------------------------------------
    def parameter_names(self, model: nn.Module) -> list[str]:
        """Names of the parameters this transform quantizes in ``model``."""
        return quantized_layers(model, layers=self.layers)

    def _resolve(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        if self._params is None or self._model_id != id(model):
            params = dict(model.named_parameters())
            names = self.parameter_names(model)
            if not names:
                raise ValueError(f"{type(self).__name__}: the model has no layer to quantize "
                                 "(no conv weights); pass layers=[...] explicitly")
            self._params = [(n, params[n]) for n in names]
            self._model_id = id(model)
            log.debug("%s quantizes %d tensors", type(self).__name__, len(names))
        return self._params

    # -- engine hooks --------------------------------------------------------------------
    def on_train_start(self, model: nn.Module, optimizer: Any = None) -> None:
        self._resolve(model)

    @torch.no_grad()
    def before_forward(self, model: nn.Module) -> None:
        """Save the float weights and write ``u`` into the quantized parameters."""
        if self._saved is not None:  # a step that never reached after_backward
            self.after_backward(model)
        params = self._resolve(model)
        self._saved = [p.detach().clone() for _, p in params]
        for (_, p), w in zip(params, self._saved):
            p.copy_(self.target(w))

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        """Restore the float weights; ``.grad`` (computed at ``u``) stays."""
        if self._saved is None:
            return
        for (_, p), w in zip(self._resolve(model), self._saved):
            p.copy_(w)
        self._saved = None

    def after_step(self, model: nn.Module, optimizer: Any = None) -> None:
        """Nothing to do: the optimizer stepped the float weights."""

    def on_epoch_end(self, epoch: int, model: nn.Module, optimizer: Any = None) -> None:
        self.epochs_done += 1

    # -- evaluation / export -------------------------------------------------------------
    @torch.no_grad()
    def finalize(self, model: nn.Module) -> nn.Module:
        """Write ``Q(w)`` into the quantized parameters (in place) and return ``model``.

        After this the model *is* the quantized network (for evaluation and
        :func:`~robustdial.compress.export.export_quantized`); the float
        weights are gone.
        """
        self.after_backward(model)
        for _, p in self._resolve(model):
            p.copy_(quantize(p, self.scheme))
        return model

    @contextlib.contextmanager
    def applied(self, model: nn.Module, *, hard: bool = True) -> Iterator[nn.Module]:
        """Temporarily run ``model`` with ``Q(w)`` (``hard=True``) or the current ``u``.

        The float weights come back in ``finally``. Use for validation during
        training without finalizing.
        """
        params = self._resolve(model)
        with torch.no_grad():
            saved = [p.detach().clone() for _, p in params]
            for (_, p), w in zip(params, saved):
                p.copy_(quantize(w, self.scheme) if hard else self.target(w))
        try:
            yield model
        finally:
            with torch.no_grad():
                for (_, p), w in zip(params, saved):
                    p.copy_(w)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epochs_done": self.epochs_done, "scheme": self.scheme}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "epochs_done" not in state:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing 'epochs_done' in "
                           f"{sorted(state)}")
        if "scheme" in state and normalize_scheme(state["scheme"]) != self.scheme:
            raise ValueError(f"checkpoint was trained with scheme {state['scheme']!r}, this "
                             f"transform uses {self.scheme!r}; construct it with the same scheme")
        self.epochs_done = int(state["epochs_done"])

    def config(self) -> dict[str, Any]:
        """Hyper-parameters for ``run.json``."""
        return {"name": type(self).__name__, "scheme": self.scheme, "layers": self.layers}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class BinaryRelax(BinaryConnect):
    """Binary-Relax: ``u = (η·Q(w) + w)/(η + 1)``, η ×= ρ per epoch, hard Q from the cut-off.

    Args:
        scheme: projection; see :mod:`robustdial.compress.projections`.
        rho: growth factor ρ ≥ 1 of η per epoch (paper: 1.05).
        eta0: η during the first epoch (paper: λ₀ = 1).
        cutoff_epoch: M; from this (0-based) epoch on, ``u = Q(w)``
            (paper: 120 of 200).
        layers: explicit names to quantize; default the paper's rule.
    """

    def __init__(self, scheme: Scheme = "binary", rho: float = 1.05, eta0: float = 1.0,
                 cutoff_epoch: int = 120, layers: Sequence[str] | None = None) -> None:
        super().__init__(scheme, layers)
        if not (math.isfinite(rho) and rho >= 1.0):
            raise ValueError(f"rho must be a finite growth factor ≥ 1 (paper: 1.05), got {rho!r}")
        if not (math.isfinite(eta0) and eta0 > 0):
            raise ValueError(f"eta0 must be a finite number > 0 (paper: 1.0), got {eta0!r}")
        if isinstance(cutoff_epoch, bool) or int(cutoff_epoch) != cutoff_epoch or cutoff_epoch < 0:
            raise ValueError(f"cutoff_epoch must be an int ≥ 0 (paper: 120), got {cutoff_epoch!r}")
        self.rho = float(rho)
        self.eta0 = float(eta0)
        self.cutoff_epoch = int(cutoff_epoch)

    @property
    def eta(self) -> float | None:
        if self.epochs_done >= self.cutoff_epoch:
            return None
        return self.eta0 * self.rho ** self.epochs_done

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rho": self.rho, "eta0": self.eta0,
                "cutoff_epoch": self.cutoff_epoch}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "eta": self.eta}
