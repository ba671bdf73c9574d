"""``fit(model, method, data, config)``: the one training loop.

Read top to bottom: set up (seeds, device, DDP, AMP, optimizer, schedule,
resume), then for each epoch: for each batch ``method.loss`` → backward →
clip → step → schedule step, with the weight-transform hooks around it; then
validation, checkpoints and the metrics log. Metrics stay on the device and
are synchronised only every ``log_every`` steps and at epoch ends.

Resume is exact on CPU: the data order and augmentation depend only on
(seed, epoch) (``BatchLoader``), the RNG states are saved with the epoch's
state together with every RNG and counter the method owns
(``method.state_dict()``, e.g. OAT's λ sampler) and the transforms' states,
and an interrupted epoch restarts from its saved position (the start of the
epoch after a crash, the interrupted step after SIGINT / SIGTERM).

Run directory: one process at a time (``out_dir/.lock``, see
:class:`~robustdial.engine.rundir.RunDir`); a directory that already holds a
run is refused unless the run resumes it (``resume``) or replaces it
(``overwrite``). A resume is checked against the stored run (model, method
and its settings, data set) before anything is written.
"""
from __future__ import annotations

import contextlib

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustdial.data import BatchLoader, CropFlip, ImageData
from robustdial.utils import seed_everything

from . import checkpoint as ckpt
from ._loop import (JsonlLog, MetricSums, SignalCatcher, StepInfo, autocast_factory, call_hooks,
                    check_finite, maybe_progress)
from .config import FitConfig
from .distributed import any_rank, init_distributed, resolve_device, shutdown, wrap_ddp
from .optim import build_optimizer, build_scheduler
from .rundir import RunDir, RunDirError
from .validate import validate

__all__ = ["fit", "FitResult"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model with its final weights (the plain module, not a
            DDP / compiled wrapper). The best-on-validation weights are in
            ``out_dir/best`` (load with :func:`robustdial.engine.load`).
        history: every record written to ``metrics.jsonl`` (train and epoch rows).
        best_metric: best value of ``config.select`` on the validation split
            (``None`` without validation or with ``select="last"``).
        out_dir: the run directory, or ``None``.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_metric: float | None
    out_dir: Path | None


def _split_data(data: Any) -> tuple[ImageData, ImageData | None]:
    if isinstance(data, ImageData):
        return data, None
    if isinstance(data, Mapping):
        unknown = set(data) - {"train", "val"}
        if "train" not in data or unknown:
            raise ValueError(f"data dict needs key 'train' and optionally 'val'; got keys {sorted(data)}")
        train, val = data["train"], data.get("val")
    elif isinstance(data, Sequence) and len(data) == 2:
        train, val = data
    else:
        raise TypeError("data must be (train, val), {'train': ..., 'val': ...} or a train ImageData; "
                        f"got {type(data).__name__}")
    for name, d in (("train", train), ("val", val)):
        if d is not None and not isinstance(d, ImageData):
            raise TypeError(f"data[{name!r}] must be an ImageData (robustdial.data.load_dataset), "
                            f"got {type(d).__name__}")
    if getattr(val, "split", "") == "test":
        raise ValueError("the validation data is the test split; model selection must not see test data. "
                         "Pass load_dataset(name, split='val')")
    return train, val


def _resumes_into(cfg: FitConfig, out: Path) -> bool:
    """Whether this run continues the run stored in ``out`` (so ``out`` may hold files)."""
    if cfg.resume:
        return True
    if not cfg.resume_from:
        return False
    src = Path(cfg.resume_from).resolve()
    return src in (out.resolve(), (out / ckpt.TRAIN_STATE).resolve())


@contextlib.contextmanager
def _claim_run_dir(cfg: FitConfig, info: Any, run_dir: RunDir | None):
    """Hold ``cfg.out_dir`` for the run (main process); every rank fails if the main one cannot.

    ``run_dir``: the caller already holds the directory (main process only).
    """
    out = Path(cfg.out_dir) if cfg.out_dir else None
    with contextlib.ExitStack() as stack:
        error: Exception | None = None
        if run_dir is not None:
            if out is None or not run_dir.held or run_dir.path.resolve() != out.resolve():
                error = ValueError(f"run_dir must be a held RunDir of config.out_dir ({out}); got "
                                   f"{run_dir.path} ({'held' if run_dir.held else 'not held'}): use "
                                   "`with RunDir(out_dir) as run_dir: fit(..., run_dir=run_dir)`")
        elif out is not None and info.is_main:
            try:
                stack.enter_context(RunDir(out, resume=_resumes_into(cfg, out), overwrite=cfg.overwrite))
            except RunDirError as exc:
                error = exc
        if any_rank(error is not None, info, resolve_device(cfg.device, info)):
            raise error or RunDirError(f"{out}: the main process could not take the run directory")
        yield


def _diff(saved: Any, now: Any, key: str = "") -> list[str]:
    """``["attack.steps: 1 -> 2", …]``: where two JSON-like values differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(saved) | set(now), key=str):
            sub = f"{key}.{k}" if key else str(k)
            if k not in saved or k not in now:
                out.append(f"{sub}: {saved.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}")
            else:
                out += _diff(saved[k], now[k], sub)
        return out
    return [] if saved == now else [f"{key or 'value'}: {saved!r} -> {now!r}"]


def _check_same_run(saved: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a run with another model, method (or its settings) or data set."""
    for part, what in (("model", "model"), ("method", "method"), ("dataset", "training data")):
        if saved.get(part) is None or now.get(part) is None:
            continue  # not recorded (a state from an older robustdial, or a model without rd_spec)
        changed = _diff(saved[part], now[part])
        if changed:
            raise ckpt.CheckpointError(
                f"{path}: cannot resume, the {what} differs from the stored run's "
                f"({'; '.join(changed[:5])}); resume with the same {what}, or start a new run "
                "(another output directory, or overwrite the old one)")


def _resume_path(cfg: FitConfig) -> Path | None:
    if cfg.resume_from:
        path = Path(cfg.resume_from)
        path = path / ckpt.TRAIN_STATE if path.is_dir() else path
        if not path.is_file():
            raise ckpt.CheckpointError(f"{path}: resume_from has no {ckpt.TRAIN_STATE}")
        return path
    if cfg.resume:
        if not cfg.out_dir:
            raise ValueError("resume=True needs out_dir (or pass resume_from=<run dir>)")
        path = Path(cfg.out_dir) / ckpt.TRAIN_STATE
        if path.is_file():
            return path
        _log.info("resume=True but %s does not exist yet: starting from scratch", path)
    return None


_RESUME_KEYS = ("epochs", "iterations", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
                "schedule", "milestones", "gamma", "seed", "augment", "amp", "grad_clip")


def _warn_config_changes(saved: Mapping[str, Any], cfg: FitConfig) -> None:
    """A resumed run with other hyper-parameters is no longer the run it resumes: say so."""
    now = cfg.to_dict()
    changed = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in _RESUME_KEYS if k in saved and saved[k] != now[k]]
    if changed:
        _log.warning("resuming with changed settings (%s); the result will differ from an "
                     "uninterrupted run", "; ".join(changed))


def fit(model: nn.Module, method: Any, data: Any, config: FitConfig | Mapping[str, Any] | None = None,
        *, transforms: Sequence[Any] = (), callbacks: Sequence[Any] = (),
        run_dir: RunDir | None = None) -> FitResult:
    """Train ``model`` with ``method`` on ``data``.

    Args:
        model: any ``nn.Module`` mapping images in [0, 1] to logits.
        method: has ``loss(model, (x, y)) -> (loss, metrics)`` and ``config()``;
            ``state_dict()`` / ``load_state_dict(d)`` (its RNGs and counters) are
            saved with the training state and restored on resume.
        data: ``(train, val)`` / ``{"train": …, "val": …}`` of ImageData (val may be None).
        config: a :class:`FitConfig` or a dict for :meth:`FitConfig.from_dict`.
        transforms: weight transforms with any of ``on_train_start(model, opt)``,
            ``before_forward(model)``, ``after_backward(model)``,
            ``after_step(model, opt)``, ``on_epoch_end(epoch, model, opt)``,
            ``state_dict()`` / ``load_state_dict(d)``.
        callbacks: objects with any of ``on_train_start(info)`` (after the resume,
            before the first step), ``on_step_end(info)``, ``on_epoch_end(info)``
            and ``on_train_end(info)`` (after the last step)
            (:class:`~robustdial.engine._loop.StepInfo`).
        run_dir: a held :class:`~robustdial.engine.rundir.RunDir` of
            ``config.out_dir`` when the caller took the directory itself (the
            ``train`` CLI, to write its recipe under the same lock); ``None``:
            ``fit`` takes it for the run.

    Returns:
        :class:`FitResult`.

    Raises:
        RunDirError: ``out_dir`` is used by another process, or holds a run and
            neither ``resume`` nor ``overwrite`` is set.
        CheckpointError: the run to resume does not fit (model, optimizer,
            method or its settings, data set); nothing was written.
    """
    cfg = config if isinstance(config, FitConfig) else FitConfig.from_dict(config)
    train, val = _split_data(data)
    info = init_distributed(cfg.device)
    try:
        with _claim_run_dir(cfg, info, run_dir):
            result = _fit(model, method, train, val, cfg, info, list(transforms), list(callbacks))
    except BaseException:
        shutdown(info, clean=False)
        raise
    shutdown(info)
    return result


def _fit(model, method, train, val, cfg, info, transforms, callbacks) -> FitResult:  # noqa: C901
    device = resolve_device(cfg.device, info)
    main = info.is_main
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
    log = JsonlLog(out / "metrics.jsonl" if out is not None and main else None)
    seed_everything(cfg.seed + info.rank)  # per-rank attack noise; weights are broadcast by DDP

    # --- model, data, optimizer, schedule ------------------------------------
    raw = model.to(device)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} is the global batch; it must be divisible by "
                         f"the number of processes ({info.world_size})")
    augment = CropFlip(**cfg.augment) if isinstance(cfg.augment, Mapping) else cfg.augment  # from YAML
    loader = BatchLoader(train, cfg.batch_size // info.world_size, shuffle=True, augment=augment,
                         device=device, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    steps_per_epoch = len(loader)
    total_steps = cfg.iterations if cfg.by_iterations else cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    milestones = cfg.milestones if cfg.by_iterations else [m * steps_per_epoch for m in cfg.milestones]
    optimizer = build_optimizer(raw, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps, milestones, cfg.gamma)
    autocast = autocast_factory(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    val_attack = None
    if cfg.val_attack:
        from robustdial.attacks import parse_attack

        val_attack = parse_attack(cfg.val_attack, cfg.val_eps)
    if val is not None:
        val = (val.subset(cfg.max_val_samples) if cfg.max_val_samples else val).to(device)  # once
    select = cfg.select if val is not None else "last"
    if val is None and cfg.select != "last":
        _log.warning("no validation data: select=%r falls back to 'last'", cfg.select)
    call_hooks(transforms, "on_train_start", raw, optimizer)
    # What makes this run this run; a resume must match it. Taken before any
    # callback runs (EpsWarmup shrinks the attack's ε only from on_train_start).
    run_info = {"method": method.config() if hasattr(method, "config") else type(method).__name__,
                "dataset": {"name": train.name, "splits": {"train": len(train), "val": len(val or ())}},
                "seed": cfg.seed, "fit_config": cfg.to_dict()}
    identity = ckpt._jsonable({"model": getattr(raw, "rd_spec", None), "method": run_info["method"],
                              "dataset": {"name": train.name, "n_train": len(train)}})

    # --- resume ----------------------------------------------------------------
    start_epoch, skip, step, best = 0, 0, 0, None
    history: list[dict[str, Any]] = []
    epoch_sums = MetricSums(device)
    state_path = _resume_path(cfg)
    if state_path is not None:
        state = ckpt.load_train_state(state_path)  # CPU: RNG states must stay CPU tensors
        _check_same_run(state.get("run") or {}, identity, state_path)  # before anything is written
        try:
            raw.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"{state_path}: does not fit this model/optimizer: {exc}") from None
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        for t, s in zip(transforms, state.get("transforms") or [None] * len(transforms), strict=False):
            if s is not None and hasattr(t, "load_state_dict"):
                t.load_state_dict(s)
        if hasattr(method, "load_state_dict"):
            if state.get("method_state") is not None:
                method.load_state_dict(state["method_state"])
            elif hasattr(method, "state_dict") and method.state_dict():
                _log.warning("%s holds no method state (written by an older robustdial): %s's own "
                             "RNGs restart, so the resumed run differs from an uninterrupted one",
                             state_path, type(method).__name__)
        start_epoch, skip, step = state["epoch"], state["epoch_step"], state["step"]
        best, history = state.get("best_metric"), list(state.get("history") or [])
        epoch_sums.load(state.get("epoch_sums") or {})
        ckpt.set_rng_state_plain(state["rng"])
        _warn_config_changes(state.get("config") or {}, cfg)
        log.truncate_after(step)
        _log.info("resumed from %s at epoch %d, step %d", state_path, start_epoch, step)
    elif cfg.resume:
        log.truncate_after(0)  # a run that died before its first saved state: its rows are void

    net = wrap_ddp(raw, info, device, find_unused_parameters=cfg.find_unused_parameters)
    if cfg.compile:
        net = torch.compile(net)

    def train_state(epoch: int, epoch_step: int) -> dict[str, Any]:
        return {"epoch": epoch, "epoch_step": epoch_step, "step": step, "model": raw.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": ckpt.rng_state_plain(), "best_metric": best, "history": history,
                "transforms": [t.state_dict() if hasattr(t, "state_dict") else None for t in transforms],
                "method_state": method.state_dict() if hasattr(method, "state_dict") else None,
                "epoch_sums": epoch_sums.state(), "loader_epoch": epoch, "config": cfg.to_dict(),
                "run": identity}

    def record(row: dict[str, Any]) -> None:
        history.append(row)
        log.write(row)

    show = cfg.progress if cfg.progress is not None else (main and sys.stderr.isatty())
    window = MetricSums(device)
    _log.info("training %d steps (%d epochs × %d steps/epoch, global batch %d, %d process(es)) on %s",
              total_steps, epochs, steps_per_epoch, cfg.batch_size, info.world_size, device)

    call_hooks(callbacks, "on_train_start", StepInfo(start_epoch, step, skip, raw, optimizer, None, main))

    # --- the loop ---------------------------------------------------------------
    with SignalCatcher() as signals, maybe_progress(show and main, total_steps, step) as bar:
        for epoch in range(start_epoch, epochs):
            loader.set_epoch(epoch)
            if skip == 0:
                epoch_sums.reset()
            net.train()
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(loader):
                if i < skip:  # resuming mid-epoch: same batches, already trained on
                    continue
                if step >= total_steps:
                    break
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                call_hooks(transforms, "before_forward", raw)
                with autocast():
                    loss, metrics = method.loss(net, (x, y))
                (scaler.scale(loss) if scaler is not None else loss).backward()
                call_hooks(transforms, "after_backward", raw)
                if cfg.grad_clip is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                call_hooks(transforms, "after_step", raw, optimizer)
                step += 1
                values = {"loss": loss.detach(), **metrics}
                window.add(values)
                epoch_sums.add(values)
                bar.update(1)
                row = None
                if step % cfg.log_every == 0:  # host sync point
                    row = {"type": "train", "epoch": epoch, "step": step,
                           "lr": optimizer.param_groups[0]["lr"], **window.means(info)}
                    window.reset()
                    check_finite(row, step)
                    record(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                call_hooks(callbacks, "on_step_end", StepInfo(epoch, step, i + 1, raw, optimizer, row, main))
                stop = signals.signum is not None
                if info.distributed and row is not None:  # every rank stops at the same step
                    stop = any_rank(stop, info, device)
                if stop and (not info.distributed or row is not None):
                    if main and out is not None:
                        ckpt.save_train_state(out / ckpt.TRAIN_STATE, train_state(epoch, i + 1))
                        _log.warning("saved training state at epoch %d, step %d to %s", epoch, step, out)
                    signals.reraise()
            skip = 0

            # --- end of epoch: hooks, validation, checkpoints ---------------------
            call_hooks(transforms, "on_epoch_end", epoch, raw, optimizer)
            last_epoch = epoch == epochs - 1
            row = {"type": "epoch", "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                   **epoch_sums.means(info), "epoch_time_s": time.perf_counter() - t0}
            check_finite(row, step)
            # Weight transforms that train on a relaxed view (BinaryRelax) expose the
            # deployable weights through ``applied``: validate and export those.
            deploy = contextlib.ExitStack()
            for t in transforms:
                if hasattr(t, "applied"):
                    deploy.enter_context(t.applied(raw))
            with deploy:
                if val is not None and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
                    row.update(validate(raw, method, val, device=device, info=info, attack=val_attack,
                                        batch_size=cfg.val_batch_size or cfg.batch_size, seed=cfg.seed,
                                        autocast=autocast, channels_last=cfg.channels_last))
                if main and out is not None:
                    improved_now = (select != "last" and row.get(select) is not None
                                    and (best is None or row[select] > best))
                    meta = {**run_info, "metrics": row, "epoch": epoch + 1, "step": step}
                    ckpt.save(raw, out / "last", meta)
                    if improved_now:
                        ckpt.save(raw, out / "best", {**meta, "selected_by": select})
            improved = select != "last" and row.get(select) is not None and (best is None or row[select] > best)
            if improved:
                best = row[select]
            record(row)
            _log.info("epoch %d/%d  %s", epoch + 1, epochs,
                      "  ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
            if main and out is not None:
                ckpt.save_train_state(out / ckpt.TRAIN_STATE, train_state(epoch + 1, 0))
            call_hooks(callbacks, "on_epoch_end", StepInfo(epoch, step, steps_per_epoch, raw, optimizer, row,
                                                           main))
            if any_rank(signals.signum is not None, info, device):  # state is saved: stop now
                signals.reraise()
    call_hooks(callbacks, "on_train_end", StepInfo(epochs - 1, step, 0, raw, optimizer, None, main))
    return FitResult(model=raw, history=history, best_metric=best, out_dir=out)
