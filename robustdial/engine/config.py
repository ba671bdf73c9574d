"""``FitConfig``: every knob of the training loop, in one YAML-friendly dataclass.

``None`` means "the sensible default" (device: CUDA if available, else CPU;
progress bar: only on an interactive terminal and rank 0). Unknown keys in
:meth:`FitConfig.from_dict` raise and list the valid keys, so a typo in a recipe
fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["FitConfig", "SCHEDULES", "SELECT", "AMP_MODES"]

SCHEDULES = ("cosine", "multistep", "constant", "cyclic")
SELECT = ("val_acc", "val_robust_acc", "last")
AMP_MODES = (None, "bf16", "fp16")


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
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        self.milestones = [int(m) for m in self.milestones]
        if isinstance(self.val_eps, str):
            self.val_eps = _fraction(self.val_eps)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and its valid values."""
        if self.iterations is None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r} "
                             "(or set iterations=N to train by steps)")
        if self.iterations is not None and int(self.iterations) < 1:
            raise ValueError(f"iterations must be a positive int or None, got {self.iterations!r}")
        for name in ("batch_size", "eval_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if self.select == "val_robust_acc" and not self.val_attack:
            raise ValueError("select='val_robust_acc' needs val_attack (e.g. 'pgd-10') and val_eps")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.max_val_samples is not None and self.max_val_samples < 1:
            raise ValueError(f"max_val_samples must be a positive int or None, got {self.max_val_samples}")

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
