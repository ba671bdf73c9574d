"""fit(): learning, determinism, in-process interrupt / crash resume, selection on val, AMP, hooks."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from robustdial.data import CropFlip
from robustdial.engine import FitConfig, fit, load, load_train_state
from robustdial.engine.validate import validate
from robustdial.methods.standard import Standard
from engine_helpers import digits, tiny_net

# 1-pixel random crops exercise the augmentation RNG without wrecking 8x8 digits.
FAST = dict(batch_size=64, lr=0.05, augment=CropFlip(pad=1, flip=False), log_every=1, device="cpu")


def _cfg(tmp_path=None, **kw) -> FitConfig:
    return FitConfig(**{**FAST, "epochs": 3, "out_dir": str(tmp_path) if tmp_path else None, **kw})


@pytest.fixture(scope="module")
def small():
    return digits(n_train=512, n_val=128)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_standard_training_on_digits_learns():
    train, val = digits()
    res = fit(tiny_net(), Standard(), (train, val), _cfg(epochs=4, augment="none", log_every=20))
    epochs = [r for r in res.history if r["type"] == "epoch"]
    assert len(epochs) == 4
    assert epochs[-1]["val_acc"] > 0.90
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert res.best_metric == max(r["val_acc"] for r in epochs)


def test_same_seed_bit_identical_and_other_seed_differs(small):
    a = fit(tiny_net(), Standard(), small, _cfg()).model
    b = fit(tiny_net(), Standard(), small, _cfg()).model
    c = fit(tiny_net(), Standard(), small, _cfg(seed=1)).model
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_outputs_written(small, tmp_path):
    res = fit(tiny_net(), Standard(), small, _cfg(tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == res.history
    assert sum(r["type"] == "train" for r in rows) == 24  # 512/64 steps × 3 epochs, log_every=1
    for sub in ("last", "best"):
        assert (tmp_path / sub / "model.safetensors").is_file()
    info = json.loads((tmp_path / "last" / "run.json").read_text())
    assert info["method"] == {"name": "standard"} and info["seed"] == 0
    assert info["dataset"] == {"name": "digits", "splits": {"train": 512, "val": 128}}
    assert info["fit_config"]["epochs"] == 3 and info["torch_version"] == torch.__version__
    assert len(info["sha256"]["model.safetensors"]) == 64


class _Signal:
    def __init__(self, at: int, sig: int = signal.SIGINT) -> None:
        self.at, self.sig = at, sig

    def on_step_end(self, info) -> None:
        if info.step == self.at:
            os.kill(os.getpid(), self.sig)


class _Crash:
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, info) -> None:
        if info.step == self.at:
            raise RuntimeError("simulated crash")


def test_sigint_saves_restores_handler_and_resumes_exactly(small, tmp_path):
    ref = fit(tiny_net(), Standard(), small, _cfg()).model
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_net(), Standard(), small, _cfg(tmp_path), callbacks=[_Signal(at=11)])
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGTERM) is not None
    state = load_train_state(tmp_path)
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 3, 11)
    # Resume with a freshly initialised (different) model: everything comes from the state.
    res = fit(tiny_net(seed=5), Standard(), small, _cfg(tmp_path, resume=True))
    assert _same_weights(ref, res.model)
    assert [r["step"] for r in res.history if r["type"] == "train"] == list(range(1, 25))


def test_crash_mid_epoch_resumes_from_epoch_start(small, tmp_path):
    ref = fit(tiny_net(), Standard(), small, _cfg()).model
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_net(), Standard(), small, _cfg(tmp_path), callbacks=[_Crash(at=20)])
    assert load_train_state(tmp_path)["step"] == 16  # end of epoch index 1
    res = fit(tiny_net(seed=3), Standard(), small, _cfg(resume_from=str(tmp_path), out_dir=None))
    assert _same_weights(ref, res.model)


def test_resume_of_finished_run_trains_no_more(small, tmp_path, caplog):
    first = fit(tiny_net(), Standard(), small, _cfg(tmp_path))
    again = fit(tiny_net(seed=9), Standard(), small, _cfg(tmp_path, resume=True))
    assert _same_weights(first.model, again.model)
    assert again.history == first.history
    fit(tiny_net(), Standard(), small, _cfg(tmp_path, resume=True, lr=0.01))
    assert "lr: 0.05 -> 0.01" in caplog.text


def test_augment_from_yaml_dict_equals_object(small):
    a = fit(tiny_net(), Standard(), small, _cfg(epochs=1)).model
    b = fit(tiny_net(), Standard(), small, _cfg(epochs=1, augment={"pad": 1, "flip": False})).model
    assert _same_weights(a, b)


def test_best_checkpoint_is_selected_on_val(small, tmp_path):
    train, val = small
    # High constant LR makes val accuracy non-monotone, so best != last is possible.
    res = fit(tiny_net(), Standard(), small, _cfg(tmp_path, epochs=5, lr=0.3, schedule="constant"))
    epochs = [r for r in res.history if r["type"] == "epoch"]
    best_epoch = max(range(5), key=lambda e: (epochs[e]["val_acc"], -e))  # first maximum wins
    best = load(tmp_path / "best", model=tiny_net())
    assert best.rd_run["epoch"] == best_epoch + 1
    assert best.rd_run["selected_by"] == "val_acc"
    assert res.best_metric == epochs[best_epoch]["val_acc"]
    again = validate(best, Standard(), val, device=torch.device("cpu"), batch_size=64)
    assert again["val_acc"] == pytest.approx(res.best_metric)
    with pytest.raises(ValueError, match="test split"):
        from robustdial.data import load_dataset

        fit(tiny_net(), Standard(), (train, load_dataset("digits", split="test")), _cfg())


def test_val_robust_acc_selection(small):
    res = fit(tiny_net(), Standard(), small,
              _cfg(epochs=2, val_attack="pgd-3", val_eps=0.1, select="val_robust_acc"))
    rows = [r for r in res.history if r["type"] == "epoch"]
    assert all(0.0 <= r["val_robust_acc"] < r["val_acc"] for r in rows)  # a real attack bites
    assert res.best_metric == max(r["val_robust_acc"] for r in rows)


def test_bf16_autocast_on_cpu_learns():
    train, val = digits()
    res = fit(tiny_net(), Standard(), (train, val), _cfg(epochs=3, augment="none", amp="bf16", log_every=5))
    losses = [r["loss"] for r in res.history if r["type"] == "train"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert res.history[-1]["val_acc"] > 0.85
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # master weights stay fp32


def test_fp16_needs_cuda(small):
    with pytest.raises(ValueError, match="CUDA"):
        fit(tiny_net(), Standard(), small, _cfg(amp="fp16"))


def test_channels_last_learns_like_default(small):
    a = fit(tiny_net(), Standard(), small, _cfg(channels_last=True))
    b = fit(tiny_net(), Standard(), small, _cfg())
    assert a.history[-1]["val_acc"] > 0.7
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        # Same maths, other summation order: tiny float differences grow over 24 SGD steps.
        torch.testing.assert_close(pa, pb, atol=2e-3, rtol=1e-2)


def test_iterations_and_multistep_in_iterations(small):
    res = fit(tiny_net(), Standard(), small,
              _cfg(iterations=20, schedule="multistep", milestones=[10, 15], lr=0.1))
    train_rows = [r for r in res.history if r["type"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 21))
    lrs = {r["step"]: r["lr"] for r in train_rows}  # lr after the step's scheduler step
    assert lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.01)
    assert lrs[14] == pytest.approx(0.01) and lrs[15] == pytest.approx(0.001)
    assert res.history[-1]["type"] == "epoch" and res.history[-1]["step"] == 20  # partial last epoch


class _Recorder:
    """A weight transform that records the hook order and counts steps in its state."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.steps = 0

    def on_train_start(self, model, optimizer):
        self.calls.append("start")

    def before_forward(self, model):
        self.calls.append("fwd")

    def after_backward(self, model):
        assert all(p.grad is not None for p in model.parameters())
        self.calls.append("bwd")

    def after_step(self, model, optimizer):
        self.steps += 1
        self.calls.append("step")

    def on_epoch_end(self, epoch, model, optimizer):
        self.calls.append(f"epoch{epoch}")

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, d):
        self.steps = d["steps"]


def test_transform_hooks_order_and_state(small, tmp_path):
    rec = _Recorder()
    fit(tiny_net(), Standard(), small, _cfg(tmp_path, epochs=1, out_dir=str(tmp_path / "b")), transforms=[rec])
    assert rec.calls == ["start"] + ["fwd", "bwd", "step"] * 8 + ["epoch0"]
    assert load_train_state(tmp_path / "b")["transforms"] == [{"steps": 8}]
    rec2 = _Recorder()
    fit(tiny_net(), Standard(), small, _cfg(epochs=2, resume_from=str(tmp_path / "b")), transforms=[rec2])
    assert rec2.steps == 16


def test_grad_clip_bounds_each_update(small):
    start = tiny_net()
    w0 = torch.cat([p.detach().flatten().clone() for p in start.parameters()])
    res = fit(start, Standard(), small, _cfg(epochs=1, grad_clip=1e-3, momentum=0.0, weight_decay=0.0,
                                              lr=0.1, schedule="constant"))
    w1 = torch.cat([p.detach().flatten() for p in res.model.parameters()])
    moved = (w1 - w0).norm().item()
    assert 0 < moved <= 8 * 0.1 * 1e-3 * (1 + 1e-4)  # 8 steps of at most lr · clip


class _Dial(torch.nn.Module):
    """Records the λ it sees in eval-mode forwards (validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.lam = None
        self.seen: set = set()

    def dial_specs(self):
        from robustdial.condition import Interval

        return {"lam": Interval(0.0, 1.0)}

    def apply_condition(self, cond):
        self.lam = cond.lam

    def forward(self, x):
        if not self.training:
            self.seen.add(self.lam)
        return x


class _ValAtOne(Standard):
    val_condition = {"lam": 1.0}


def test_validation_runs_at_method_val_condition(small):
    dial = _Dial()
    model = torch.nn.Sequential(dial, tiny_net())
    fit(model, _ValAtOne(), small, _cfg(epochs=1))
    assert dial.seen == {1.0}
    assert dial.lam is None  # condition restored after validation


class _NaN:
    attack_bn_mode = "eval"

    def loss(self, model, batch):
        x, y = batch
        return model(x).sum() * float("nan"), {}

    def config(self):
        return {"name": "nan"}


def test_nan_loss_fails_loudly(small):
    with pytest.raises(FloatingPointError, match="lower lr"):
        fit(tiny_net(), _NaN(), small, _cfg(log_every=2))


def test_bad_data_arguments(small):
    train, _ = small
    with pytest.raises(ValueError, match="'train'"):
        fit(tiny_net(), Standard(), {"training": train}, _cfg())
    with pytest.raises(TypeError, match="ImageData"):
        fit(tiny_net(), Standard(), (torch.zeros(3), None), _cfg())
    res = fit(tiny_net(), Standard(), train, _cfg(epochs=1))  # no val: select falls back to last
    assert res.best_metric is None


@pytest.mark.slow
def test_compile_matches_eager_and_saves_plain_names(small, tmp_path):
    res = fit(tiny_net(), Standard(), small, _cfg(tmp_path, epochs=1, compile=True))
    eager = fit(tiny_net(), Standard(), small, _cfg(epochs=1))
    for pa, pb in zip(res.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-3, rtol=1e-2)
    loaded = load(tmp_path / "last", model=tiny_net(seed=4))  # keys without "_orig_mod."
    assert _same_weights(loaded, res.model)
