"""Attacks from short command-line specs: ``pgd-20``, ``cw-50``, ``pgd-20:alpha=0.00784``.

Grammar: ``NAME[-STEPS][:KEY=VALUE[,KEY=VALUE...]]`` with ε (on the [0, 1]
scale) passed separately. Defaults:

=================  ==========================================================
spec               attack
=================  ==========================================================
``fgsm``           ``FGSM(eps=ε)``
``rsfgsm``         ``FGSM(eps=ε, random_start=True, alpha=1.25·ε)``
``pgd-N``          ``PGD(eps=ε, steps=N, alpha=2.5·ε/N)`` (L∞, random start;
                   N defaults to 10)
``pgdl2-N``        ``PGD(norm="l2", eps=ε, steps=N, alpha=2.5·ε/N)`` — ε is the
                   L2 radius here; override with ``:eps=0.5``
``mifgsm-N``       ``MIFGSM(eps=ε, steps=N, alpha=ε/N, decay=1)`` (N: 10)
``cw-N``           ``CW(steps=N)`` (N: 100), C&W-L2 (ε unused)
``wrm-N``          ``WRM(steps=N)`` (N: 15), γ = 1/0.6 (ε unused)
``autoattack``     ``AutoAttack(norm="Linf", eps=ε, version="standard")``
``autoattack-rand``  ``AutoAttack(..., version="rand")`` (randomised models)
=================  ==========================================================

Options after ``:`` override any keyword of the attack, e.g.
``pgd-20:alpha=0.00784,random_start=false`` or ``cw-50:lr=0.0006,c=0.1``;
``pgd-7:alpha=oat`` picks OAT's step size (:func:`~robustdial.attacks.pgd.oat_step_size`).
"""
from __future__ import annotations

import inspect
import re
from typing import Any

from .autoattack import AutoAttack
from .base import Attack
from .cw import CW
from .fgsm import FGSM
from .mifgsm import MIFGSM
from .pgd import PGD, oat_step_size
from .wrm import WRM

__all__ = ["parse_attack", "ATTACK_NAMES"]

ATTACK_NAMES = ("fgsm", "rsfgsm", "pgd", "pgdl2", "mifgsm", "cw", "wrm",
                "autoattack", "autoattack-rand")
_SPEC = re.compile(r"^(?P<name>[a-z0-9]+?)(?:-(?P<steps>\d+|rand))?(?::(?P<opts>.*))?$")


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low == "none":
        return None
    try:
        return int(low)
    except ValueError:
        pass
    try:
        return float(low)
    except ValueError:
        pass
    if "/" in low:  # fractions such as 8/255
        num, den = low.split("/", 1)
        try:
            return float(num) / float(den)
        except ValueError:
            pass
    return text.strip()


def _options(text: str | None, spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"attack spec {spec!r}: option {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def parse_attack(spec: str, eps: float = 8 / 255) -> Attack:
    """Build an attack from a spec string (see the module docstring for the grammar).

    Args:
        spec: e.g. ``"pgd-20"``, ``"pgdl2-20:eps=0.5"``, ``"fgsm"``, ``"cw-50"``,
            ``"autoattack-rand"``.
        eps: default radius on the [0, 1] scale.

    Returns:
        The configured attack.

    Raises:
        ValueError: unknown name, malformed/unknown option (the message
            lists the valid ones), a step count of 0, or a hyper-parameter the
            attack refuses (e.g. an L∞ ``eps`` above 1: 8/255, not 8).
    """
    m = _SPEC.match(spec.strip().lower()) if isinstance(spec, str) else None
    if m is None or (m["steps"] == "rand" and m["name"] != "autoattack"):
        raise ValueError(f"cannot parse attack spec {spec!r}; expected NAME[-STEPS][:key=value,...] "
                         f"with NAME in {', '.join(ATTACK_NAMES)}")
    name, steps_text = m["name"], m["steps"]
    opts = _options(m["opts"], spec)
    eps = opts.pop("eps", eps)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"attack spec {spec!r}: eps must be a number on the [0, 1] scale "
                         f"(e.g. eps=8/255), got {eps!r}")
    eps = float(eps)
    steps = int(steps_text) if steps_text and steps_text.isdigit() else None
    if steps is not None and steps < 1 and name not in ("fgsm", "rsfgsm", "autoattack"):
        raise ValueError(f"attack spec {spec!r}: the step count must be ≥ 1 "
                         f"(e.g. {name}-10), got {steps}")

    cls: type[Attack]
    kw: dict[str, Any]
    if name == "fgsm" or name == "rsfgsm":
        cls, kw = FGSM, {"eps": eps, "random_start": name == "rsfgsm"}
    elif name in ("pgd", "pgdl2"):
        n = steps if steps is not None else 10
        alpha = opts.pop("alpha", None)
        if alpha == "oat":
            alpha = oat_step_size(eps, n)
        cls, kw = PGD, {"eps": eps, "steps": n, "alpha": 2.5 * eps / n if alpha is None else alpha,
                        "norm": "l2" if name == "pgdl2" else "linf"}
    elif name == "mifgsm":
        n = steps if steps is not None else 10
        cls, kw = MIFGSM, {"eps": eps, "steps": n, "alpha": eps / n}
    elif name == "cw":
        cls, kw = CW, {"steps": 100 if steps is None else steps}
    elif name == "wrm":
        cls, kw = WRM, {"steps": 15 if steps is None else steps}
    elif name == "autoattack":
        cls, kw = AutoAttack, {"eps": eps, "version": "rand" if steps_text == "rand" else "standard"}
    else:
        raise ValueError(f"unknown attack {name!r} in {spec!r}; known: {', '.join(ATTACK_NAMES)}")
    if steps is not None and name in ("fgsm", "rsfgsm", "autoattack"):
        raise ValueError(f"{name} takes no step count, got {spec!r}")

    valid = set(inspect.signature(cls.__init__).parameters) - {"self", "loss", "generator"}
    bad = set(opts) - valid
    if bad:
        raise ValueError(f"attack spec {spec!r}: unknown option(s) {sorted(bad)} for "
                         f"{cls.__name__}; valid: {sorted(valid)}")
    kw.update(opts)
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:  # bad hyper-parameter: say which spec it came from
        raise ValueError(f"attack spec {spec!r}: {exc}") from None
