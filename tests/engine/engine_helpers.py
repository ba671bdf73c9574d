"""Shared pieces of the engine tests: a tiny model, the digits data, a subprocess trainer."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def tiny_net(bn: bool = True, seed: int = 0) -> nn.Module:
    """Conv(1→8) [BN] ReLU → Linear(8·8·8 → 10) for 8×8 digits; seeded init."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10)]
    return nn.Sequential(*layers)


def digits(n_train: int | None = None, n_val: int | None = None):
    from robustdial.data import load_dataset

    train, val = load_dataset("digits", split="train"), load_dataset("digits", split="val")
    return (train.subset(n_train) if n_train else train), (val.subset(n_val) if n_val else val)


def run_script(*args: str, nproc: int = 1, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run :func:`main` in a fresh process (``nproc`` > 1: under torchrun, Gloo on CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [PYTHON] if nproc == 1 else [PYTHON, "-m", "torch.distributed.run", "--standalone",
                                            f"--nproc_per_node={nproc}"]
    return subprocess.run([*launcher, str(Path(__file__)), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


class _SendSignal:
    """Callback: at global step ``at`` send ``sig`` to this very process."""

    def __init__(self, at: int, sig: int) -> None:
        self.at, self.sig = at, sig

    def on_step_end(self, info) -> None:
        if info.step == self.at:
            os.kill(os.getpid(), self.sig)


def main() -> None:
    """Train ``tiny_net`` on digits; used by the kill / interrupt / torchrun tests."""
    from safetensors.torch import save_model

    from robustdial.data import CropFlip
    from robustdial.engine import FitConfig, fit
    from robustdial.methods.standard import Standard

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-bn", action="store_true")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--signal", choices=["KILL", "INT", "TERM"])
    p.add_argument("--at-step", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    train, val = digits(n_train=512, n_val=128)
    cfg = FitConfig(epochs=a.epochs, batch_size=a.batch_size, lr=0.05, out_dir=a.out, augment="none" if a.no_augment else CropFlip(pad=1, flip=False),
                    log_every=1, resume=a.resume, device="cpu")
    callbacks = [_SendSignal(a.at_step, getattr(signal, f"SIG{a.signal}"))] if a.signal else []
    result = fit(tiny_net(bn=not a.no_bn), Standard(), (train, val), cfg, callbacks=callbacks)
    if int(os.environ.get("RANK", "0")) == 0:
        save_model(result.model, str(Path(a.out) / "final.safetensors"))


if __name__ == "__main__":
    main()
