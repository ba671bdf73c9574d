"""``robustdial train`` run-directory safety, recipe type checks, and ``eval`` on a broken ``best/``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from robustdial.cli import main
from robustdial.cli._common import resolve_checkpoint
from robustdial.engine import CheckpointError, RunDir, save
from robustdial.models import create_model

TINY = {
    "model": {"name": "preact_resnet20"},
    "data": {"name": "digits", "max_train_samples": 64},
    "method": {"name": "standard"},
    "train": {"iterations": 1, "batch_size": 32, "lr": 0.05, "log_every": 1, "max_val_samples": 32,
              "device": "cpu"},
}


def _recipe(tmp_path: Path, recipe: dict = TINY, name: str = "tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _fake_run(out: Path, recipe: dict = TINY) -> dict[str, bytes]:
    """A run directory as ``train`` leaves it (recipe, metrics); returns its files' bytes."""
    out.mkdir(parents=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (out / "metrics.jsonl").write_text(json.dumps({"type": "train", "step": 1, "loss": 2.3}) + "\n")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_non_empty_out_is_refused_and_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    before = _fake_run(out)
    assert main(["-q", "train", _recipe(tmp_path), "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "already holds a run" in line and f"--resume {out}" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_and_overwrite_together_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", _recipe(tmp_path), "--out", str(out), "--resume", str(out),
                 "--overwrite"]) == 2
    assert "give one" in _error_line(capsys)
    assert not out.exists()


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with RunDir(out):  # another holder (a separate lock, as another process would take)
        assert main(["-q", "train", _recipe(tmp_path), "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"in use by another training process (pid {os.getpid()}" in line
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, lock released


def test_resume_with_another_recipe_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    before = _fake_run(out)
    other = {**TINY, "model": {"name": "preact_resnet32"}}
    assert main(["-q", "train", _recipe(tmp_path, other), "--resume", str(out)]) == 2
    line = _error_line(capsys)
    assert "model.name: 'preact_resnet20' -> 'preact_resnet32'" in line and "recipe.yaml --resume" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # recipe.yaml not replaced


@pytest.mark.parametrize("setting, message", [
    ('train.lr="fast"', "train.lr must be a number, got 'fast' (str)"),
    ("train.lr=fast", "train.lr must be a number, got 'fast' (str)"),
    ("train.batch_size=0", "train.batch_size must be a positive int, got 0"),
    ("train.nesterov=maybe", "train.nesterov must be true/false, got 'maybe'"),
    ('train.iterations="2"', "train.iterations must be an int or null, got '2' (str)"),
    ("train.milestones=5", "train.milestones must be a list, got 5"),
    ("data.max_train_samples=0", "data.max_train_samples must be a positive int"),
    ("data.max_val_samples=-1", "data.max_val_samples must be a positive int"),
    ("data.val_size=lots", "data.val_size must be a count"),
])
def test_bad_values_name_their_key(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["-q", "train", _recipe(tmp_path), "--out", str(out), "--set", setting]) == 2
    assert message in _error_line(capsys)
    assert not out.exists()  # refused before the run directory is made


def test_lr_in_exponent_notation_is_a_number(tmp_path, capsys):
    """YAML 1.1 reads ``1e-3`` as a string; the recipe still means 0.001."""
    out = tmp_path / "run"
    assert main(["-q", "train", _recipe(tmp_path), "--out", str(out), "--set", "train.lr=1e-3"]) == 0
    assert json.loads((resolve_checkpoint(out) / "run.json").read_text())["fit_config"]["lr"] == 0.001


def test_train_twice_then_overwrite_then_resume(tmp_path, capsys):
    out, cfg = tmp_path / "run", _recipe(tmp_path)
    assert main(["-q", "train", cfg, "--out", str(out)]) == 0
    first = (out / "metrics.jsonl").read_bytes()
    assert main(["-q", "train", cfg, "--out", str(out), "--set", "train.lr=0.01"]) == 2
    assert (out / "metrics.jsonl").read_bytes() == first
    capsys.readouterr()
    assert main(["-q", "train", cfg, "--out", str(out), "--overwrite", "--set", "train.lr=0.01"]) == 0
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["lr"] == 0.01
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 1]  # one train row, one epoch row: the old run is gone
    # a longer run (2 steps per epoch: iterations=3 adds an epoch) continues the stored one
    assert main(["-q", "train", cfg, "--resume", str(out), "--set", "train.iterations=3",
                 "--set", "train.lr=0.01"]) == 0
    assert max(json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()) == 3


# -- eval / resolve_checkpoint on a run whose best/ is broken --------------------------------------
@pytest.fixture
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = create_model("preact_resnet20", in_channels=1)
    info = {"dataset": {"name": "digits"}, "method": {"name": "standard"}}
    save(model, tmp_path / "run" / "last", info)
    save(model, tmp_path / "run" / "best", info)
    return tmp_path / "run"


@pytest.mark.parametrize("damage", ["no_run_json", "no_weights", "bad_weights", "no_sha256"])
def test_broken_best_is_an_error_not_a_silent_fallback(run_dir, damage, capsys):
    best = run_dir / "best"
    if damage == "no_run_json":
        (best / "run.json").unlink()
    elif damage == "no_weights":
        (best / "model.safetensors").unlink()
    elif damage == "bad_weights":
        data = bytearray((best / "model.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (best / "model.safetensors").write_bytes(bytes(data))
    else:
        info = json.loads((best / "run.json").read_text())
        del info["sha256"]
        (best / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=rf"{best} is broken.*pass {run_dir / 'last'} explicitly"):
        resolve_checkpoint(run_dir)
    assert main(["-q", "eval", str(run_dir), "--attack", "fgsm", "--eps", "0.1", "--max-samples", "8",
                 "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert "best is broken" in line and "last" in line
    assert resolve_checkpoint(run_dir / "last") == run_dir / "last"  # the explicit way still works


def test_run_without_best_uses_last(run_dir):
    import shutil

    shutil.rmtree(run_dir / "best")  # select="last" / no validation split: no best/ at all
    assert resolve_checkpoint(run_dir) == run_dir / "last"
    assert resolve_checkpoint(run_dir.parent / "run") == run_dir / "last"
