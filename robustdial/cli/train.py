"""``robustdial train CONFIG.yaml``: build model, data and method from a recipe and fit.

Recipe sections (see ``configs/*.yaml``)::

    model:  {name: small_cnn, options: {...}}          # create_model(name, **options)
    data:   {name: mnist, val_size: 5000, download: false, max_train_samples: null}
    method: {name: pgd_at, lam: 1.0, attack: {name: pgd, eps: 0.3, alpha: 0.01, steps: 40}}
    train:  {epochs: 10, batch_size: 128, lr: 0.1, ...}  # FitConfig fields
    eval:   {attacks: [fgsm, pgd-20], eps: 0.3, max_samples: null}   # run on the test split
    transforms: [{name: ..., ...}]                      # optional weight transforms

The ``eval`` section picks one of three suites (``suite:``); every key takes
effect, and a key the suite does not read is an error naming it, checked
before training starts:

* no ``suite`` (``robustdial.evaluate``): ``attacks`` (specs, e.g.
  ``pgd-20:alpha=2/255``), ``conditions`` (``{lam: [0, 1], width: [...]}``,
  a grid), ``eot_samples`` (randomized models: each attack also as EOT over n
  noisy forwards, rows ``<spec>+eot<n>``), ``sparsity`` (weight/channel
  sparsity of the quantized layers);
* ``suite: br_attack_suite`` (``robustdial.evaluation.br_suite``, Binary-Relax
  §3.1: FGSM, IFGSM-20 α 1/255, C&W-L2, PGD-20): ``conditions``,
  ``eot_samples``, ``sparsity``, ``cw`` and ``pgd`` (include C&W / PGD-20,
  default true);
* ``suite: multi_exit`` (``robustdial.evaluation.multi_exit.report``, RDI-Nets
  Tables 2–4; a multi-exit model): ``alpha``, ``steps`` (the PGD attacker) or
  ``attacks`` (other attackers), ``forms``, ``thresholds`` or
  ``calibrate_thresholds`` (``uniform``, per-exit fractions or an MFlops
  budget, chosen on the validation split).

Every suite takes ``eps``, ``batch_size``, ``max_samples`` and ``seed``.

``--set train.epochs=3 --set method.attack.steps=10`` overrides any key
(YAML-typed values; fractions such as 8/255 accepted). Every value is
type-checked by its key (``train.lr: fast`` fails naming ``train.lr``). The run
directory gets the engine's ``best/`` (selected on the validation split) and
``last/`` checkpoints, ``metrics.jsonl``, ``train_state.pt``, ``recipe.yaml``
(the resolved recipe) and ``eval.json`` (test split) when the recipe has an
``eval`` section. ``robustdial eval DIR`` picks ``DIR/best`` (else ``last``).

Run directories: one training process per directory (``DIR/.lock``; a second
process fails at once, naming the first one's pid). A directory that already
holds a run is refused unless ``--resume DIR`` continues it or ``--overwrite``
deletes it first. ``--resume`` checks the recipe against the run's
``recipe.yaml`` (model, data, method, transforms must match; ``train`` changes
are allowed with a warning) and the stored training state before anything is
written.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._common import (UsageError, apply_overrides, check_recipe, load_recipe, parse_device, parse_eps,
                      parse_fraction, resolve_checkpoint)

__all__ = ["Components", "EVAL_KEYS", "EVAL_SUITES", "add_parser", "build_components",
           "check_data_section", "check_eval_section", "check_resume_recipe", "load_data",
           "normalize_recipe", "run", "run_eval_section"]

_log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model from a YAML recipe",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML recipe (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its train_state.pt (same recipe)")
    p.add_argument("--overwrite", action="store_true",
                   help="the --out directory holds an old run: delete it and start again")
    p.add_argument("--data-dir", default=None,
                   help="dataset root (default $ROBUSTDIAL_DATA, else ~/.cache/robustdial/data)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official dataset files (md5-checked) into the data root if missing")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip checking the dataset files against the published md5s")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: CUDA if available)")
    p.add_argument("--no-eval", action="store_true", help="skip the recipe's test-set evaluation")
    return p


@dataclasses.dataclass
class Components:
    """Everything a recipe builds before any data is read."""

    model: Any
    method: Any
    fit_config: Any
    transforms: list[Any]
    data_info: Any
    recipe: dict[str, Any]


def _model_options(section: Mapping[str, Any], info: Any) -> tuple[str, dict[str, Any]]:
    from robustdial.models import model_entrypoint

    section = dict(section)
    name = section.pop("name")
    options = dict(section.pop("options", None) or {})
    options.update(section)  # also accept options written next to the name
    fn = model_entrypoint(name)
    params = inspect.signature(fn).parameters
    options.setdefault("num_classes", info.num_classes)
    if "in_channels" in params and "in_channels" not in options:
        options["in_channels"] = info.channels
    return name, options


def _transforms(items: Any) -> list[Any]:
    """Weight transforms from ``[{name: BinaryRelax, scheme: ternary, ...}, ...]``."""
    if not items:
        return []
    if not isinstance(items, list):
        raise UsageError("section 'transforms' must be a list of {name: ..., ...} mappings")
    import robustdial.compress as compress

    available = [n for n in compress.__all__ if n[:1].isupper() and n != "SCHEMES"]
    out = []
    for item in items:
        kw = dict(item)
        kw.update(kw.pop("kwargs", None) or {})
        name = kw.pop("name", None)
        if name in available:  # class name, e.g. BinaryRelax
            out.append(getattr(compress, name)(**kw))
            continue
        try:  # recipe name, e.g. sparse_momentum
            out.append(compress.build_transform(str(name), **kw))
        except ValueError:
            raise UsageError(f"unknown transform {name!r}; available: {', '.join(available)} "
                             "(or snake_case: sparse_momentum, channel_prune, binary_relax, "
                             "binary_connect)") from None
    return out


def normalize_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the spelling variants used across ``configs/``.

    ``fit:`` for ``train:``; ``kwargs:`` next to ``name`` in ``model``
    (same as ``options``) and in ``method``; drops metadata keys
    (``paper``, ``table``, ``notes``, ``name``, ``description``).
    """
    out = {k: v for k, v in dict(recipe).items() if k not in _META_KEYS}
    if "fit" in out:
        if "train" in out:
            raise UsageError("the recipe has both 'fit' and 'train' sections; keep one")
        out["train"] = out.pop("fit")
    if isinstance(out.get("model"), dict):
        model = dict(out["model"])
        options = dict(model.pop("options", None) or {})
        options.update(model.pop("kwargs", None) or {})
        model["options"] = options
        out["model"] = model
    if isinstance(out.get("method"), dict) and "kwargs" in out["method"]:
        method = dict(out["method"])
        method.update(method.pop("kwargs") or {})
        out["method"] = method
    return out


_META_KEYS = ("paper", "table", "notes", "name", "description")


def build_components(recipe: Mapping[str, Any], *, out_dir: str | None = None,
                     device: str | None = None, resume_from: str | None = None) -> Components:
    """Build model, method, :class:`FitConfig` and transforms from a recipe (no data is read).

    Raises:
        UsageError / ValueError: an invalid recipe; the message names the key.
    """
    from robustdial.data import dataset_info
    from robustdial.methods import build_method
    from robustdial.models import create_model
    from robustdial.utils import seed_everything

    recipe = normalize_recipe(recipe)
    check_recipe(recipe)
    data_section = recipe["data"]
    check_data_section(data_section)
    train = dict(recipe.get("train") or {})
    if out_dir is not None:
        train["out_dir"] = str(out_dir)
    if device is not None:
        train["device"] = device
    if resume_from is not None:
        train["resume_from"] = str(resume_from)
    if data_section.get("max_val_samples") is not None:
        train.setdefault("max_val_samples", data_section["max_val_samples"])
    fit_config = _fit_config(train)  # type-checked by key before anything is built
    info = dataset_info(data_section["name"])
    name, options = _model_options(recipe["model"], info)
    # Initial weights come from the run's seed, so a recipe reproduces from scratch.
    seed_everything(fit_config.seed)
    model = create_model(name, **options)
    method_section = dict(recipe.get("method") or {"name": "standard"})
    if "name" not in method_section:
        raise UsageError("section 'method' needs a name: standard, pgd_at, trades, tradeoff, …")
    method = build_method(method_section.pop("name"), **method_section)
    return Components(model, method, fit_config, _transforms(recipe.get("transforms")), info,
                      dict(recipe))


def _fit_config(train: Mapping[str, Any]) -> Any:
    """``FitConfig`` from the ``train`` section; a bad value names its recipe key (``train.lr``)."""
    from robustdial.engine import FitConfig
    from robustdial.engine.config import ConfigError

    try:
        return FitConfig.from_dict(train)
    except ConfigError as exc:
        raise UsageError(f"train.{exc.key} {exc.problem}") from None


_DATA_KEYS = ("name", "val_size", "download", "seed", "max_train_samples", "max_val_samples")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_data_section(section: Mapping[str, Any]) -> None:
    """Unknown keys and values of the wrong type or range in ``data`` raise :class:`UsageError`."""
    unknown = sorted(set(section) - set(_DATA_KEYS))
    if unknown:
        raise UsageError(f"section 'data': unknown key(s) {unknown}; valid: {', '.join(_DATA_KEYS)}")

    def bad(key: str, expected: str) -> UsageError:
        value = section[key]
        return UsageError(f"data.{key} must be {expected}, got {value!r} ({type(value).__name__})")

    if not isinstance(section.get("name"), str):
        raise bad("name", "a dataset name (robustdial.data.list_datasets())")
    for key in ("max_train_samples", "max_val_samples"):
        value = section.get(key)
        if value is not None and (not _is_int(value) or value < 1):
            raise bad(key, "a positive int, or null for all samples")
    value = section.get("val_size")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                              or (isinstance(value, float) and value >= 1)):
        raise bad("val_size", "a count ≥ 0, a fraction in [0, 1), or null for the dataset's default")
    if "seed" in section and not _is_int(section["seed"]):
        raise bad("seed", "an int")
    if "download" in section and not isinstance(section["download"], bool):
        raise bad("download", "true/false")


def load_data(section: Mapping[str, Any], data_dir: str | None, *,
              verify: bool = True) -> tuple[Any, Any]:
    """(train, val) splits of the recipe's dataset (val may be ``None`` with ``val_size: 0``).

    ``verify=False`` skips the md5 check of the dataset files (``--no-verify``).
    """
    from robustdial.data import load_dataset

    check_data_section(section)
    kw = {"root": data_dir, "download": bool(section.get("download", False)),
          "val_size": section.get("val_size"), "seed": int(section.get("seed", 0)), "verify": verify}
    train = load_dataset(section["name"], split="train", **kw)
    val = None if section.get("val_size") == 0 else load_dataset(section["name"], split="val", **kw)
    if section.get("max_train_samples") is not None:
        train = train.subset(int(section["max_train_samples"]))
    return train, val


# ---------------------------------------------------------------------------------------------
# the eval section
# ---------------------------------------------------------------------------------------------
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
_RUN_SECTIONS = ("model", "data", "method", "transforms")
_DATA_FREE = ("download", "max_val_samples")  # data keys that do not change the training data


def _differences(saved: Any, now: Any, key: str) -> list[str]:
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out: list[str] = []
        for k in sorted(set(saved) | set(now), key=str):
            sub = f"{key}.{k}"
            if k not in saved or k not in now:
                out.append(f"{sub}: {saved.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}")
            else:
                out += _differences(saved[k], now[k], sub)
        return out
    return [] if saved == now else [f"{key}: {saved!r} -> {now!r}"]


def check_resume_recipe(run_dir: Path, recipe: Mapping[str, Any]) -> None:
    """Refuse ``--resume`` with a recipe whose model, data, method or transforms differ from the run's.

    Reads ``run_dir/recipe.yaml`` (nothing is written). ``train`` and ``eval``
    may change (``fit`` warns about changed training settings).

    Raises:
        UsageError: the differences, and how to resume with the run's own recipe.
    """
    stored = run_dir / "recipe.yaml"
    if not stored.is_file():
        return  # a library run, or one that died before training started: fit checks the state
    try:
        saved = normalize_recipe(yaml.safe_load(stored.read_text()) or {})
    except yaml.YAMLError as exc:
        raise UsageError(f"{stored}: invalid YAML ({exc}); cannot check the recipe to resume") from None
    changed: list[str] = []
    for section in _RUN_SECTIONS:
        a, b = saved.get(section), recipe.get(section)
        if section == "data":
            a = {k: v for k, v in (a or {}).items() if k not in _DATA_FREE}
            b = {k: v for k, v in (b or {}).items() if k not in _DATA_FREE}
        changed += _differences(a, b, section)
    if changed:
        shown = "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UsageError(f"--resume {run_dir}: the recipe differs from the run's {stored.name} ({shown}); "
                         f"resume with the run's own recipe (robustdial train {stored} --resume "
                         f"{run_dir}), or start a new run with another --out")


class _WriteRecipe:
    """``fit`` callback: write ``recipe.yaml`` once training starts (checks passed, under the lock)."""

    def __init__(self, path: Path, recipe: Mapping[str, Any]) -> None:
        self.path, self.recipe = path, dict(recipe)

    def on_train_start(self, info: Any) -> None:
        if not info.is_main:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.recipe, sort_keys=False))
        os.replace(tmp, self.path)


def run(args: argparse.Namespace) -> int:
    from robustdial.engine import fit, load
    from robustdial.engine.rundir import RunDir

    device = parse_device(getattr(args, "device", None))  # one clear line, before anything is read
    verify = bool(getattr(args, "verify", True))
    recipe = normalize_recipe(apply_overrides(load_recipe(args.config), args.overrides))
    if getattr(args, "download", False):
        recipe["data"] = {**recipe["data"], "download": True}
    overwrite = bool(getattr(args, "overwrite", False))
    if args.resume and overwrite:
        raise UsageError("--resume continues the run in DIR and --overwrite deletes it; give one")
    out = Path(args.out or args.resume or Path("runs") / Path(args.config).stem)
    comps = build_components(recipe, out_dir=str(out), device=None if device is None else str(device),
                             resume_from=args.resume)
    evaluates = bool(recipe.get("eval")) and not args.no_eval
    if evaluates:  # a bad eval section fails now, not after the training
        check_eval_section(recipe["eval"], comps.model, has_val=recipe["data"].get("val_size") != 0)
    resumes_here = args.resume is not None and Path(args.resume).resolve() == out.resolve()
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    claim = (RunDir(out, resume=resumes_here, overwrite=overwrite, how_to_resume=f"--resume {out}",
                    how_to_overwrite="--overwrite") if main_process else contextlib.nullcontext())
    with claim as run_dir:  # held until the evaluation below is written
        if args.resume:
            check_resume_recipe(Path(args.resume), recipe)
        train, val = load_data(recipe["data"], args.data_dir, verify=verify)
        _log.info("training %s with %s on %s (%d train / %s val) -> %s", recipe["model"]["name"],
                  comps.method, train.name, len(train), len(val) if val is not None else 0, out)
        result = fit(comps.model, comps.method, data=(train, val), config=comps.fit_config,
                     transforms=comps.transforms, callbacks=[_WriteRecipe(out / "recipe.yaml", recipe)],
                     run_dir=run_dir)
        ckpt = resolve_checkpoint(out)  # best/ (selected on the validation split), else last/
        print(f"checkpoint: {ckpt}" + (f"  (best {comps.fit_config.select} = {result.best_metric:.4f})"
                                       if result.best_metric is not None else ""))
        if evaluates:
            model = load(ckpt, device=next(result.model.parameters()).device)
            run_eval_section(model, recipe["eval"], train.name, args.data_dir, out / "eval.json",
                             val=val, download=bool(recipe["data"].get("download", False)),
                             verify=verify)
    return 0
