"""FiLM conditioning on λ with an orthonormal λ encoding (OAT, Wang et al. 2020).

Wang, Chen, Gui, Hu, Liu, Wang, "Once-for-All Adversarial Training: In-Situ
Tradeoff between Robustness and Accuracy for Free", NeurIPS 2020, Sec. 3.1:
λ is embedded as a d-dimensional vector (rows of an orthogonal matrix), and a
FiLM layer after every batch norm applies ``FiLM(h_c) = γ_c·h_c + β_c`` with
``γ = g1(λ)``, ``β = g2(λ)`` produced by a two-layer MLP with leaky ReLU.

Implementation notes (REFERENCE.md, OAT section):

* Encoding: the rows of ``Q`` from the QR decomposition of a seeded d×d
  Gaussian matrix, row j for the j-th training λ. The matrix is a *buffer*, so
  it is saved in checkpoints (the original code regenerated it on resume).
  One :class:`LambdaEncoding` is shared by all FiLM layers of a model: the
  first FiLM registers it as a submodule, the others keep an unregistered
  reference, so the state dict holds the matrix exactly once.
* Unseen λ (between two training values) are encoded by **linear
  interpolation between the rows of the two neighbouring training values**;
  λ outside the trained range raises ``ValueError``.
* ``dim=1`` (the paper's "31.4 MB" parameter count): the scalar λ itself is the
  1-d encoding, valid for every λ in [0, 1].
* FiLM MLP: ``Linear(d, 2C) → LeakyReLU → Linear(2C, 2C)``; split into scale μ
  and shift σ, both through leaky ReLU (slope 0.01); ``out = x·μ + σ``.
* **Initialisation (decision).** With PyTorch's default init of the MLP (the
  authors' code), μ starts near 0 (|μ| ≲ 0.1, and ≈ 0.01× that where the
  leaky ReLU clips it), so every FiLM shrinks its features ~30×. A ResNet's
  identity shortcuts carry the signal past that; a plain stack does not: OAT
  SmallCNN (with or without BN) sat at chance with gradient norms ≈ 0.08 for
  every λ in our runs. ``init="identity"`` (the default) keeps the form
  ``x·μ + σ`` and the default weights but sets the second layer's bias to 1 on
  the μ half and 0 on the σ half, so μ ≈ 1 ± 0.1 and σ ≈ 0 at the start: each
  FiLM begins as (nearly) the identity and still differs per λ. The same
  SmallCNN then trains like the plain net. ``init="pytorch"`` restores the
  authors' initialisation.
* **BN + FiLM fold at a scalar λ.** ``norm(C)`` is a :class:`NormFiLM`, an
  ``nn.Sequential(BN, FiLM)`` whose forward, when λ is one number for the
  whole batch (inference at a dial, evaluation, the λ=0 clean pass), folds the
  FiLM affine into the BN's: ``(x̂·w + b)·μ + σ = x̂·(w·μ) + (b·μ + σ)``, one
  pass over the feature map instead of two (the same statistics and running
  buffers; equal to float rounding). Per-sample λ (OAT training) runs BN then
  FiLM.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..condition import Condition, DialSpec, Interval
from .dual_bn import DualBatchNorm2d

__all__ = ["FiLM", "LambdaEncoding", "NormFiLM", "oat_layer_set"]

OAT_LAM_VALUES = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
FILM_INITS = ("identity", "pytorch")
_SLOPE = 0.01  # leaky ReLU slope of the original FiLM layers


class LambdaEncoding(nn.Module):
    """Orthonormal λ embedding with linear interpolation between training values.

    Args:
        values: the training λ values (strictly increasing after sorting, in [0, 1]).
        dim: embedding size d (128 in OAT). ``dim=1``: the encoding is λ itself.
        seed: seed of the Gaussian matrix whose QR factor gives the rows.

    Buffers:
        values: (n,) sorted training λ values.
        matrix: (n, d) encoding rows (``dim > 1`` only), orthonormal.
    """

    def __init__(self, values: Sequence[float] = OAT_LAM_VALUES, dim: int = 128,
                 seed: int = 0) -> None:
        super().__init__()
        vals = sorted(float(v) for v in values)
        if len(vals) < 1 or any(not 0.0 <= v <= 1.0 for v in vals):
            raise ValueError(f"lam_values must be a non-empty set of numbers in [0, 1], got {values!r}")
        if len(set(vals)) != len(vals):
            raise ValueError(f"lam_values must be distinct, got {values!r}")
        if dim < 1:
            raise ValueError(f"embed_dim must be ≥ 1, got {dim}")
        if dim > 1 and len(vals) > dim:
            raise ValueError(f"embed_dim={dim} cannot hold {len(vals)} orthonormal rows; "
                             f"use embed_dim ≥ {len(vals)}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.register_buffer("values", torch.tensor(vals, dtype=torch.float32))
        if self.dim > 1:
            g = torch.Generator().manual_seed(self.seed)
            gauss = torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64)
            q, _ = torch.linalg.qr(gauss)
            self.register_buffer("matrix", q[: len(vals)].to(torch.float32).contiguous())
        else:
            self.matrix = None
        self._checked: torch.Tensor | None = None  # last per-sample λ found in range
        self._cache: tuple | None = None  # (λ, device, dtype, matrix, version, encoding)

    @property
    def range(self) -> tuple[float, float]:
        """The λ interval the encoding covers (``[0, 1]`` for ``dim=1``)."""
        if self.dim == 1:
            return 0.0, 1.0
        return float(self.values[0]), float(self.values[-1])

    def encode(self, lam: float | torch.Tensor, *, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Embed λ.

        Args:
            lam: a float or a (B,) tensor of λ values.
            device: output device (default: the buffers' device).
            dtype: output dtype.

        Returns:
            (1, d) for a float, (B, d) for a tensor. A training λ maps exactly to
            its row; λ between training values v_j < λ < v_{j+1} maps to
            ``(1 − t)·Q_j + t·Q_{j+1}`` with ``t = (λ − v_j)/(v_{j+1} − v_j)``.

        Raises:
            ValueError: λ outside the trained range.
        """
        ref = self.values
        device = ref.device if device is None else device
        lam_t = torch.as_tensor(lam, dtype=torch.float32, device=device).reshape(-1)
        lo, hi = self.range
        if not isinstance(lam, torch.Tensor):  # scalar: check on the host, no sync
            self.check(lam)
        if self.dim == 1:
            return lam_t.unsqueeze(1).to(dtype)
        vals = ref.to(device)
        mat = self.matrix.to(device)
        if len(vals) == 1:
            return mat.expand(lam_t.shape[0], -1).to(dtype)
        # lower neighbour j with v_j ≤ λ (the last interval is closed on the right)
        j = (torch.searchsorted(vals, lam_t, right=True) - 1).clamp_(0, len(vals) - 2)
        v0, v1 = vals[j], vals[j + 1]
        t = ((lam_t - v0) / (v1 - v0)).unsqueeze(1)
        # (1 − t)·Q_j + t·Q_{j+1}: exact rows for t ∈ {0, 1}
        return ((1 - t) * mat[j] + t * mat[j + 1]).to(dtype)

    def check(self, lam: float | torch.Tensor) -> None:
        """Raise ``ValueError`` if λ lies outside the trained range (one sync per tensor)."""
        if isinstance(lam, torch.Tensor):
            if lam is self._checked:
                return
            lam_lo, lam_hi = lam.min().item(), lam.max().item()
        else:
            lam_lo = lam_hi = float(lam)
        lo, hi = self.range
        if not (lo <= lam_lo and lam_hi <= hi):
            raise ValueError(f"λ in [{lam_lo:g}, {lam_hi:g}] is outside the trained range "
                             f"[{lo:g}, {hi:g}] of this FiLM encoding; choose λ in that range")
        if isinstance(lam, torch.Tensor):
            self._checked = lam

    def cached_encode(self, lam: float | torch.Tensor, device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
        """:meth:`encode` with a one-entry cache, so the FiLM layers of one forward share it."""
        key_lam = lam if isinstance(lam, torch.Tensor) else float(lam)
        mat = self.matrix  # identity + version: a reloaded or replaced matrix invalidates
        version = -1 if mat is None else mat._version
        c = self._cache
        if c is not None and c[1] == device and c[2] == dtype and c[3] is mat and c[4] == version:
            if isinstance(key_lam, torch.Tensor):
                if c[0] is key_lam:
                    return c[5]
            elif not isinstance(c[0], torch.Tensor) and c[0] == key_lam:
                return c[5]
        out = self.encode(lam, device=device, dtype=dtype)
        self._cache = (key_lam, device, dtype, mat, version, out)
        return out

    def extra_repr(self) -> str:
        vals = ", ".join(f"{v:g}" for v in self.values.tolist())
        return f"values=({vals}), dim={self.dim}, seed={self.seed}"


class FiLM(nn.Module):
    """Feature-wise linear modulation conditioned on the λ dial (OAT Sec. 3.1).

    Args:
        num_features: channels C of the modulated feature map.
        encoding: the model's shared :class:`LambdaEncoding`.
        register_encoding: register ``encoding`` as a submodule (exactly one
            FiLM per model should, so the state dict stores it once).
        init: ``"identity"`` (default: μ ≈ 1, σ ≈ 0 at the start, see the module
            notes) or ``"pytorch"`` (the default init of both Linear layers, as
            the authors' code).

    Shape:
        (B, C, ...) -> (B, C, ...); λ is a float or a (B,) tensor from the condition.
    """

    def __init__(self, num_features: int, encoding: LambdaEncoding, *,
                 register_encoding: bool = True, init: str = "identity") -> None:
        super().__init__()
        if init not in FILM_INITS:
            raise ValueError(f"film_init must be one of {FILM_INITS}, got {init!r}")
        self.num_features = int(num_features)
        C, d = self.num_features, encoding.dim
        self.fc1 = nn.Linear(d, 2 * C)
        self.fc2 = nn.Linear(2 * C, 2 * C)
        self.init = init
        if init == "identity":
            with torch.no_grad():  # μ half of the output starts at 1, σ half at 0
                self.fc2.bias.zero_()
                self.fc2.bias[:C] = 1.0
        if register_encoding:
            self.encoding = encoding
        else:  # an unregistered reference: not in state_dict / parameters / .to() twice
            object.__setattr__(self, "encoding", encoding)
        self._lam: float | torch.Tensor = 0.0

    def apply_condition(self, cond: Condition) -> None:
        lam = 0.0 if cond.lam is None else cond.lam
        self.encoding.check(lam)  # once per condition (cached for tensors)
        self._lam = lam

    def dial_specs(self) -> dict[str, DialSpec]:
        lo, hi = self.encoding.range
        return {"lam": Interval(lo, hi)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self._lam
        e = self.encoding.cached_encode(lam, x.device, x.dtype)  # (1|B, d)
        if isinstance(lam, torch.Tensor) and lam.dim() > 0 and e.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample λ has {e.shape[0]} entries but the batch has "
                             f"{x.shape[0]}")
        mu, sigma = self._mlp(e)
        shape = (e.shape[0], self.num_features) + (1,) * (x.dim() - 2)
        return torch.addcmul(sigma.reshape(shape), x, mu.reshape(shape))  # x·μ + σ

    def _mlp(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ), each (n, C), from encodings (n, d): γ = g1(λ), β = g2(λ)."""
        h = self.fc2(F.leaky_relu(self.fc1(e), _SLOPE))  # (n, 2C)
        mu, sigma = F.leaky_relu(h, _SLOPE).chunk(2, dim=1)
        return mu, sigma

    def affine(self, lam: float, device: torch.device | None = None,
               dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ), each (C,), at a scalar λ: the layer's output is ``x·μ + σ`` per channel.

        ``device`` / ``dtype`` default to the MLP's.
        """
        w = self.fc1.weight
        e = self.encoding.cached_encode(float(lam), device or w.device, dtype or w.dtype)  # (1, d)
        mu, sigma = self._mlp(e)
        return mu.reshape(-1), sigma.reshape(-1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, embed_dim={self.encoding.dim}, init={self.init!r}"


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` with its affine replaced by (weight, bias): ``_BatchNorm.forward`` otherwise."""
    bn._check_input_dim(x)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep = not bn.training or bn.track_running_stats
    return F.batch_norm(x, bn.running_mean if keep else None, bn.running_var if keep else None,
                        weight, bias, use_batch, factor, bn.eps)


class NormFiLM(nn.Sequential):
    """``Sequential(BN | DualBN, FiLM)`` that folds FiLM into the BN affine at a scalar λ.

    Behaves exactly as ``nn.Sequential`` (same children, same state-dict keys);
    only the arithmetic differs: with one λ for the whole batch the output is
    ``batch_norm(x, weight=w·μ, bias=b·μ + σ)`` — one pass instead of BN then
    ``x·μ + σ``. Per-sample λ, a BN without affine or other children fall back
    to the plain sequence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self) == 2:
            bn, film = self[0], self[1]
            if isinstance(film, FiLM) and not isinstance(film._lam, torch.Tensor):
                if isinstance(bn, DualBatchNorm2d) and bn._cond.bn_route is None:
                    bn = bn.bn_a if bn._cond.use_adv_bn else bn.bn_c
                if type(bn) is nn.BatchNorm2d and bn.affine:
                    mu, sigma = film.affine(film._lam, x.device, x.dtype)
                    return _batch_norm(bn, x, bn.weight * mu, torch.addcmul(sigma, bn.bias, mu))
        return super().forward(x)


def oat_layer_set(base, *, embed_dim: int = 128, dual_bn: bool = True,
                  lam_values: Sequence[float] = OAT_LAM_VALUES, encoding_seed: int = 0,
                  film_init: str = "identity"):
    """OAT's layer factories: ``norm`` = (dual) BN followed by FiLM.

    Args:
        base: the :class:`~robustdial.models.LayerSet` to modify.
        embed_dim: λ embedding size d (128 in OAT; 1 = the scalar λ).
        dual_bn: BN_c / BN_a pairs routed by λ (OAT) instead of one BN.
        lam_values: training λ values (the rows of the encoding).
        encoding_seed: seed of the encoding matrix.
        film_init: FiLM initialisation, ``"identity"`` (default) or ``"pytorch"``
            (the authors'); see the module notes.

    Returns:
        The new ``LayerSet``: ``norm(C)`` -> ``NormFiLM(DualBN(C) | BN(C), FiLM(C))``,
        ``aux_norm(C)`` -> ``DualBN(C) | BN(C)`` (no FiLM), ``cond(C)`` -> ``FiLM(C)``.
        All FiLM layers share one :class:`LambdaEncoding`; build one layer set per model.
    """
    if film_init not in FILM_INITS:
        raise ValueError(f"film_init must be one of {FILM_INITS}, got {film_init!r}")
    encoding = LambdaEncoding(lam_values, dim=embed_dim, seed=encoding_seed)
    registered = [False]

    def film(C: int) -> FiLM:
        first = not registered[0]
        registered[0] = True
        return FiLM(C, encoding, register_encoding=first, init=film_init)

    def bn(C: int) -> nn.Module:
        return DualBatchNorm2d(C) if dual_bn else nn.BatchNorm2d(C)

    def norm(C: int) -> nn.Module:
        return NormFiLM(bn(C), film(C))

    return base.replace(norm=norm, aux_norm=bn, cond=film, tags=base.tags + ("oat",))
