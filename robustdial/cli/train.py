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

from ._common import UsageError, apply_overrides, check_recipe, load_recipe, parse_device, resolve_checkpoint
from ._eval_section import EVAL_KEYS, EVAL_SUITES, check_eval_section, run_eval_section

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
