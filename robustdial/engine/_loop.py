"""Small pieces of the training loop: metric sums kept on device, signal capture, hooks, logs."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .distributed import DistInfo, all_reduce_mean

__all__ = ["MetricSums", "SignalCatcher", "StepInfo", "call_hooks", "JsonlLog", "autocast_factory"]

_log = logging.getLogger(__name__)


class MetricSums:
    """Running sums of per-step metrics, kept on device until :meth:`means` (one host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: Mapping[str, torch.Tensor | float]) -> None:
        for k, v in values.items():
            v = v.detach().float().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(
                float(v), device=self.device)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def means(self, info: DistInfo) -> dict[str, float]:
        """Means over steps (and over ranks under DDP)."""
        if not self.count:
            return {}
        keys = sorted(self.sums)
        stacked = torch.stack([self.sums[k] for k in keys]).to(self.device) / self.count
        values = all_reduce_mean(stacked, info).tolist()  # host sync point
        return dict(zip(keys, values, strict=True))

    def state(self) -> dict[str, Any]:
        """Plain sums of this rank for a mid-epoch resume (no collective: rank 0 calls it alone)."""
        means = self.means(DistInfo())
        return {"count": self.count, "sums": {k: v * self.count for k, v in means.items()}}

    def load(self, state: Mapping[str, Any]) -> None:
        self.count = int(state.get("count", 0))
        self.sums = {k: torch.tensor(float(v), device=self.device) for k, v in state.get("sums", {}).items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0


def check_finite(metrics: Mapping[str, float], step: int) -> None:
    loss = metrics.get("loss")
    if loss is not None and not math.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss} at step {step}; lower lr, set grad_clip, "
                                 "or use amp=None / 'bf16' instead of 'fp16'")


class SignalCatcher:
    """Record SIGINT / SIGTERM instead of dying, while active; restores the old handlers.

    The loop polls :attr:`signum`, saves its state and then calls :meth:`reraise`.
    Handlers are only installed in the main thread (Python allows no other).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C interrupts at once
        self.signum = signum
        _log.warning("received %s: saving training state at the end of this step",
                     signal.Signals(signum).name)

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def reraise(self) -> None:
        """After saving: behave as the signal would have (KeyboardInterrupt / exit 128+n)."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt("training interrupted; state saved, resume with resume=True")
        raise SystemExit(128 + int(self.signum or signal.SIGTERM))  # another rank was signalled


@dataclasses.dataclass
class StepInfo:
    """What callbacks see: ``on_train_start`` / ``on_step_end`` / ``on_epoch_end`` / ``on_train_end``.

    Attributes:
        epoch: the epoch (0-based) in progress.
        step: optimizer steps done so far (the next step's 0-based index).
        epoch_step: steps done in this epoch.
        model: the plain model.
        optimizer: the optimizer.
        record: the metrics row just logged, if any.
        is_main: this process is rank 0 (the one that writes files).
    """

    epoch: int
    step: int
    epoch_step: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    record: dict[str, Any] | None = None
    is_main: bool = True


def call_hooks(objs: Iterable[Any], name: str, *args: Any) -> None:
    """Call ``obj.name(*args)`` on every object that defines it."""
    for obj in objs:
        fn = getattr(obj, name, None)
        if callable(fn):
            fn(*args)


class JsonlLog:
    """Append-only ``metrics.jsonl`` (one JSON object per line); a no-op without a path."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (they belong to the run being resumed over)."""
        if self.path is None or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a half-written last line from a killed run
        self.path.write_text("".join(k + "\n" for k in keep))

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def autocast_factory(amp: str | None, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument factory of the AMP context (``nullcontext`` for fp32)."""
    if amp is None:
        return contextlib.nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device (it uses a GradScaler); use amp='bf16' on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def maybe_progress(enabled: bool, total: int, initial: int) -> Iterator[Any]:
    """A tqdm bar, or a stand-in with the same ``update`` / ``set_postfix``."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, dynamic_ncols=True, unit="step")
    try:
        yield bar
    finally:
        bar.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kw: Any) -> None:
        pass
