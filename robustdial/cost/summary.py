"""One cost report for a model at a dial: params, storage, MACs, FLOPs, delay, latency."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..condition import conditioned
from ..utils import model_device, train_mode
from .delay import HardwareModel, model_delay
from .latency import measure_latency
from .macs import count_flops, count_macs
from .params import count_params, storage_bytes

__all__ = ["conditioning_kind", "film_conditioned_convs", "cost_report"]


def conditioning_kind(model: nn.Module) -> str:
    """``"oat"`` if the model has FiLM layers, ``"float"`` if noisy layers, else ``"plain"``."""
    names = {type(m).__name__ for m in model.modules()}
    if "FiLM" in names:
        return "oat"
    if "NoisyConv2d" in names:
        return "float"
    return "plain"


def film_conditioned_convs(model: nn.Module, input_shape: Sequence[int],
                           dials: dict | None = None) -> set[str]:
    """Names of conv layers whose output a FiLM modulates before the next conv runs."""
    order: list[tuple[str, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def is_film(m: nn.Module) -> bool:  # NormFiLM folds its FiLM into the BN at a scalar λ
        return type(m).__name__ in ("FiLM", "NormFiLM")

    def hook(module, inputs, output):
        order.append(("film" if is_film(module) else "conv", names[module]))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d) or is_film(m)]
    try:
        x = torch.zeros((1, *input_shape), device=model_device(model))
        with torch.no_grad(), train_mode(model, False), conditioned(model, **(dials or {})):
            model(x)
    finally:
        for h in handles:
            h.remove()
    out: set[str] = set()
    last_conv = None
    for kind, name in order:
        if kind == "conv":
            last_conv = name
        elif last_conv is not None:
            out.add(last_conv)
            last_conv = None
    return out


def _weight_density(model: nn.Module) -> float:
    """Non-zero fraction of conv and linear weights (BN and biases excluded)."""
    nz = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            total += m.weight.numel()
            nz += int(torch.count_nonzero(m.weight.detach()))
    return nz / max(total, 1)


def cost_report(model: nn.Module, input_shape: Sequence[int], *, dials: dict | None = None,
                bits: int = 8, latency: bool = False, batch_size: int = 64,
                hw: HardwareModel | None = None) -> dict:
    """Everything the cost command prints, as a JSON-ready dict.

    Conventions are named in the keys: MACs per image, FLOPs per image from
    ``torch.utils.flop_counter`` (2 per MAC), "mflops_rdi" = conv MACs / 2**20,
    storage at ``bits`` bits by FLOAT's convention, delay by FLOAT Eq. 7–9.
    """
    dials = dict(dials or {})
    pc = count_params(model)
    macs = count_macs(model, input_shape, dials=dials)
    macs_eff = count_macs(model, input_shape, dials=dials, density_effective=True)
    kind = conditioning_kind(model)
    cond_layers = film_conditioned_convs(model, input_shape, dials) if kind == "oat" else None
    delay = model_delay(macs.layers, kind=kind, conditioned_layers=cond_layers, hw=hw)
    report = {
        "dials": {k: v for k, v in dials.items()},
        "conditioning": kind,
        "params_total": pc.total,
        "params_nonzero": pc.nonzero,
        "storage_params": pc.storage_params,
        f"storage_bytes_{bits}bit": storage_bytes(model, bits),
        f"storage_bytes_{bits}bit_nonzero": storage_bytes(model, bits, sparse=True),
        "weight_density": _weight_density(model),
        "macs_per_image": macs.macs,
        "conv_macs_per_image": macs.conv_macs,
        "macs_per_image_density_effective": macs_eff.macs,
        "mflops_rdi": macs.mflops_rdi,
        "flops_per_image": count_flops(model, input_shape, dials=dials),
        "delay": delay.summary(),
    }
    if latency:
        lat = measure_latency(model, input_shape, batch_size=batch_size, dials=dials)
        report["latency"] = {"batch_size": lat.batch_size, "median_s": lat.median_s,
                             "images_per_s": lat.images_per_s}
    return report
