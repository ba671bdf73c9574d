"""Convolution compute delay on a conventional Von-Neumann ASIC (FLOAT, Eq. 7–9).

Memory reads and multiplications are assumed sequential (FLOAT Sec. 4, after
refs [1, 20]). For conv layer l with kernel k, C_i inputs, C_o outputs and an
H_o × W_o output map:

* plain (Eq. 7):  ⌈k²C_iC_o / ((B_IO/B_W)·N_bank)⌉·τ_read + ⌈k²C_iC_o / N_mult⌉·H_oW_o·τ_mult
* FLOAT (Eq. 8):  the same read term, multiply term × (1 + H_oW_o) (adding λ·α·η once)
* OAT (Eq. 9):    reads and multiplies the FiLM MLP too: + 2C_o + 4C_o² parameters read
  and ⌈(2C_o + 4C_o²)/N_mult⌉·τ_mult

Constants default to the paper's 65 nm values: B_IO 16, B_W 8, N_bank 4,
N_mult 175, τ_read 9 ns, τ_mult 4 ns.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from .macs import LayerMacs

__all__ = ["HardwareModel", "conv_delay", "model_delay", "DelayReport"]


@dataclasses.dataclass(frozen=True)
class HardwareModel:
    """The delay model's constants (FLOAT Sec. 4)."""

    b_io: int = 16
    b_w: int = 8
    n_bank: int = 4
    n_mult: int = 175
    tau_read_ns: float = 9.0
    tau_mult_ns: float = 4.0

    @property
    def reads_per_cycle(self) -> float:
        return (self.b_io / self.b_w) * self.n_bank


def conv_delay(k: int, c_in: int, c_out: int, h_out: int, w_out: int, *, kind: str = "plain",
               hw: HardwareModel | None = None) -> float:
    """Delay in ns of one conv layer by Eq. 7 (``plain``), 8 (``float``) or 9 (``oat``)."""
    hw = hw or HardwareModel()
    weights = k * k * c_in * c_out
    mult_groups = math.ceil(weights / hw.n_mult)
    if kind == "plain":
        return (math.ceil(weights / hw.reads_per_cycle) * hw.tau_read_ns
                + mult_groups * h_out * w_out * hw.tau_mult_ns)
    if kind == "float":
        return (math.ceil(weights / hw.reads_per_cycle) * hw.tau_read_ns
                + mult_groups * (1 + h_out * w_out) * hw.tau_mult_ns)
    if kind == "oat":
        film = 2 * c_out + 4 * c_out * c_out
        return (math.ceil((weights + film) / hw.reads_per_cycle) * hw.tau_read_ns
                + mult_groups * h_out * w_out * hw.tau_mult_ns
                + math.ceil(film / hw.n_mult) * hw.tau_mult_ns)
    raise ValueError(f"kind must be 'plain', 'float' or 'oat', got {kind!r}")


@dataclasses.dataclass(frozen=True)
class DelayReport:
    """Per-layer delays (ns) of one model under one equation, and their ratio to Eq. 7."""

    kind: str
    layers: tuple[tuple[str, float, float], ...]  # (name, delay, plain delay)

    @property
    def total_ns(self) -> float:
        return sum(d for _, d, _ in self.layers)

    @property
    def normalized(self) -> list[float]:
        return [d / p for _, d, p in self.layers]

    def summary(self) -> dict:
        """Totals and per-layer ratios (``None`` when the model has no conv layer to time)."""
        ratios = self.normalized
        return {"kind": self.kind, "total_ns": self.total_ns, "layers": len(ratios),
                "normalized_min": min(ratios) if ratios else None,
                "normalized_max": max(ratios) if ratios else None,
                "normalized_mean": sum(ratios) / len(ratios) if ratios else None}


def model_delay(layers: Sequence[LayerMacs], *, kind: str = "plain",
                conditioned_layers: Sequence[str] | None = None,
                hw: HardwareModel | None = None) -> DelayReport:
    """Conv-layer delays of a model from its :func:`~robustdial.cost.count_macs` report.

    Args:
        layers: per-layer MACs records (only conv layers are used).
        kind: equation for conditioned layers: ``plain`` | ``float`` | ``oat``.
        conditioned_layers: names of layers that the conditioning modifies (OAT:
            convs followed by a FiLM); ``None`` = every conv layer.
        hw: hardware constants.
    """
    out = []
    for rec in layers:
        if rec.kind != "conv":
            continue
        k = int(round(math.sqrt(rec.kernel)))
        args = (k, rec.in_channels, rec.out_channels, rec.out_hw[0], rec.out_hw[1])
        plain = conv_delay(*args, kind="plain", hw=hw)
        use = kind if conditioned_layers is None or rec.name in conditioned_layers else "plain"
        out.append((rec.name, conv_delay(*args, kind=use, hw=hw), plain))
    return DelayReport(kind, tuple(out))
