"""The ``eval`` section of a training recipe: which suite, which keys, and running it.

Split from :mod:`robustdial.cli.train` (which documents the section). Every key
a suite reads takes effect; any other key is refused with one line naming it,
checked before training starts.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._common import UsageError, parse_eps, parse_fraction

__all__ = ["EVAL_KEYS", "EVAL_SUITES", "check_eval_section", "run_eval_section"]

_log = logging.getLogger(__name__)


EVAL_SUITES = ("br_attack_suite", "multi_exit")
"""Values of ``eval.suite`` besides none (``robustdial.evaluate`` with the listed attacks)."""

_EVAL_COMMON = ("suite", "eps", "batch_size", "max_samples", "seed")
EVAL_KEYS: dict[str | None, tuple[str, ...]] = {
    None: _EVAL_COMMON + ("attacks", "conditions", "eot_samples", "sparsity"),
    "br_attack_suite": _EVAL_COMMON + ("conditions", "eot_samples", "sparsity", "cw", "pgd"),
    "multi_exit": _EVAL_COMMON + ("attacks", "alpha", "steps", "forms", "thresholds",
                                  "calibrate_thresholds"),
}
"""The keys each suite reads (every one takes effect); any other key is refused."""


def _suite_name(suite: str | None) -> str:
    return f"suite {suite}" if suite else "the default suite (no 'suite' key)"


def _eval_int(section: Mapping[str, Any], key: str, *, minimum: int | None = 1,
              optional: bool = False) -> int | None:
    value = section[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        expected = "an int" if minimum is None else f"an int ≥ {minimum}"
        raise UsageError(f"eval.{key} must be {expected}{', or null' if optional else ''}, "
                         f"got {value!r}")
    return value


def _eval_bool(section: Mapping[str, Any], key: str) -> bool:
    value = section[key]
    if not isinstance(value, bool):
        raise UsageError(f"eval.{key} must be true or false, got {value!r}")
    return value


def _eval_fraction(value: Any, key: str) -> float:
    try:
        return parse_fraction(value)
    except UsageError as exc:
        raise UsageError(f"eval.{key}: {exc}") from None


def _eval_numbers(section: Mapping[str, Any], key: str) -> list[float]:
    value = section[key]
    if not isinstance(value, list) or not value:
        raise UsageError(f"eval.{key} must be a non-empty list of numbers, got {value!r}")
    return [_eval_fraction(v, key) for v in value]


def check_eval_section(section: Mapping[str, Any], model: Any = None, *,
                       has_val: bool = True) -> dict[str, Any]:
    """Check a recipe's ``eval`` section and return its settings, defaults filled in.

    Args:
        section: the ``eval`` mapping (see the module docstring for the keys of
            each suite).
        model: when given (the recipe's model, before or after training), the
            ``conditions`` dials, the multi-exit suite's need for early exits
            and its ``forms`` are checked against it.
        has_val: the run has a validation split (``calibrate_thresholds`` needs it).

    Returns:
        ``{"suite", "eps", "attacks" (spec -> Attack), "conditions" (grid
        mapping or None), "batch_size", "max_samples", "seed", …}`` with
        every key of the suite.

    Raises:
        UsageError: an unknown suite, a key the suite does not read (named,
            with the suite that reads it), or a bad value (named ``eval.KEY``).
    """
    from robustdial.attacks import parse_attack

    if not isinstance(section, Mapping):
        raise UsageError("section 'eval' must be a mapping")
    suite = section.get("suite")
    if suite is not None and suite not in EVAL_SUITES:
        raise UsageError(f"eval.suite {suite!r} is unknown; valid: {', '.join(EVAL_SUITES)} "
                         "(or no suite: robustdial.evaluate with eval.attacks)")
    keys = EVAL_KEYS[suite]
    unknown = sorted(set(section) - set(keys), key=str)
    if unknown:
        elsewhere = [f"{k!r} is read by {_suite_name(s)}" for k in unknown
                     for s, ks in EVAL_KEYS.items() if s != suite and k in ks]
        raise UsageError(f"eval: {_suite_name(suite)} does not read key(s) {unknown}"
                         + (f" ({'; '.join(elsewhere)})" if elsewhere else "")
                         + f"; its keys: {', '.join(keys)}")

    eps = parse_eps(_eval_fraction(section.get("eps", 8 / 255), "eps"), flag="eval.eps")
    out: dict[str, Any] = {"suite": suite, "eps": eps, "batch_size": 256, "max_samples": None,
                           "seed": 0}
    if "batch_size" in section:
        out["batch_size"] = _eval_int(section, "batch_size")
    if "max_samples" in section:
        out["max_samples"] = _eval_int(section, "max_samples", optional=True)
    if "seed" in section:
        out["seed"] = _eval_int(section, "seed", minimum=None)

    specs = section.get("attacks")
    if specs is not None and (not isinstance(specs, list) or not all(isinstance(s, str) for s in specs)):
        raise UsageError(f"eval.attacks must be a list of attack specs such as [fgsm, pgd-20], "
                         f"got {specs!r}")
    attacks: dict[str, Any] = {}
    for spec in specs or []:
        try:
            attacks[spec] = parse_attack(spec, eps=eps)
        except ValueError as exc:
            raise UsageError(f"eval.attacks: {exc}") from None
    out["attacks"] = attacks

    if "conditions" in keys:
        conditions = section.get("conditions")
        if conditions is not None:
            if not isinstance(conditions, Mapping) or not conditions:
                raise UsageError(f"eval.conditions must map dials to values, e.g. "
                                 f"{{lam: [0.0, 1.0]}}, got {conditions!r}")
            conditions = {str(k): (list(v) if isinstance(v, list) else [v]) for k, v in conditions.items()}
            if any(not v for v in conditions.values()):
                raise UsageError(f"eval.conditions: every dial needs at least one value, got {conditions}")
            if model is not None:
                from .eval_cmd import check_dials

                check_dials(model, conditions, where="eval.conditions: the model")
        out["conditions"] = conditions
    if "eot_samples" in keys:
        out["eot_samples"] = (_eval_int(section, "eot_samples", optional=True)
                              if "eot_samples" in section else None)
    if "sparsity" in keys:
        out["sparsity"] = _eval_bool(section, "sparsity") if "sparsity" in section else False
    if suite == "br_attack_suite":
        for key in ("cw", "pgd"):
            out[key] = _eval_bool(section, key) if key in section else True
    if suite == "multi_exit":
        _check_multi_exit(section, out, model, has_val)
    return out


def _check_multi_exit(section: Mapping[str, Any], out: dict[str, Any], model: Any,
                      has_val: bool) -> None:
    if out["attacks"] and ("alpha" in section or "steps" in section):
        raise UsageError("eval.alpha / eval.steps set the multi-exit suite's PGD attacker; with "
                         "eval.attacks give the step in each spec (pgd-20:alpha=2/255) instead")
    out["alpha"] = None
    if "alpha" in section:
        alpha = _eval_fraction(section["alpha"], "alpha")
        if not 0 < alpha <= 1:
            raise UsageError(f"eval.alpha must be a step in (0, 1] on the [0, 1] scale, got "
                             f"{section['alpha']!r}")
        out["alpha"] = alpha
    out["steps"] = _eval_int(section, "steps") if "steps" in section else 20
    forms = section.get("forms")
    if forms is not None and (not isinstance(forms, list) or not forms
                              or not all(isinstance(f, str) for f in forms)):
        raise UsageError(f"eval.forms must be a list such as [main, average, max-average], got {forms!r}")
    out["forms"] = forms
    if "thresholds" in section and "calibrate_thresholds" in section:
        raise UsageError("eval.thresholds and eval.calibrate_thresholds exclude each other: give "
                         "fixed thresholds or calibrate them on the validation split")
    out["thresholds"] = _eval_numbers(section, "thresholds") if "thresholds" in section else None
    target = section.get("calibrate_thresholds")
    if target is not None:
        if isinstance(target, list):
            target = _eval_numbers(section, "calibrate_thresholds")
        elif isinstance(target, str) and target != "uniform":
            try:
                target = parse_fraction(target)
            except UsageError:
                raise UsageError(f"eval.calibrate_thresholds must be 'uniform', a list of per-exit "
                                 f"fractions or an MFlops budget, got {target!r}") from None
        elif isinstance(target, bool) or not isinstance(target, (str, int, float)):
            raise UsageError(f"eval.calibrate_thresholds must be 'uniform', a list of per-exit "
                             f"fractions or an MFlops budget, got {target!r}")
        if not has_val:
            raise UsageError("eval.calibrate_thresholds chooses the exit thresholds on the validation "
                             "split, but data.val_size is 0; give data.val_size > 0 or fixed "
                             "eval.thresholds")
    out["calibrate_thresholds"] = target
    if model is not None:
        from .eval_cmd import is_multi_exit

        if not is_multi_exit(model):
            raise UsageError(f"eval.suite multi_exit needs a model with early exits, and "
                             f"{type(model).__name__} has one output; build it with "
                             "model.options.exits: true, or drop eval.suite")
        n = model.num_exits
        valid = [f"branch{i + 1}" for i in range(n - 1)] + ["main", "average", "max-average", "random"]
        bad = [f for f in forms or [] if f not in valid]
        if bad:
            raise UsageError(f"eval.forms: unknown attack form(s) {bad}; valid: {', '.join(valid)}")
        if out["thresholds"] is not None and len(out["thresholds"]) != n - 1:
            raise UsageError(f"eval.thresholds: the model has {n} exits, so give {n - 1} "
                             f"thresholds, got {len(out['thresholds'])}")


def _is_randomized(model: Any) -> bool:
    """The model has noise at evaluation (EnResNet feature noise, FLOAT noisy weights)."""
    from robustdial.condition import dial_specs

    return "noise" in dial_specs(model)


def _with_eot(attacks: dict[str, Any], eot: dict[str, Any], samples: int | None,
              model: Any) -> dict[str, Any]:
    """``attacks`` plus their EOT versions (``<name>+eot<n>``) for a randomized model."""
    if samples is None or samples <= 1:
        return attacks
    if not _is_randomized(model):
        _log.warning("eval.eot_samples %d: %s has no noise at evaluation, so EOT equals the plain "
                     "attacks; EOT rows skipped", samples, type(model).__name__)
        return attacks
    return {**attacks, **{f"{name}+eot{samples}": a for name, a in eot.items()}}


def run_eval_section(model: Any, section: Mapping[str, Any], data_name: str,
                     data_dir: str | None, out_json: Path | None, *, val: Any = None,
                     download: bool = False, verify: bool = True) -> Any:
    """Evaluate on the test split as the recipe's ``eval`` section says; print the table.

    Dispatches on ``eval.suite`` (see the module docstring): none ->
    :func:`robustdial.evaluation.evaluate`; ``br_attack_suite`` ->
    :func:`robustdial.evaluation.br_suite.br_attack_suite` through ``evaluate``;
    ``multi_exit`` -> :func:`robustdial.evaluation.multi_exit.report`.
    ``val`` is the validation split (for ``calibrate_thresholds``). Writes
    ``out_json`` (``eval.json``): ``{"rows", "meta"}`` of an
    :class:`~robustdial.evaluation.EvalResult`, or the multi-exit report's
    fields, each with ``suite``, ``eps`` and provenance.

    Returns:
        The :class:`EvalResult` or :class:`MultiExitReport`.

    Raises:
        UsageError: the section is invalid (see :func:`check_eval_section`).
    """
    from robustdial.data import load_dataset

    plan = check_eval_section(section, model, has_val=val is not None)
    test = load_dataset(data_name, root=data_dir, split="test", download=download, verify=verify)
    if plan["suite"] == "multi_exit":
        return _run_multi_exit(model, plan, test, val, out_json)

    from robustdial.condition import sweep
    from robustdial.evaluation import evaluate

    eps, n_eot = plan["eps"], plan["eot_samples"]
    if plan["suite"] == "br_attack_suite":
        from robustdial.evaluation.br_suite import br_attack_suite

        kw = {"pgd": plan["pgd"], "cw": plan["cw"]}
        attacks = _with_eot(br_attack_suite(eps, **kw), (br_attack_suite(eps, eot_samples=n_eot, **kw)
                                                         if n_eot and n_eot > 1 else {}), n_eot, model)
    else:
        from robustdial.evaluation.randomized import EOT

        attacks = plan["attacks"]
        if not attacks:
            _log.warning("eval section has no 'attacks' list; reporting clean accuracy only")
        eot = {k: EOT(a, samples=n_eot) for k, a in attacks.items()} if n_eot and n_eot > 1 else {}
        attacks = _with_eot(attacks, eot, n_eot, model)
    conditions = sweep(plan["conditions"]) if plan["conditions"] else None
    result = evaluate(model, test, attacks, conditions, batch_size=plan["batch_size"],
                      max_samples=plan["max_samples"], seed=plan["seed"])
    result.meta.update({"eps": eps, "suite": plan["suite"] or "attacks",
                        "attacks": {k: repr(a) for k, a in attacks.items()},
                        "eot_samples": n_eot})
    print(f"test split, ε = {eps:.5g} (L∞, [0, 1] scale)"
          + (f", {plan['suite']}" if plan["suite"] else ""))
    print(result.to_table())
    if plan["sparsity"]:
        from robustdial.compress import format_sparsity_table, sparsity_report

        try:
            rows = sparsity_report(model)
        except ValueError as exc:
            raise UsageError(f"eval.sparsity: {exc}") from None
        result.meta["sparsity"] = rows
        print(format_sparsity_table(rows))
    if out_json is not None:
        result.to_json(out_json)
    return result


def _run_multi_exit(model: Any, plan: Mapping[str, Any], test: Any, val: Any,
                    out_json: Path | None) -> Any:
    import json

    from robustdial.evaluation.multi_exit import report

    thresholds, source = plan["thresholds"], "eval.thresholds" if plan["thresholds"] else "the model's"
    if plan["calibrate_thresholds"] is not None:
        from robustdial.models.early_exit import calibrate_thresholds

        thresholds = calibrate_thresholds(model, val, target=plan["calibrate_thresholds"],
                                          batch_size=plan["batch_size"], store=False)
        source = f"calibrated on the validation split ({plan['calibrate_thresholds']!r})"
    rep = report(model, test, eps=plan["eps"], alpha=plan["alpha"], steps=plan["steps"],
                 attacks=list(plan["attacks"]) or None, thresholds=thresholds, forms=plan["forms"],
                 max_samples=plan["max_samples"], batch_size=plan["batch_size"], seed=plan["seed"])
    print(f"test split, ε = {plan['eps']:.5g} (L∞, [0, 1] scale), multi_exit; thresholds: {source}")
    print(rep.to_table())
    if plan["calibrate_thresholds"] is not None:
        run = Path(out_json).parent if out_json is not None else "DIR"
        print(f"the checkpoint keeps its stored thresholds; evaluate with these: robustdial eval {run} "
              "--thresholds " + ",".join(f"{t:.6g}" for t in rep.thresholds))
    if out_json is not None:
        body = {**rep.to_dict(), "suite": "multi_exit", "eps": plan["eps"], "thresholds_source": source,
                "provenance": rep.meta.get("provenance")}
        Path(out_json).write_text(json.dumps(body, indent=2, default=str) + "\n")
    return rep


# recipe sections that define the run; a resume must not change them
