"""Weight projections onto quantized sets, and which layers get quantized.

Li, Wang, Xin, "An Integrated Approach to Produce Robust Deep Neural Network
Models with High Efficiency" (LOD 2021), §2.1 and §3.1: the projection
``Proj_Q(w)`` used by BinaryConnect / Binary-Relax. Every projection is *per
tensor*: one float scale ``s`` and integer levels ``q`` with ``Q(w) = s·q``.

Schemes (``scheme`` argument everywhere in :mod:`robustdial.compress`):

``"binary"`` (alias ``1``)
    ``Q(w) = mean|w| · sign(w)`` (XNOR-Net, Rastegari et al. 2016, Alg. 1;
    the paper's §3.1 equation). Levels ``{−1, +1}``; ``w = 0`` maps to ``+1``
    so a binary tensor never has a third value.
``"ternary"`` (alias ``"tnn"``, ``2``)
    ``δ = 0.7·mean|w|``; mask ``m = |w| ≥ δ``; scale ``s = mean(|w|·m)`` —
    the mean over *all* elements, as the authors' code does; levels
    ``m·sign(w) ∈ {−1, 0, +1}``. This scale is *not* idempotent: projecting
    a ternary tensor again keeps its levels but multiplies the scale by its
    density (:func:`~robustdial.compress.export.export_quantized` detects
    already-quantized tensors and keeps them exact).
``"4bit"`` (alias ``4``)
    ``δ = max|w| / 15``; level ``q = 0`` if ``|w| ≤ δ``, ``j`` if
    ``(2j−1)δ < |w| ≤ (2j+1)δ``, ``7`` above ``13δ``; least-squares scale
    ``s = Σ|w|q / Σq²``; output ``s·q·sign(w)`` (15 levels ``−7..7``).
int ``k`` with ``3 ≤ k < 32`` (except 4, which is the paper's scheme)
    Symmetric uniform: ``L = 2^(k−1) − 1``, ``s = max|w| / L``,
    ``q = round(w / s) ∈ {−L..L}`` (``2^k − 1`` levels).
int ``k ≥ 32`` (alias ``"float"``)
    Identity: 32-bit quantization equals float.

Layer selection (:func:`quantized_layers`, the paper's rule): every conv
weight (4-D), the first conv included; fully connected layers, BN and 1×1
shortcut convs stay float.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "Scheme",
    "SCHEMES",
    "bits_of",
    "normalize_scheme",
    "quantize",
    "quantize_levels",
    "quantized_layers",
]

Scheme = str | int
SCHEMES = ("binary", "ternary", "4bit", "float")
"""Named schemes; any int bit-width is accepted too."""

_ALIASES: dict[object, str | int] = {
    "binary": "binary", "bin": "binary", "1bit": "binary", 1: "binary",
    "ternary": "ternary", "tnn": "ternary", "2bit": "ternary", 2: "ternary",
    "4bit": "4bit", "4-bit": "4bit", 4: "4bit",
    "float": 32, "fp32": 32, "32bit": 32,
}
_SHORTCUT_NAME = re.compile(r"(shortcut|downsample|skip)", re.IGNORECASE)


def normalize_scheme(scheme: Scheme) -> str | int:
    """Canonical form of a scheme: ``"binary"``, ``"ternary"``, ``"4bit"`` or an int k.

    Raises:
        ValueError: for an unknown name or a bit-width below 1.
    """
    if isinstance(scheme, bool):
        raise ValueError(f"scheme must be a name {SCHEMES} or an int bit-width, got {scheme!r}")
    key: object = scheme.strip().lower() if isinstance(scheme, str) else scheme
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if key in _ALIASES:
        return _ALIASES[key]
    if isinstance(key, int):
        if key < 1:
            raise ValueError(f"bit-width must be ≥ 1, got {scheme!r}")
        return key if key < 32 else 32
    raise ValueError(f"unknown quantization scheme {scheme!r}: use one of {SCHEMES} "
                     "or an int bit-width such as 8")


def bits_of(scheme: Scheme) -> int:
    """Storage bits per weight of a scheme (binary 1, ternary 2, 4bit 4, k, float 32)."""
    s = normalize_scheme(scheme)
    return {"binary": 1, "ternary": 2, "4bit": 4}.get(s, s)  # type: ignore[arg-type]


def quantize_levels(w: Tensor, scheme: Scheme) -> tuple[Tensor, Tensor]:
    """Integer levels and the per-tensor scale of ``Q(w) = scale · levels``.

    Args:
        w: a weight tensor of any shape (not modified).
        scheme: see the module docstring.

    Returns:
        ``(levels, scale)``: ``levels`` an int8 tensor shaped like ``w``
        (int16 for 9–16 bits, int32 above), ``scale`` a 0-dim float tensor in
        ``w``'s dtype. For ``"float"`` (k ≥ 32) there are no levels:
        raises ValueError.
    """
    s = normalize_scheme(scheme)
    if s == 32:
        raise ValueError("scheme 'float' (≥ 32 bits) has no integer levels; keep the float tensor")
    w = w.detach()
    a = w.abs()
    sign = torch.where(w >= 0, 1, -1).to(torch.int8)
    if s == "binary":
        return sign, a.mean()
    if s == "ternary":
        delta = 0.7 * a.mean()
        mask = a >= delta
        scale = (a * mask).mean()  # mean over ALL elements (REFERENCE.md)
        return sign * mask.to(torch.int8), scale
    if s == "4bit":
        delta = a.amax() / 15
        if delta == 0:
            return torch.zeros_like(sign), torch.zeros((), dtype=w.dtype, device=w.device)
        # q = 0 for |w| ≤ δ; j for (2j−1)δ < |w| ≤ (2j+1)δ; 7 above 13δ
        q = torch.ceil((a / delta - 1) / 2).clamp_(0, 7)
        denom = (q * q).sum()
        scale = (a * q).sum() / denom if denom > 0 else torch.zeros((), dtype=w.dtype,
                                                                    device=w.device)
        return q.to(torch.int8) * sign, scale
    # symmetric uniform k-bit
    k = int(s)
    L = 2 ** (k - 1) - 1
    dtype = torch.int8 if k <= 8 else torch.int16 if k <= 16 else torch.int32
    scale = a.amax() / L
    if scale == 0:
        return torch.zeros(w.shape, dtype=dtype, device=w.device), scale
    return torch.round(w / scale).clamp_(-L, L).to(dtype), scale


def quantize(w: Tensor, scheme: Scheme) -> Tensor:
    """``Proj_Q(w)``: the projection of ``w`` onto the scheme's quantized set.

    Args:
        w: a weight tensor (not modified; no gradient flows through the result).
        scheme: ``"binary"``, ``"ternary"``, ``"4bit"``, an int bit-width, or
            ``"float"``.

    Returns:
        A tensor like ``w`` equal to ``scale · levels``; ``w`` itself (detached
        copy) for k ≥ 32 bits.

    Example::

        >>> quantize(torch.tensor([0.5, -1.5]), "binary")
        tensor([ 1., -1.])
    """
    if normalize_scheme(scheme) == 32:
        return w.detach().clone()
    levels, scale = quantize_levels(w, scheme)
    return levels.to(w.dtype) * scale


# -- layer selection ----------------------------------------------------------------------
def _weighted_modules(model: nn.Module) -> Iterable[tuple[str, nn.Module, Tensor]]:
    for name, mod in model.named_modules():
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if isinstance(w, Tensor):
            yield name, mod, w


def quantized_layers(model: nn.Module, *, include_first: bool = True,
                     exclude_1x1_shortcut: bool = True, exclude_linear: bool = True,
                     layers: Sequence[str] | None = None) -> list[str]:
    """Names of the weight parameters that get quantized (``"block.conv1.weight"``).

    The rule (the paper's, REFERENCE.md): every module with its own 4-D
    ``weight`` parameter (a conv) is quantized, the first conv included;
    2-D weights (fully connected layers) and 1-D ones (BN) stay float.

    Args:
        model: the network.
        include_first: keep the *input* convs quantized. Input convs are the
            non-1×1, ungrouped convs whose ``in_channels`` equals that of the first conv
            in registration order (the image channels: 1 for MNIST, 3 for
            CIFAR) — this finds the stem of every member of an ensemble.
        exclude_1x1_shortcut: keep 1×1 shortcut convs float. A shortcut is a
            conv with a 1×1 kernel whose qualified name contains
            ``shortcut``, ``downsample`` or ``skip`` (so MobileNet's pointwise
            convs are still quantized).
        exclude_linear: keep fully connected weights float; with ``False``
            2-D weights are quantized too.
        layers: an explicit list of module or parameter names; overrides the
            rule (each must exist and have a weight).

    Returns:
        Parameter names in registration order.

    Raises:
        ValueError: an explicit name that is not a module/parameter with a weight.
    """
    mods = list(_weighted_modules(model))
    if layers is not None:
        params = dict(model.named_parameters())
        out = []
        for n in layers:
            pname = n if n in params else f"{n}.weight"
            if pname not in params:
                valid = [m for m, _, _ in mods]
                raise ValueError(f"layer {n!r} is not a module with a weight nor a parameter of "
                                 f"the model; modules with weights: {valid[:20]}"
                                 f"{' ...' if len(valid) > 20 else ''}")
            out.append(pname)
        return out
    convs = [(n, m, w) for n, m, w in mods if w.dim() == 4]
    stem_in = convs[0][2].shape[1] if convs else None
    out = []
    for n, m, w in mods:
        pname = f"{n}.weight" if n else "weight"
        if w.dim() == 4:
            one_by_one = tuple(w.shape[2:]) == (1, 1)
            if exclude_1x1_shortcut and one_by_one and _SHORTCUT_NAME.search(n):
                continue
            if (not include_first and not one_by_one and w.shape[1] == stem_in
                    and getattr(m, "groups", 1) == 1):
                continue
            out.append(pname)
        elif w.dim() == 2 and not exclude_linear:
            out.append(pname)
    return out
