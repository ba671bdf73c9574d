"""load_dataset: shapes, dtypes, splits, real-data facts, file formats and error messages."""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robustdial.data import DatasetNotFoundError, ImageData, dataset_info, list_datasets, load_dataset
from robustdial.data.datasets import val_indices
from robustdial.data.readers import RestrictedUnpickler, read_idx


# --------------------------------------------------------------------------- digits (embedded)
def test_digits_shapes_dtypes_and_values():
    from sklearn.datasets import load_digits

    tr, va, te = (load_dataset("digits", split=s) for s in ("train", "val", "test"))
    for d in (tr, va, te):
        assert d.images.dtype == torch.uint8 and d.images.shape[1:] == (1, 8, 8)
        assert d.labels.dtype == torch.int64 and d.labels.dim() == 1
        assert d.classes == tuple(str(i) for i in range(10)) and d.num_classes == 10
    assert len(tr) + len(va) + len(te) == 1797
    assert len(te) == round(0.2 * 1797) and len(va) == round(0.1 * (1797 - len(te)))
    # same multiset of (image, label) as scikit-learn's, scaled 0..16 -> 0..255
    bunch = load_digits()
    ref = np.round(bunch.images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    ours = torch.cat([tr.images, va.images, te.images]).reshape(1797, -1).numpy()
    lab = torch.cat([tr.labels, va.labels, te.labels]).numpy()
    key = lambda a, y: sorted(map(bytes, np.concatenate([a, y[:, None].astype(np.uint8)], 1)))  # noqa: E731
    assert key(ours, lab) == key(ref, bunch.target)
    assert int(tr.images.max()) == 255 and int(tr.images.min()) == 0


def test_digits_test_split_ignores_seed():
    a = load_dataset("digits", split="test", seed=0)
    b = load_dataset("digits", split="test", seed=123)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_val_is_deterministic_and_disjoint_from_train():
    full = load_dataset("digits", split="train", val_size=0)
    idx = val_indices(len(full), 0.1, seed=7)
    tr = load_dataset("digits", split="train", seed=7)
    va = load_dataset("digits", split="val", seed=7)
    rest = np.setdiff1d(np.arange(len(full)), idx)
    assert torch.equal(va.images, full.images[idx]) and torch.equal(va.labels, full.labels[idx])
    assert torch.equal(tr.images, full.images[rest]) and torch.equal(tr.labels, full.labels[rest])
    assert len(np.intersect1d(idx, rest)) == 0 and len(idx) + len(rest) == len(full)
    again = load_dataset("digits", split="val", seed=7)
    assert torch.equal(again.images, va.images)
    other = load_dataset("digits", split="val", seed=8)
    assert not torch.equal(other.labels, va.labels) or not torch.equal(other.images, va.images)


def test_val_size_forms_and_errors():
    assert len(load_dataset("digits", split="val", val_size=100)) == 100
    assert len(load_dataset("digits", split="val", val_size=0.25)) == round(0.25 * 1438)
    assert len(load_dataset("digits", split="val", val_size=0)) == 0
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("digits", split="train", val_size=5000)
    with pytest.raises(ValueError, match="fraction"):
        load_dataset("digits", split="train", val_size=1.5)
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("imagenet-1k")


def test_dataset_info():
    assert dataset_info("cifar10").augment == "crop_flip"
    assert dataset_info("cifar-100").num_classes == 100
    stl = dataset_info("stl10")
    assert (stl.augment, stl.size, stl.channels) == ("crop_flip_96", 96, 3)
    for name in ("mnist", "fashion-mnist", "svhn", "digits"):
        assert dataset_info(name).augment == "none"
    assert dataset_info("mnist").channels == 1 and dataset_info("mnist").size == 28
    assert dataset_info("tiny-imagenet").num_classes == 200
    assert set(list_datasets()) >= {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
                                    "svhn", "stl10", "tiny-imagenet", "image-folder"}
    with pytest.raises(ValueError, match="load it first"):
        dataset_info("image-folder")
    info = dataset_info(load_dataset("digits", split="test"))
    assert (info.num_classes, info.channels, info.size) == (10, 1, 8)


# --------------------------------------------------------------------------- ImageData
def test_image_data_subset_to_len():
    d = ImageData(torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2),
                  torch.arange(5), "toy", "train", ("a", "b", "c", "d", "e"))
    assert len(d) == 5 and len(d.subset(3)) == 3 and len(d.subset(99)) == 5
    s = d.subset([4, 0])
    assert s.labels.tolist() == [4, 0] and torch.equal(s.images[0], d.images[4])
    assert s.name == "toy" and s.classes == d.classes
    m = d.subset(torch.tensor([True, False, True, False, False]))
    assert m.labels.tolist() == [0, 2]
    assert d.to("cpu") is d
    with pytest.raises(IndexError):
        d.subset([5])
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="match"):
        ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------- real data
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _check_split_sizes(name, root, n_train, n_test, shape, train_counts, test_counts):
    full = load_dataset(name, root=root, split="train", val_size=0)
    tr = load_dataset(name, root=root, split="train")
    va = load_dataset(name, root=root, split="val")
    te = load_dataset(name, root=root, split="test")
    assert (len(full), len(tr), len(va), len(te)) == (n_train, n_train - 5000, 5000, n_test)
    for d in (full, tr, va, te):
        assert d.images.dtype == torch.uint8 and d.images.shape[1:] == shape
        assert d.labels.dtype == torch.int64 and len(d.classes) == 10
    assert torch.bincount(full.labels, minlength=10).tolist() == train_counts
    assert torch.bincount(te.labels, minlength=10).tolist() == test_counts
    # train + val == full, label for label
    assert (torch.bincount(tr.labels, minlength=10) + torch.bincount(va.labels, minlength=10)).tolist() == train_counts
    return full, te


def test_mnist(shared_data_root):
    full, te = _check_split_sizes("mnist", shared_data_root, 60000, 10000, (1, 28, 28),
                                  MNIST_TRAIN, MNIST_TEST)
    assert full.labels[:5].tolist() == [5, 0, 4, 1, 9] and te.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(full.images.float().mean().item() / 255 - 0.1307) < 1e-3


def test_fashion_mnist(shared_data_root):
    _, te = _check_split_sizes("fashion-mnist", shared_data_root, 60000, 10000, (1, 28, 28),
                               [6000] * 10, [1000] * 10)
    assert te.classes[9] == "Ankle boot" and te.labels[:3].tolist() == [9, 2, 1]


def test_cifar10(shared_data_root):
    full, te = _check_split_sizes("cifar10", shared_data_root, 50000, 10000, (3, 32, 32),
                                  [5000] * 10, [1000] * 10)
    assert te.classes[:3] == ("airplane", "automobile", "bird")
    mean = full.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=6e-5)
    assert full.labels[:3].tolist() == [6, 9, 9] and te.labels[:3].tolist() == [3, 8, 8]


def test_env_var_root(shared_data_root, monkeypatch):
    monkeypatch.setenv("ROBUSTDIAL_DATA", str(shared_data_root))
    assert len(load_dataset("mnist", split="test")) == 10000


# --------------------------------------------------------------------------- missing data
def test_missing_data_error_names_path_and_fixes(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "--data-dir" in msg and "ROBUSTDIAL_DATA" in msg
    assert "download=True" in msg


def test_missing_data_error_uses_env_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTDIAL_DATA", str(tmp_path / "envroot"))
    with pytest.raises(DatasetNotFoundError, match="ROBUSTDIAL_DATA") as err:
        load_dataset("mnist", split="test")
    assert str(tmp_path / "envroot" / "mnist") in str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)


# --------------------------------------------------------------------------- formats (synthetic)
def _rand_images(n, c, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_idx_reader_roundtrip_and_truncation(tmp_path):
    arr = _rand_images(7, 1, 5, 4)[:, 0]
    write_idx(tmp_path / "x.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), arr)
    header = bytes([0, 0, 8, 3]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    (tmp_path / "bad").write_bytes(header + arr.tobytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "bad")


def test_cifar100_layout(tmp_path):
    d = tmp_path / "cifar100" / "cifar-100-python"
    d.mkdir(parents=True)
    imgs = {s: _rand_images(n, 3, 32, 32, seed=n) for s, n in (("train", 12), ("test", 4))}
    for s, x in imgs.items():
        payload = {"data": x.reshape(len(x), -1), "fine_labels": list(range(len(x))),
                   "coarse_labels": [0] * len(x)}
        (d / s).write_bytes(pickle.dumps(payload, protocol=2))
    (d / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    te = load_dataset("cifar100", root=tmp_path, split="test", verify=False)  # synthetic: no official md5
    assert np.array_equal(te.images.numpy(), imgs["test"]) and te.labels.tolist() == [0, 1, 2, 3]
    assert te.classes[5] == "c5" and len(te.classes) == 100
    assert len(load_dataset("cifar100", root=tmp_path, split="val", val_size=2, verify=False)) == 2


def test_restricted_unpickler_refuses_code():
    evil = pickle.dumps({"data": io.BytesIO})  # any non-numpy global
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(evil)).load()
    ok = RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": np.arange(3, dtype=np.uint8)}))).load()
    assert ok["a"].tolist() == [0, 1, 2]


def test_svhn_layout(tmp_path):
    from scipy.io import savemat

    d = tmp_path / "svhn"
    d.mkdir()
    x = _rand_images(6, 3, 32, 32)
    y = np.array([10, 1, 2, 3, 10, 9])
    for s in ("train", "test"):  # official layout: X (32, 32, 3, N), y (N, 1), digit 0 stored as 10
        savemat(d / f"{s}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y[:, None]})
    te = load_dataset("svhn", root=tmp_path, split="test", verify=False)
    assert np.array_equal(te.images.numpy(), x)
    assert te.labels.tolist() == [0, 1, 2, 3, 0, 9]


def test_stl10_layout(tmp_path):
    d = tmp_path / "stl10" / "stl10_binary"
    d.mkdir(parents=True)
    x = _rand_images(3, 3, 96, 96)
    for s in ("train", "test"):  # official: each image column-major (C, W, H) bytes, labels 1..10
        x.transpose(0, 1, 3, 2).tofile(d / f"{s}_X.bin")
        np.array([1, 10, 5], dtype=np.uint8).tofile(d / f"{s}_y.bin")
    (d / "class_names.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    te = load_dataset("stl10", root=tmp_path, split="test", verify=False)
    assert np.array_equal(te.images.numpy(), x) and te.labels.tolist() == [0, 9, 4]
    assert te.classes[0] == "n0"


def _save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {}
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for i in range(3):
                a = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
                _save_png(tmp_path / split / cls / f"{i}.png", a)
                imgs[(split, cls, i)] = a
    te = load_dataset("image-folder", root=tmp_path, split="test")
    assert te.classes == ("cat", "dog") and te.images.shape == (6, 3, 5, 6)
    assert te.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(te.images[4].numpy(), imgs[("test", "dog", 1)].transpose(2, 0, 1))
    assert len(load_dataset("image-folder", root=tmp_path, split="train", val_size=0)) == 6
    _save_png(tmp_path / "test" / "dog" / "odd.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="one size"):
        load_dataset("image-folder", root=tmp_path, split="test")


def test_tiny_imagenet_layout(tmp_path):
    base = tmp_path / "tiny-imagenet" / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tshark\nn03\tother\n")
    rng = np.random.default_rng(1)
    for w in wnids:
        for i in range(2):
            _save_png(base / "train" / w / "images" / f"{w}_{i}.png",
                      rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)  # some official images are greyscale
    _save_png(base / "val" / "images" / "val_0.png", grey)
    _save_png(base / "val" / "images" / "val_1.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (base / "val" / "val_annotations.txt").write_text("val_0.png\tn02\t0\t0\t1\t1\nval_1.png\tn01\t0\t0\t1\t1\n")
    te = load_dataset("tiny-imagenet", root=tmp_path, split="test")
    assert te.images.shape == (2, 3, 64, 64) and te.labels.tolist() == [1, 0]
    assert te.classes == ("goldfish", "shark")
    assert all(torch.equal(te.images[0, c], torch.from_numpy(grey)) for c in range(3))
    tr = load_dataset("tiny-imagenet", root=tmp_path, split="train", val_size=0)
    assert tr.labels.tolist() == [0, 0, 1, 1]
