"""The embedded Fashion-MNIST subset: no files, no download, checksum-checked."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from robustdial.data import datasets, load_dataset
from robustdial.data.image_data import DatasetFileError


def test_splits_sizes_and_no_root_needed(tmp_path):
    empty = tmp_path / "nothing-here"  # the root is never read for embedded data
    tr = load_dataset("fashion-mnist-mini", root=empty, split="train")
    va = load_dataset("fashion_mnist_mini", root=empty, split="val")
    te = load_dataset("fmnist-mini", root=empty, split="test")
    assert tr.images.shape == (5500, 1, 14, 14) and va.images.shape == (500, 1, 14, 14)
    assert te.images.shape == (1000, 1, 14, 14) and tr.images.dtype == torch.uint8
    assert not empty.exists()
    # train and val partition the 6000 embedded training images; labels are balanced-ish
    assert len(set(map(bytes, tr.images.numpy())) & set(map(bytes, va.images.numpy()))) < 5
    counts = torch.bincount(te.labels, minlength=10)
    assert counts.min() >= 80 and counts.max() <= 120
    assert te.classes[0] == "T-shirt/top" and te.name == "fashion-mnist-mini"
    # the official test file's first image is an ankle boot (label 9)
    assert int(te.labels[0]) == 9


def test_the_file_matches_its_recorded_sha256():
    raw = (datasets.EMBEDDED_DIR / "fashion_mnist_mini.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == datasets._FMNIST_MINI_SHA256
    readme = (datasets.EMBEDDED_DIR / "README.md").read_text()
    assert datasets._FMNIST_MINI_SHA256 in readme and "MIT" in readme
    assert (datasets.EMBEDDED_DIR / "LICENSE").is_file()


def test_a_corrupt_copy_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "embedded"
    shutil.copytree(datasets.EMBEDDED_DIR, bad)
    f = bad / "fashion_mnist_mini.npz"
    data = bytearray(f.read_bytes())
    data[1000] ^= 0xFF
    f.write_bytes(bytes(data))
    monkeypatch.setattr(datasets, "EMBEDDED_DIR", bad)
    with pytest.raises(DatasetFileError, match="sha256"):
        load_dataset("fashion-mnist-mini", split="test")
