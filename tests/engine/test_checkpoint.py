"""Checkpoint directories: rebuild from the directory alone; tampering is refused, never executed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.engine import CheckpointError, load, load_train_state, save
from robustdial.engine.checkpoint import rng_state_plain, save_train_state, set_rng_state_plain
from engine_helpers import REPO, tiny_net


@pytest.fixture
def oat_ckpt(tmp_path):
    model = rd.create_model("small_cnn", conditioning="oat").eval()
    save(model, tmp_path / "ck", {"method": {"name": "oat"}, "metrics": {"val_acc": 0.5}})
    return model, tmp_path / "ck"


def test_load_rebuilds_from_directory_alone_in_fresh_process(oat_ckpt, tmp_path):
    model, path = oat_ckpt
    x = torch.rand(4, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    code = (f"import torch, robustdial as rd\n"
            f"m = rd.load({str(path)!r})\n"
            f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
            f"with rd.conditioned(m, lam=0.3): torch.save(m(x), {str(tmp_path / 'y.pt')!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad(), rd.conditioned(model, lam=0.3):
        expected = model(x)
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


def test_run_json_contents(oat_ckpt):
    model, path = oat_ckpt
    loaded = load(path)
    info = loaded.rd_run
    assert info["model"] == {"name": "small_cnn", "num_classes": 10, "options": {"conditioning": "oat"}}
    assert info["dials"] == {"lam": "[0, 1]", "lam_th": "[0, 0.999]"}
    assert info["method"] == {"name": "oat"} and info["metrics"] == {"val_acc": 0.5}
    assert info["torch_version"] == torch.__version__ and info["robustdial_version"] == rd.__version__
    assert "git_commit" in info and not loaded.training


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(4, 4, bias=False)
        self.out = nn.Linear(4, 4, bias=False)
        self.out.weight = self.emb.weight  # one tensor, two names


def test_tied_weights_roundtrip(tmp_path):
    a = Tied()
    save(a, tmp_path / "t")
    b = load(tmp_path / "t", model=Tied())
    assert torch.equal(a.emb.weight, b.emb.weight)
    assert b.out.weight is b.emb.weight


def test_model_without_spec_needs_architecture(tmp_path):
    save(tiny_net(), tmp_path / "n")
    with pytest.raises(CheckpointError, match="load\\(path, model="):
        load(tmp_path / "n")
    assert torch.equal(load(tmp_path / "n", model=tiny_net(seed=7))[0].weight, tiny_net()[0].weight)


def _rewrite_sha(path) -> None:
    from robustdial.engine.checkpoint import sha256_file

    info = json.loads((path / "run.json").read_text())
    info["sha256"]["model.safetensors"] = sha256_file(path / "model.safetensors")
    (path / "run.json").write_text(json.dumps(info))


def test_modified_weights_fail_sha(oat_ckpt):
    _, path = oat_ckpt
    f = path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # flip bits of the last weight
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*sha256"):
        load(path)


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_truncated_or_bad_header_refused(oat_ckpt, damage):
    _, path = oat_ckpt
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 8 + data[8:])
    _rewrite_sha(path)  # even with a matching checksum the file is refused
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load(path)


def test_wrong_shapes_and_missing_keys_refused(tmp_path):
    save(rd.create_model("small_cnn", num_classes=7), tmp_path / "shape")
    info = json.loads((tmp_path / "shape" / "run.json").read_text())
    info["model"]["num_classes"] = 10
    (tmp_path / "shape" / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="size mismatch"):
        load(tmp_path / "shape")
    save(rd.create_model("small_cnn"), tmp_path / "keys")
    info = json.loads((tmp_path / "keys" / "run.json").read_text())
    info["model"]["options"] = {"conditioning": "oat"}  # FiLM parameters have no weights in the file
    (tmp_path / "keys" / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="[Mm]issing"):
        load(tmp_path / "keys")


@pytest.mark.parametrize("edit, match", [
    (lambda info: info.pop("sha256"), "records no sha256"),
    (lambda info: info.update(sha256={}), "records no sha256"),
    (lambda info: info.update(format="robustdial-checkpoint/99"), r"format 'robustdial-checkpoint/99'"),
    (lambda info: info.pop("format"), "has no 'format' field"),
])
def test_run_json_without_sha256_or_with_unknown_format_is_refused(oat_ckpt, edit, match):
    _, path = oat_ckpt
    info = json.loads((path / "run.json").read_text())
    edit(info)
    (path / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=match):
        load(path)


def test_unverified_load_of_a_run_json_without_sha256_is_explicit(oat_ckpt):
    model, path = oat_ckpt
    info = json.loads((path / "run.json").read_text())
    del info["sha256"]
    (path / "run.json").write_text(json.dumps(info))
    loaded = load(path, verify=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="run.json"):
        load(tmp_path)
    with pytest.raises(CheckpointError, match="train_state.pt"):
        load_train_state(tmp_path)


class _Evil:
    """Unpickling this would run ``open(marker, 'w')``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_train_state_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"epoch": 0, "model": _Evil(str(marker))}, tmp_path / "train_state.pt")
    with pytest.raises(CheckpointError, match="train_state.pt"):
        load_train_state(tmp_path)
    assert not marker.exists()
    # A resume goes through the same door.
    from robustdial.engine import FitConfig, fit
    from robustdial.methods.standard import Standard
    from engine_helpers import digits

    with pytest.raises(CheckpointError, match="train_state.pt"):
        fit(tiny_net(), Standard(), digits(64, 32), FitConfig(epochs=1, batch_size=32, device="cpu",
                                                              out_dir=str(tmp_path), resume=True))
    assert not marker.exists()


def test_truncated_train_state_refused(tmp_path):
    state = {"epoch": 1, "epoch_step": 0, "step": 3, "model": tiny_net().state_dict(), "optimizer": {},
             "scheduler": {}, "rng": rng_state_plain()}
    save_train_state(tmp_path / "train_state.pt", state)
    assert load_train_state(tmp_path)["step"] == 3
    data = (tmp_path / "train_state.pt").read_bytes()
    (tmp_path / "train_state.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="train_state.pt"):
        load_train_state(tmp_path)


def test_rng_state_roundtrip_is_weights_only_safe(tmp_path):
    import random

    import numpy as np

    save_train_state(tmp_path / "s.pt", {"rng": rng_state_plain()})
    a = (random.random(), np.random.rand(), torch.rand(3))
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    set_rng_state_plain(state["rng"])
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
