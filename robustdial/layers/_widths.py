"""Width factors of slimmable layers: validation, channel counts, lookup (shared by
:mod:`.slimmable` and :mod:`.switchable_bn`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["check_widths", "scaled_channels", "width_index"]


def scaled_channels(channels: int, width: float) -> int:
    """``⌈w·C⌉`` (at least 1), robust to float round-off (0.75·16 = 12)."""
    return max(1, math.ceil(round(width * channels, 6)))


def check_widths(widths: Sequence[float]) -> tuple[float, ...]:
    """Sorted, distinct width factors in (0, 1].

    Raises:
        ValueError: empty, duplicated or out-of-range widths.
    """
    try:
        vals = tuple(sorted(float(w) for w in widths))
    except (TypeError, ValueError):
        raise ValueError(f"widths must be numbers in (0, 1], e.g. (0.5, 0.75, 1.0); got {widths!r}") from None
    if not vals or any(not 0.0 < w <= 1.0 for w in vals) or len(set(vals)) != len(vals):
        raise ValueError(f"widths must be distinct numbers in (0, 1], e.g. (0.5, 0.75, 1.0); "
                         f"got {widths!r}")
    return vals


def width_index(widths: tuple[float, ...], width: float | None) -> int:
    """Index of ``width`` in ``widths`` (``None`` -> the widest)."""
    if width is None:
        return len(widths) - 1
    for i, w in enumerate(widths):
        if abs(w - float(width)) < 1e-9:
            return i
    raise ValueError(f"width={width:g} was not trained; valid widths: "
                     f"{', '.join(f'{w:g}' for w in widths)}")
