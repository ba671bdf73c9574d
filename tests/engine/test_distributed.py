"""torchrun with 2 processes (Gloo, CPU) equals one process on the same global batch.

The model has no BatchNorm: BN normalises with per-rank batch statistics, so a
BN model under DDP is *not* the single-process model (SyncBatchNorm would be).
Augmentation is off because crops are drawn per rank.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from engine_helpers import run_script


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    args = ("--no-bn", "--no-augment", "--epochs", "2", "--batch-size", "64")
    single = run_script("--out", str(tmp_path / "one"), *args)
    assert single.returncode == 0, single.stderr
    ddp = run_script("--out", str(tmp_path / "two"), *args, nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "final.safetensors"))
    b = load_file(str(tmp_path / "two" / "final.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    # Metrics are all-reduced, validation counts summed over the two val shards.
    rows1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2]
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-4)
        if r1["type"] == "epoch":
            assert r2["val_n"] == r1["val_n"] == 128
            assert r2["val_acc"] == pytest.approx(r1["val_acc"], abs=1 / 128)
