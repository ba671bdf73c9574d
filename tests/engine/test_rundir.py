"""Run directories: one process at a time, no silent replacement, resume checked before any write."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from robustdial.engine import CheckpointError, FitConfig, RunDir, RunDirError, fit, load_train_state
from robustdial.methods import PGDAT, Standard

from engine_helpers import digits, tiny_net

FAST = dict(batch_size=64, lr=0.05, augment="none", log_every=1, device="cpu", progress=False)


def _cfg(**kw) -> FitConfig:
    return FitConfig(**{**FAST, "epochs": 1, **kw})


@pytest.fixture(scope="module")
def small():
    return digits(n_train=128, n_val=32)


def _snapshot(path):
    """{relative path: bytes} of every file under ``path`` (the lock file excluded)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_non_empty_out_dir_is_refused_and_left_alone(small, tmp_path):
    fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path)))
    before = _snapshot(tmp_path)
    with pytest.raises(RunDirError, match=r"already holds a run .*resume=True.*overwrite=True"):
        fit(tiny_net(seed=1), Standard(), small, _cfg(out_dir=str(tmp_path), lr=0.01))
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / ".lock").exists()  # released


def test_overwrite_replaces_the_old_run(small, tmp_path):
    fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path), epochs=2))
    res = fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path), overwrite=True))
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len(res.history) and max(r["epoch"] for r in res.history) == 0  # only the new run
    assert load_train_state(tmp_path)["step"] == 2


def test_overwrite_deletes_only_run_files(small, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match=r"notes\.txt"):
        fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path), overwrite=True))
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "metrics.jsonl").exists()


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="exclude"):
        FitConfig(out_dir=str(tmp_path), resume=True, overwrite=True)
    with pytest.raises(ValueError, match="exclude"):
        RunDir(tmp_path, resume=True, overwrite=True)


def test_second_holder_fails_at_once_naming_the_first_pid(small, tmp_path):
    """A lock held by another live process: fit fails before writing; a killed holder blocks nothing."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: hold the directory until killed
        try:
            os.close(r)
            RunDir(tmp_path).acquire()
            os.write(w, b"1")
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
        with pytest.raises(RunDirError, match=rf"in use by another training process \(pid {pid},"):
            fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path)))
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing written
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    # the holder died by SIGKILL: its .lock file is left behind, but the kernel dropped the lock
    assert (tmp_path / ".lock").read_text().strip() == str(pid)
    fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path)))
    assert (tmp_path / "last" / "model.safetensors").is_file()


def test_lock_conflicts_inside_one_process_too(tmp_path):
    with RunDir(tmp_path) as held:
        assert held.held and (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            RunDir(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()
    with RunDir(tmp_path):  # free again
        pass


def test_fit_with_a_held_run_dir_from_the_caller(small, tmp_path):
    with RunDir(tmp_path) as run_dir:
        (tmp_path / "recipe.yaml").write_text("x: 1\n")  # the caller writes under the same lock
        fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path)), run_dir=run_dir)
    assert (tmp_path / "last" / "run.json").is_file()
    with pytest.raises(ValueError, match="held RunDir"):
        fit(tiny_net(), Standard(), small, _cfg(out_dir=str(tmp_path / "other")),
            run_dir=RunDir(tmp_path))


@pytest.mark.parametrize("change, match", [
    ("method", r"method differs .*name: 'standard' -> 'pgd_at'"),
    ("method_settings", r"method differs .*lam: 1\.0 -> 0\.5"),
    ("data", r"training data differs .*n_train: 128 -> 64"),
])
def test_resume_with_another_run_fails_before_writing(small, tmp_path, change, match):
    attack = {"name": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 1}
    first = Standard() if change == "method" else PGDAT(lam=1.0, attack=attack)
    fit(tiny_net(), first, small, _cfg(out_dir=str(tmp_path)))
    before = _snapshot(tmp_path)
    method, data = PGDAT(lam=1.0, attack=attack), small
    if change == "method_settings":
        method = PGDAT(lam=0.5, attack=attack)
    if change == "data":
        data = (small[0].subset(64), small[1])
    with pytest.raises(CheckpointError, match=match):
        fit(tiny_net(), method, data, _cfg(out_dir=str(tmp_path), epochs=2, resume=True))
    assert _snapshot(tmp_path) == before


def test_resume_into_another_directory_needs_it_empty(small, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    fit(tiny_net(), Standard(), small, _cfg(out_dir=str(src)))
    dst.mkdir()
    (dst / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match="already holds a run"):
        fit(tiny_net(), Standard(), small, _cfg(out_dir=str(dst), resume_from=str(src), epochs=2))
    (dst / "metrics.jsonl").unlink()
    res = fit(tiny_net(), Standard(), small, _cfg(out_dir=str(dst), resume_from=str(src), epochs=2))
    assert res.history[-1]["epoch"] == 1 and torch.isfinite(torch.tensor(res.history[-1]["loss"]))
