"""Kill / interrupt a training subprocess and resume: the weights equal an uninterrupted run.

The in-process equivalents (fast, default suite) are in ``test_fit.py``.
"""
from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from robustdial.engine import load_train_state
from engine_helpers import run_script

pytestmark = pytest.mark.slow  # each test starts 2-3 Python processes (~20 s on 2 cores)

# 512 train samples / batch 64 = 8 steps per epoch; 3 epochs = 24 steps.
STEPS_PER_EPOCH = 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc = run_script("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return load_file(str(out / "final.safetensors")), out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_runs_are_bit_identical(reference, tmp_path):
    ref, _ = reference
    proc = run_script("--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    _assert_same(ref, load_file(str(tmp_path / "final.safetensors")))


def test_sigkill_mid_epoch_then_resume_matches(reference, tmp_path):
    ref, ref_dir = reference
    kill_at = 2 * STEPS_PER_EPOCH + 3  # inside epoch index 2 (the third)
    proc = run_script("--out", str(tmp_path), "--signal", "KILL", "--at-step", str(kill_at))
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "final.safetensors").exists()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == kill_at  # it really died mid-epoch
    state = load_train_state(tmp_path)
    assert (state["epoch"], state["epoch_step"], state["step"]) == (2, 0, 2 * STEPS_PER_EPOCH)

    proc = run_script("--out", str(tmp_path), "--resume")
    assert proc.returncode == 0, proc.stderr
    _assert_same(ref, load_file(str(tmp_path / "final.safetensors")))
    # The log was rewound to the saved step and continued: same steps as the reference.
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    ref_steps = [json.loads(x)["step"] for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == ref_steps


@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_signal_saves_mid_epoch_state_and_resumes_exactly(reference, tmp_path, sig):
    ref, _ = reference
    at = STEPS_PER_EPOCH + 5  # mid epoch index 1
    proc = run_script("--out", str(tmp_path), "--signal", sig, "--at-step", str(at))
    # Uncaught KeyboardInterrupt: Python exits by SIGINT; SIGTERM -> SystemExit(128 + 15).
    expected_rc = -signal.SIGINT if sig == "INT" else 128 + signal.SIGTERM
    assert proc.returncode == expected_rc, proc.stderr
    assert "saved training state" in proc.stderr
    state = load_train_state(tmp_path)
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 5, at)

    proc = run_script("--out", str(tmp_path), "--resume")
    assert proc.returncode == 0, proc.stderr
    _assert_same(ref, load_file(str(tmp_path / "final.safetensors")))
