"""``FitConfig``: every knob of the training loop, in one YAML-friendly dataclass.

``None`` means "the sensible default" (device: CUDA if available, else CPU;
progress bar: only on an interactive terminal and rank 0). Unknown keys in
:meth:`FitConfig.from_dict` raise and list the valid keys, so a typo in a recipe
fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["AMP_MODES", "ConfigError", "FitConfig", "SCHEDULES", "SELECT"]

SCHEDULES = ("cosine", "multistep", "constant", "cyclic")
SELECT = ("val_acc", "val_robust_acc", "last")
AMP_MODES = (None, "bf16", "fp16")


class ConfigError(ValueError):
    """A bad :class:`FitConfig` value; ``key`` names the field (``train.<key>`` in a recipe).

    Attributes:
        key: the field name, e.g. ``"lr"``.
        problem: what is wrong, e.g. ``"must be a number, got 'fast' (str)"``.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


# field -> accepted Python types ("number" = int or float, not bool); None allowed where listed.
_NUMBER = "number"
_TYPES: dict[str, tuple[Any, ...]] = {
    "epochs": (int,), "iterations": (int, None), "batch_size": (int,), "lr": (_NUMBER,),
    "momentum": (_NUMBER,), "nesterov": (bool,), "weight_decay": (_NUMBER,), "schedule": (str,),
    "milestones": (list,), "gamma": (_NUMBER,), "seed": (int,), "device": (str, None),
    "amp": (str, None), "channels_last": (bool,), "compile": (bool,), "out_dir": (str, None),
    "eval_every": (int,), "select": (str,), "val_attack": (str, None), "val_eps": (_NUMBER,),
    "max_val_samples": (int, None), "val_batch_size": (int, None), "log_every": (int,),
    "progress": (bool, None), "grad_clip": (_NUMBER, None), "resume": (bool,),
    "resume_from": (str, None), "overwrite": (bool,), "find_unused_parameters": (bool,),
}  # augment: a name, None, a CropFlip-like object or a YAML mapping (checked where it is used)
_NAMES = {int: "an int", bool: "true/false", str: "a string", list: "a list", _NUMBER: "a number",
          None: "null"}


def _is(value: Any, kind: Any) -> bool:
    if kind is None:
        return value is None
    if isinstance(value, bool):
        return kind is bool
    if kind is _NUMBER:
        return isinstance(value, numbers.Real)
    if kind is int:  # NumPy integers too; integral floats (3.0) are not ints
        return isinstance(value, numbers.Integral)
    return isinstance(value, kind)


def _number_from_text(value: Any) -> Any:
    """``"1e-3"`` (YAML 1.1 reads it as a string) and ``"8/255"`` as floats; anything else unchanged."""
    if isinstance(value, str):
        try:
            return _fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            return value
    return value


@dataclasses.dataclass
class FitConfig:
    """Settings of :func:`robustdial.engine.fit`.

    Attributes:
        epochs: passes over the training set (ignored when ``iterations`` is set).
        iterations: train for this many optimizer steps instead of ``epochs``;
            ``milestones`` are then counted in iterations.
        batch_size: global samples per step (split evenly over DDP ranks).
        lr: peak learning rate of SGD.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty on weights; never applied to BN parameters,
            biases, or parameters the model marks as no-decay.
        schedule: ``"cosine"`` (to 0 over the run), ``"multistep"`` (× ``gamma``
            at each milestone), ``"constant"`` or ``"cyclic"`` (one triangle
            peaking at 2/5 of the run, as in fast adversarial training);
            stepped every iteration.
        milestones: multistep boundaries in epochs (in iterations when
            training by ``iterations``).
        gamma: multistep decay factor.
        seed: seeds Python, NumPy, torch and the data order / augmentation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …; ``None`` = CUDA if
            available, else CPU. Under torchrun each rank uses ``cuda:LOCAL_RANK``.
        amp: ``None`` (fp32), ``"bf16"`` (autocast, CPU or GPU) or ``"fp16"``
            (CUDA only, with a GradScaler).
        channels_last: convert the model and batches to channels-last memory format.
        compile: wrap the model in ``torch.compile``.
        out_dir: where ``metrics.jsonl``, ``last/``, ``best/`` and
            ``train_state.pt`` go; ``None`` = nothing is written.
        augment: training augmentation (``"auto"`` = the dataset's default,
            ``"none"``, ``"crop_flip"`` …; see ``robustdial.data.batches``).
        eval_every: validate every this many epochs (and after the last one).
        select: which checkpoint ``best/`` holds: highest ``"val_acc"``,
            highest ``"val_robust_acc"`` (needs ``val_attack``) or ``"last"``.
            Always chosen on the validation split, never on test data.
        val_attack: attack spec for validation robust accuracy, e.g. ``"pgd-10"``
            (see ``robustdial.attacks.parse_attack``); ``None`` = clean only.
        val_eps: ε of ``val_attack`` on the [0, 1] scale (e.g. 8/255).
        max_val_samples: validate on at most this many (the first) samples.
        val_batch_size: batch size for validation (default ``batch_size``).
        log_every: write a training-metrics line every this many steps.
        progress: tqdm progress bar; ``None`` = only on a TTY and on rank 0.
        grad_clip: clip the global gradient L2 norm to this value.
        resume: continue from ``out_dir/train_state.pt`` if it exists.
        resume_from: continue from this run directory's ``train_state.pt``.
        overwrite: ``out_dir`` may hold an old run: delete it first (only a run's
            own files; see :class:`~robustdial.engine.rundir.RunDir`). Without
            ``resume`` or ``overwrite`` a non-empty ``out_dir`` is refused.
        find_unused_parameters: passed to DistributedDataParallel (needed when
            some parameters get no gradient in a step, e.g. per-sample BN routing).
    """

    epochs: int = 1
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list[int] = dataclasses.field(default_factory=list)
    gamma: float = 0.1
    seed: int = 0
    device: str | None = None
    amp: str | None = None
    channels_last: bool = False
    compile: bool = False
    out_dir: str | None = None
    augment: str | None = "auto"
    eval_every: int = 1
    select: str = "val_acc"
    val_attack: str | None = None
    val_eps: float = 8 / 255
    max_val_samples: int | None = None
    val_batch_size: int | None = None
    log_every: int = 50
    progress: bool | None = None
    grad_clip: float | None = None
    resume: bool = False
    resume_from: str | None = None
    overwrite: bool = False
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        for name, kinds in _TYPES.items():
            if _NUMBER in kinds:
                setattr(self, name, _number_from_text(getattr(self, name)))
        if isinstance(self.milestones, tuple):
            self.milestones = list(self.milestones)
        self.check_types()
        for name, kinds in _TYPES.items():  # NumPy scalars -> plain Python (YAML / JSON-able)
            value = getattr(self, name)
            if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float)):
                setattr(self, name, int(value) if isinstance(value, numbers.Integral) else float(value))
        self.milestones = [int(m) for m in self.milestones]
        self.validate()

    def check_types(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value has the wrong type."""
        for name, kinds in _TYPES.items():
            value = getattr(self, name)
            if not any(_is(value, k) for k in kinds):
                expected = " or ".join(_NAMES[k] for k in kinds)
                raise ConfigError(name, f"must be {expected}, got {value!r} ({type(value).__name__})")
        bad = [m for m in self.milestones if not _is(m, int)]
        if bad:
            raise ConfigError("milestones", f"must be a list of ints, got {self.milestones!r}")

    def validate(self) -> None:
        """Raise :class:`ConfigError` (a ``ValueError``) naming the bad field and its valid values."""
        if self.iterations is None and self.epochs < 1:
            raise ConfigError("epochs", f"must be a positive int, got {self.epochs!r} "
                                        "(or set iterations=N to train by steps)")
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError("iterations", f"must be a positive int or None, got {self.iterations!r}")
        for name in ("batch_size", "eval_every", "log_every", "max_val_samples", "val_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be a positive int, got {value!r}")
        for name in ("lr", "weight_decay", "momentum", "gamma"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.milestones != sorted(self.milestones):
            raise ConfigError("milestones", f"must be increasing, got {self.milestones}")
        if self.select not in SELECT:
            raise ConfigError("select", f"must be one of {SELECT}, got {self.select!r}")
        if self.select == "val_robust_acc" and not self.val_attack:
            raise ConfigError("select", "= 'val_robust_acc' needs val_attack (e.g. 'pgd-10') and val_eps")
        if self.amp not in AMP_MODES:
            raise ConfigError("amp", f"must be one of {AMP_MODES}, got {self.amp!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("grad_clip", f"must be > 0 or None, got {self.grad_clip}")
        if self.resume and self.overwrite:
            raise ConfigError("overwrite", "and resume exclude each other: resume continues the run in "
                                           "out_dir, overwrite deletes it")

    @property
    def by_iterations(self) -> bool:
        return self.iterations is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FitConfig:
        """Build from a (YAML) mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(k for k in d if k not in valid)
        if unknown:
            raise ValueError(f"unknown FitConfig key(s) {unknown}; valid keys: {', '.join(valid)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict; ``FitConfig.from_dict(c.to_dict()) == c``."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> FitConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _fraction(text: str) -> float:
    """``"8/255"`` -> 0.03137…; ``"0.3"`` -> 0.3."""
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)
