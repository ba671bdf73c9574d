"""download=True: file:// mirrors, md5 verification, mirror fallback, offline errors, safe extraction."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robustdial.data import ChecksumError, DownloadError, download as dl, load_dataset
from robustdial.data.download import Resource, extract, fetch


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _idx_gz(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A tiny MNIST served from file:// URLs, with its own md5s as the 'published' ones."""
    src = tmp_path / "mirror"
    src.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)),
              "t10k": (rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4))}
    resources = []
    for prefix, (x, y) in arrays.items():
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte.gz"
            _idx_gz(src / name, arr)
            resources.append(Resource(name, _md5(src / name),
                                      (f"file://{tmp_path}/offline/{name}", (src / name).as_uri())))
    monkeypatch.setattr(dl, "RESOURCES", {**dl.RESOURCES, "mnist": tuple(resources)})
    return src, arrays


def test_download_then_load(fake_mnist, tmp_path):
    _, arrays = fake_mnist
    root = tmp_path / "root"
    te = load_dataset("mnist", root=root, split="test", download=True)  # first mirror is dead
    assert np.array_equal(te.images[:, 0].numpy(), arrays["t10k"][0])
    assert te.labels.tolist() == arrays["t10k"][1].tolist()
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(
        r.filename for r in dl.RESOURCES["mnist"])
    assert len(load_dataset("mnist", root=root, split="train", val_size=2)) == 10


def test_present_files_are_not_fetched_again(fake_mnist, tmp_path, monkeypatch):
    root = tmp_path / "root"
    load_dataset("mnist", root=root, split="test", download=True)
    dead = {"mnist": tuple(Resource(r.filename, r.md5, ("file:///nonexistent/x",))
                           for r in dl.RESOURCES["mnist"])}
    monkeypatch.setattr(dl, "RESOURCES", dead)
    assert dl.download_dataset("mnist", root / "mnist") == root / "mnist"


def test_checksum_mismatch_is_refused(fake_mnist, tmp_path):
    src, _ = fake_mnist
    dest = tmp_path / "out" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fetch([(src / "t10k-labels-idx1-ubyte.gz").as_uri()], dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a .part is left behind


def test_tampered_mirror_fails_load(fake_mnist, tmp_path):
    src, _ = fake_mnist
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        load_dataset("mnist", root=tmp_path / "root", split="test", download=True)


def test_offline_error_is_clear(tmp_path):
    with pytest.raises(DownloadError, match="offline") as err:
        fetch([f"file://{tmp_path}/missing.gz", "http://127.0.0.1:9/missing.gz"],
              tmp_path / "x.gz", "0" * 32, timeout=2)
    assert "--data-dir" in str(err.value) and "127.0.0.1" in str(err.value)


def test_published_checksums_for_staged_files(shared_data_root):
    for name in ("mnist", "fashion-mnist"):
        for res in dl.RESOURCES[name]:
            assert dl.md5sum(shared_data_root / name / res.filename) == res.md5


def _cifar_tarball(path: Path, n_per_batch: int = 3) -> dict:
    rng = np.random.default_rng(0)
    data = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        def add(name, obj):
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
            y = rng.integers(0, 10, n_per_batch).tolist()
            data[name] = (x, y)
            add(name, {"data": x, "labels": y, "batch_label": name})
        add("batches.meta", {"label_names": [f"k{i}" for i in range(10)]})
    path.write_bytes(buf.getvalue())
    return data


def test_cifar_tarball_download_and_extract(tmp_path, monkeypatch):
    tgz = tmp_path / "cifar-10-python.tar.gz"
    data = _cifar_tarball(tgz)
    res = Resource(tgz.name, _md5(tgz), (tgz.as_uri(),), extract=True)
    monkeypatch.setattr(dl, "RESOURCES", {**dl.RESOURCES, "cifar10": (res,)})
    full = load_dataset("cifar10", root=tmp_path / "root", split="train", val_size=0, download=True)
    x = np.concatenate([data[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(full.images.numpy(), x) and full.classes[1] == "k1"
    te = load_dataset("cifar10", root=tmp_path / "root", split="test")
    assert te.labels.tolist() == data["test_batch"][1]
    assert te.images.dtype == torch.uint8


def test_extract_refuses_escaping_members(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises((tarfile.TarError, ValueError)):
        extract(evil, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


# --------------------------------------------------------------------------- issue #14: verify, re-fetch, offline
def test_offline_download_leaves_no_empty_folders_and_one_line(fake_mnist, tmp_path, monkeypatch):
    dead = tuple(Resource(r.filename, r.md5, (f"file://{tmp_path}/offline/{r.filename}",))
                 for r in dl.RESOURCES["mnist"])
    monkeypatch.setattr(dl, "RESOURCES", {**dl.RESOURCES, "mnist": dead})
    root = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match="are you offline") as err:
        load_dataset("mnist", root=root, split="test", download=True)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "a").exists()  # every folder the call created is gone again


def test_verify_refuses_an_altered_file_and_download_fetches_it_again(fake_mnist, tmp_path):
    _, arrays = fake_mnist
    root = tmp_path / "root"
    load_dataset("mnist", root=root, split="test", download=True)
    labels = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # still a valid file, but not the published one
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: md5") as err:
        load_dataset("mnist", root=root, split="test")
    assert "--download" in str(err.value) and "verify=False" in str(err.value)
    assert load_dataset("mnist", root=root, split="test", verify=False).labels[-1] != arrays["t10k"][1][-1]
    te = load_dataset("mnist", root=root, split="test", download=True)  # md5 mismatch: fetched again
    assert te.labels.tolist() == arrays["t10k"][1].tolist()
    assert dl.md5sum(labels) == next(r.md5 for r in dl.RESOURCES["mnist"] if r.filename == labels.name)


def test_truncated_pickle_names_the_file(tmp_path, monkeypatch):
    tgz = tmp_path / "cifar-10-python.tar.gz"
    _cifar_tarball(tgz)
    res = Resource(tgz.name, _md5(tgz), (tgz.as_uri(),), extract=True)  # no member md5s: nothing to verify
    monkeypatch.setattr(dl, "RESOURCES", {**dl.RESOURCES, "cifar10": (res,)})
    load_dataset("cifar10", root=tmp_path / "root", split="test", download=True)
    batch = tmp_path / "root" / "cifar10" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    from robustdial.data import DatasetFileError

    with pytest.raises(DatasetFileError, match="test_batch: cannot be read, the file is truncated") as err:
        load_dataset("cifar10", root=tmp_path / "root", split="test")
    assert "--download" in str(err.value)


def test_official_md5s_of_staged_cifar10_members(shared_data_root):
    """The published md5s of the unpacked CIFAR-10 files are the ones the staged copies have."""
    md5s = dl.official_md5s("cifar10")
    assert len(md5s) == 7
    for rel, md5 in md5s.items():
        assert dl.md5sum(shared_data_root / "cifar10" / rel) == md5, rel
