"""``robustdial train CONFIG.yaml``: build model, data and method from a recipe and fit.

Recipe sections (see ``configs/*.yaml``)::

    model:  {name: small_cnn, options: {...}}          # create_model(name, **options)
    data:   {name: mnist, val_size: 5000, download: false, max_train_samples: null}
    method: {name: pgd_at, lam: 1.0, attack: {name: pgd, eps: 0.3, alpha: 0.01, steps: 40}}
    train:  {epochs: 10, batch_size: 128, lr: 0.1, ...}  # FitConfig fields
    eval:   {attacks: [fgsm, pgd-20], eps: 0.3, max_samples: null}   # run on the test split
    transforms: [{name: ..., ...}]                      # optional weight transforms

``--set train.epochs=3 --set method.attack.steps=10`` overrides any key
(YAML-typed values; fractions such as 8/255 accepted). The run directory gets
the engine's ``best/`` (selected on the validation split) and ``last/``
checkpoints, ``metrics.jsonl``, ``train_state.pt``, ``recipe.yaml`` (the
resolved recipe) and ``eval.json`` (test split) when the recipe has an
``eval`` section. ``robustdial eval DIR`` picks ``DIR/best`` (else ``last``).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._common import (UsageError, apply_overrides, check_recipe, load_recipe, parse_fraction,
                      resolve_checkpoint)

__all__ = ["Components", "add_parser", "build_components", "load_data", "normalize_recipe", "run",
           "run_eval_section"]

_log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model from a YAML recipe",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML recipe (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its train_state.pt")
    p.add_argument("--data-dir", default=None,
                   help="dataset root (default $ROBUSTDIAL_DATA, else ~/.cache/robustdial/data)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official dataset files (md5-checked) into the data root if missing")
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
    from robustdial.engine import FitConfig
    from robustdial.methods import build_method
    from robustdial.models import create_model
    from robustdial.utils import seed_everything

    recipe = normalize_recipe(recipe)
    check_recipe(recipe)
    info = dataset_info(recipe["data"]["name"])
    name, options = _model_options(recipe["model"], info)
    # Initial weights come from the run's seed, so a recipe reproduces from scratch.
    seed_everything(int((recipe.get("train") or {}).get("seed", 0)))
    model = create_model(name, **options)
    method_section = dict(recipe.get("method") or {"name": "standard"})
    if "name" not in method_section:
        raise UsageError("section 'method' needs a name: standard, pgd_at, trades, tradeoff, …")
    method = build_method(method_section.pop("name"), **method_section)
    train = dict(recipe.get("train") or {})
    if out_dir is not None:
        train["out_dir"] = str(out_dir)
    if device is not None:
        train["device"] = device
    if resume_from is not None:
        train["resume_from"] = str(resume_from)
    if "val_eps" in train:
        train["val_eps"] = parse_fraction(train["val_eps"])
    data_section = recipe["data"]
    if data_section.get("max_val_samples") is not None:
        train.setdefault("max_val_samples", int(data_section["max_val_samples"]))
    fit_config = FitConfig.from_dict(train)
    return Components(model, method, fit_config, _transforms(recipe.get("transforms")), info,
                      dict(recipe))


_DATA_KEYS = ("name", "val_size", "download", "seed", "max_train_samples", "max_val_samples")


def load_data(section: Mapping[str, Any], data_dir: str | None) -> tuple[Any, Any]:
    """(train, val) splits of the recipe's dataset (val may be ``None`` with ``val_size: 0``)."""
    from robustdial.data import load_dataset

    unknown = sorted(set(section) - set(_DATA_KEYS))
    if unknown:
        raise UsageError(f"section 'data': unknown key(s) {unknown}; valid: {', '.join(_DATA_KEYS)}")
    kw = {"root": data_dir, "download": bool(section.get("download", False)),
          "val_size": section.get("val_size"), "seed": int(section.get("seed", 0))}
    train = load_dataset(section["name"], split="train", **kw)
    val = None if section.get("val_size") == 0 else load_dataset(section["name"], split="val", **kw)
    if section.get("max_train_samples"):
        train = train.subset(int(section["max_train_samples"]))
    return train, val


def run_eval_section(model: Any, section: Mapping[str, Any], data_name: str,
                     data_dir: str | None, out_json: Path | None) -> Any:
    """Evaluate on the test split with the recipe's ``eval`` attacks; print the table."""
    from robustdial.attacks import parse_attack
    from robustdial.data import load_dataset
    from robustdial.evaluation import evaluate

    eps = parse_fraction(section.get("eps", 8 / 255))
    specs = list(section.get("attacks") or [])
    attacks = {spec: parse_attack(spec, eps=eps) for spec in specs}
    if not specs:
        _log.warning("eval section has no 'attacks' list; reporting clean accuracy only")
    conditions = section.get("conditions")
    if isinstance(conditions, Mapping):  # {lam: [0, 1], width: [...]} -> grid
        from robustdial.condition import sweep

        conditions = sweep({k: v if isinstance(v, list) else [v] for k, v in conditions.items()})
    test = load_dataset(data_name, root=data_dir, split="test")
    result = evaluate(model, test, attacks, conditions,
                      batch_size=int(section.get("batch_size", 256)),
                      max_samples=section.get("max_samples"))
    result.meta["eps"] = eps
    print(f"test split, ε = {eps:.5g} (L∞, [0, 1] scale)")
    print(result.to_table())
    if out_json is not None:
        result.to_json(out_json)
    return result


def run(args: argparse.Namespace) -> int:
    from robustdial.engine import fit, load

    recipe = normalize_recipe(apply_overrides(load_recipe(args.config), args.overrides))
    if getattr(args, "download", False):
        recipe["data"] = {**recipe["data"], "download": True}
    out = Path(args.out or args.resume or Path("runs") / Path(args.config).stem)
    comps = build_components(recipe, out_dir=str(out), device=args.device, resume_from=args.resume)
    train, val = load_data(recipe["data"], args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    _log.info("training %s with %s on %s (%d train / %s val) -> %s", recipe["model"]["name"],
              comps.method, train.name, len(train), len(val) if val is not None else 0, out)
    result = fit(comps.model, comps.method, data=(train, val), config=comps.fit_config,
                 transforms=comps.transforms)
    ckpt = resolve_checkpoint(out)  # best/ (selected on the validation split), else last/
    print(f"checkpoint: {ckpt}" + (f"  (best {comps.fit_config.select} = {result.best_metric:.4f})"
                                   if result.best_metric is not None else ""))
    if recipe.get("eval") and not args.no_eval:
        model = load(ckpt, device=next(result.model.parameters()).device)
        run_eval_section(model, recipe["eval"], train.name, args.data_dir, out / "eval.json")
    return 0
