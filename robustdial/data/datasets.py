"""``load_dataset``: the supported datasets as uint8 tensors in memory.

Layout: every dataset lives in ``<root>/<name>/`` in its official layout, where
``root`` is the ``root`` argument (CLI ``--data-dir``), else ``$ROBUSTDIAL_DATA``,
else ``~/.cache/robustdial/data``:

=================  ===================================================================
name               files under ``<root>/<name>/``
=================  ===================================================================
``digits``         none: scikit-learn's bundled 8x8 digits (always available)
``fashion-mnist-mini``  none: 7,000 Fashion-MNIST images at 14x14 shipped in the package
                   (``robustdial/data/embedded/``; the demo's data, MIT licence)
``mnist``          ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
``fashion-mnist``  same names as MNIST
``cifar10``        ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
``cifar100``       ``cifar-100-python/{train,test,meta}`` (fine labels, 100 classes)
``svhn``           ``{train,test}_32x32.mat`` (digit 0 stored as 10 -> label 0)
``stl10``          ``stl10_binary/{train,test}_{X,y}.bin``, ``class_names.txt``
``tiny-imagenet``  ``tiny-imagenet-200/`` (train/, val/, wnids.txt); test = official val
``image-folder``   ``root`` itself: ``train/<class>/*.png|jpg`` and ``test/<class>/...``
=================  ===================================================================

Splits: ``"test"`` is the official test split. ``"val"`` is carved from the
official training split with a fixed seed and ``"train"`` is the rest (disjoint,
deterministic, both in the original file order). Default validation sizes:
5,000 for MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN; 10 % of the training
split for digits, STL-10, Tiny ImageNet and image folders; 500 for
fashion-mnist-mini. ``val_size=0`` gives
the full training split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from robustdial.data import download as _download
from robustdial.data import readers
from robustdial.data.download import RESOURCES, download_dataset, md5sum
from robustdial.data.image_data import ChecksumError, DatasetFileError, DatasetNotFoundError, ImageData

__all__ = ["DatasetInfo", "dataset_info", "list_datasets", "load_dataset", "resolve_root",
           "val_indices", "DEFAULT_ROOT", "ENV_VAR"]

log = logging.getLogger(__name__)

ENV_VAR = "ROBUSTDIAL_DATA"
DEFAULT_ROOT = "~/.cache/robustdial/data"
SPLITS = ("train", "val", "test")
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0  # fixed: the digits train/test split never changes

Arrays = tuple[np.ndarray, np.ndarray, tuple[str, ...]]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
        num_classes: number of classes.
        channels: image channels (1 or 3).
        size: image height = width, in pixels.
        augment: default training augmentation for ``batches`` (``"crop_flip"``,
            ``"crop_flip_96"`` or ``"none"``).
        name: canonical dataset name.
        val_size: default validation size: an int count, or a float fraction of
            the training split.
    """

    num_classes: int
    channels: int
    size: int
    augment: str = "none"
    name: str = ""
    val_size: int | float = 0.1


@dataclass(frozen=True)
class _Spec:
    info: DatasetInfo
    subdir: str  # where the files live, relative to <root>/<name>
    files: MappingProxyType  # split ("train"/"test") -> expected file names
    read: Callable[[Path, str], Arrays]  # (files directory, "train"|"test") -> arrays


_MNIST_FILES = {s: (f"{p}-images-idx3-ubyte.gz", f"{p}-labels-idx1-ubyte.gz")
                for s, p in (("train", "train"), ("test", "t10k"))}
_FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def _idx_reader(classes: tuple[str, ...]) -> Callable[[Path, str], Arrays]:
    def read(d: Path, split: str) -> Arrays:
        images, labels = _MNIST_FILES[split]
        return readers.read_idx_pair(d / images, d / labels, classes)
    return read


def _read_cifar10(d: Path, split: str) -> Arrays:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return readers.read_cifar([d / n for n in names], d / "batches.meta",
                              label_key="labels", names_key="label_names")


def _read_cifar100(d: Path, split: str) -> Arrays:
    return readers.read_cifar([d / split], d / "meta", label_key="fine_labels",
                              names_key="fine_label_names")


def _read_stl10(d: Path, split: str) -> Arrays:
    return readers.read_stl10(d / f"{split}_X.bin", d / f"{split}_y.bin", d / "class_names.txt")


def _read_tiny(d: Path, split: str) -> Arrays:
    return readers.read_tiny_imagenet(d, "train" if split == "train" else "val")


def _read_digits(_: Path, split: str) -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 grey levels -> 0..255
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    n = len(labels)
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(n)
    test = np.zeros(n, dtype=bool)
    test[perm[: int(round(_DIGITS_TEST_FRACTION * n))]] = True
    keep = test if split == "test" else ~test
    return images[keep], labels[keep], tuple(str(i) for i in range(10))


EMBEDDED_DIR = Path(__file__).with_name("embedded")
_FMNIST_MINI_SHA256 = "da787ff9a120e7f8db83227ee76f3b4216464164ca4479262761e3c9fa9f49ab"


def _read_fmnist_mini(_: Path, split: str) -> Arrays:
    """The embedded 14×14 Fashion-MNIST subset (see ``embedded/README.md``), sha256-checked."""
    import hashlib
    import io

    path = EMBEDDED_DIR / "fashion_mnist_mini.npz"
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != _FMNIST_MINI_SHA256:
        raise DatasetFileError(f"{path} is corrupt (sha256 differs from the packaged file); "
                               "reinstall robustdial or rebuild it with "
                               "scripts/make_fashion_mnist_mini.py", path)
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        images, labels = z[f"{split}_images"][:, None], z[f"{split}_labels"].astype(np.int64)
    return images, labels, _FMNIST_CLASSES


def _read_image_folder(d: Path, split: str) -> Arrays:
    if split == "train":
        folder = d / "train" if (d / "train").is_dir() else d
    else:
        folder = next((d / s for s in ("test", "val") if (d / s).is_dir()), d / "test")
    return readers.read_image_folder(folder)


def _files(train: tuple[str, ...], test: tuple[str, ...]) -> MappingProxyType:
    return MappingProxyType({"train": train, "test": test})


_CIFAR10_META = ("batches.meta",)
_SPECS: MappingProxyType[str, _Spec] = MappingProxyType({
    "digits": _Spec(DatasetInfo(10, 1, 8, "none", "digits", 0.1), "", _files((), ()), _read_digits),
    "fashion-mnist-mini": _Spec(DatasetInfo(10, 1, 14, "none", "fashion-mnist-mini", 500), "",
                                _files((), ()), _read_fmnist_mini),
    "mnist": _Spec(DatasetInfo(10, 1, 28, "none", "mnist", 5000), "",
                   _files(_MNIST_FILES["train"], _MNIST_FILES["test"]),
                   _idx_reader(tuple(str(i) for i in range(10)))),
    "fashion-mnist": _Spec(DatasetInfo(10, 1, 28, "none", "fashion-mnist", 5000), "",
                           _files(_MNIST_FILES["train"], _MNIST_FILES["test"]),
                           _idx_reader(_FMNIST_CLASSES)),
    "cifar10": _Spec(DatasetInfo(10, 3, 32, "crop_flip", "cifar10", 5000), "cifar-10-batches-py",
                     _files(tuple(f"data_batch_{i}" for i in range(1, 6)) + _CIFAR10_META,
                            ("test_batch",) + _CIFAR10_META), _read_cifar10),
    "cifar100": _Spec(DatasetInfo(100, 3, 32, "crop_flip", "cifar100", 5000), "cifar-100-python",
                      _files(("train", "meta"), ("test", "meta")), _read_cifar100),
    "svhn": _Spec(DatasetInfo(10, 3, 32, "none", "svhn", 5000), "",
                  _files(("train_32x32.mat",), ("test_32x32.mat",)),
                  lambda d, s: readers.read_svhn(d / f"{s}_32x32.mat")),
    "stl10": _Spec(DatasetInfo(10, 3, 96, "crop_flip_96", "stl10", 0.1), "stl10_binary",
                   _files(("train_X.bin", "train_y.bin", "class_names.txt"),
                          ("test_X.bin", "test_y.bin", "class_names.txt")), _read_stl10),
    "tiny-imagenet": _Spec(DatasetInfo(200, 3, 64, "none", "tiny-imagenet", 0.1), "tiny-imagenet-200",
                           _files(("wnids.txt", "train"), ("wnids.txt", "val/val_annotations.txt")),
                           _read_tiny),
    "image-folder": _Spec(DatasetInfo(0, 0, 0, "none", "image-folder", 0.1), "",
                          _files(("train/<class>/<image>",), ("test/<class>/<image>",)),
                          _read_image_folder),
})

_EMBEDDED = ("digits", "fashion-mnist-mini")  # shipped with the package: no files, no download
_ALIASES = MappingProxyType({
    "fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
    "stl-10": "stl10", "stl_10": "stl10", "tiny_imagenet": "tiny-imagenet",
    "tinyimagenet": "tiny-imagenet", "tiny-imagenet-200": "tiny-imagenet",
    "imagefolder": "image-folder", "image_folder": "image-folder",
    "fashion_mnist_mini": "fashion-mnist-mini", "fmnist-mini": "fashion-mnist-mini",
})


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset`` (canonical spellings)."""
    return list(_SPECS)


def _canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(_SPECS)}.")
    return key


def dataset_info(name: str | ImageData) -> DatasetInfo:
    """Static facts (classes, channels, size, default augmentation) about a dataset.

    Args:
        name: a dataset name, or a loaded :class:`ImageData` (needed for
            ``"image-folder"``, whose classes and size depend on the folder).
    """
    if isinstance(name, ImageData):
        data = name
        key = _ALIASES.get(data.name.lower(), data.name.lower())
        base = _SPECS[key].info if key in _SPECS else DatasetInfo(0, 0, 0, "none", data.name)
        _, c, h, _ = data.images.shape
        return DatasetInfo(data.num_classes, c, h, base.augment, base.name, base.val_size)
    key = _canonical(name)
    if key == "image-folder":
        raise ValueError("dataset_info('image-folder') depends on the folder: load it first and "
                         "call dataset_info(load_dataset('image-folder', root=...)).")
    return _SPECS[key].info


def resolve_root(root: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Data root and where it came from: ``root``, else ``$ROBUSTDIAL_DATA``, else the default."""
    if root is not None:
        return Path(root).expanduser(), "the root argument / --data-dir"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    return Path(DEFAULT_ROOT).expanduser(), f"the default ({DEFAULT_ROOT})"


def _dataset_dir(key: str, root: Path) -> Path:
    return root if key == "image-folder" else root / key


def _missing(key: str, files_dir: Path, split: str) -> list[str]:
    if key == "image-folder":
        if split == "train":
            ok = files_dir.is_dir()
        else:
            ok = any((files_dir / s).is_dir() for s in ("test", "val"))
        return [] if ok else list(_SPECS[key].files[split])
    return [f for f in _SPECS[key].files[split] if not (files_dir / f).exists()]


def _not_found(key: str, files_dir: Path, split: str, missing: list[str], origin: str) -> DatasetNotFoundError:
    spec = _SPECS[key]
    expected = ", ".join(spec.files[split])
    lines = [
        f"dataset {key!r} ({split} split) not found.",
        f"  looked in: {files_dir}  (data root from {origin})",
        f"  expected:  {expected}",
        f"  missing:   {', '.join(missing)}",
        "Fix one of:",
    ]
    if key == "image-folder":
        lines.append("  - pass --data-dir DIR (Python: root=DIR) where DIR/train/<class>/ and "
                     "DIR/test/<class>/ hold the images")
    else:
        where = f"DIR/{key}/{spec.subdir}".rstrip("/")
        lines += [
            f"  - pass --data-dir DIR (Python: load_dataset(..., root=DIR)) where {where} holds the files",
            f"  - set the environment variable {ENV_VAR}=DIR",
        ]
        if key in RESOURCES:
            names = ", ".join(r.filename for r in RESOURCES[key])
            lines.append(f"  - pass --download (Python: download=True) to fetch the official files "
                         f"({names}) into {files_dir.parent if spec.subdir else files_dir}")
    return DatasetNotFoundError("\n".join(lines))


def _refetch_hint(key: str, what: str = "it") -> str:
    if key in RESOURCES:
        return (f"delete {what} and run again with --download (Python: load_dataset(..., "
                "download=True)) to re-fetch the official files")
    return f"replace {what} with a fresh copy of the official files"


def _bad_checksums(key: str, dataset_dir: Path, files_dir: Path, split: str) -> list[tuple[Path, str, str]]:
    """``(path, md5, published md5)`` of every file of ``split`` whose md5 differs from the published one."""
    published = _download.official_md5s(key)  # read at call time: tests swap RESOURCES
    bad = []
    for name in _SPECS[key].files[split]:
        path = files_dir / name
        rel = path.relative_to(dataset_dir).as_posix()
        expected = published.get(rel)
        if expected is None or not path.is_file():
            continue
        actual = md5sum(path)
        if actual != expected:
            bad.append((path, actual, expected))
    return bad


def _checksum_error(key: str, bad: list[tuple[Path, str, str]]) -> ChecksumError:
    path, actual, expected = bad[0]
    more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
    return ChecksumError(f"{path}: md5 {actual} differs from the published {expected}{more}; the "
                         f"file is truncated, corrupt or altered; {_refetch_hint(key)} "
                         "(or pass --no-verify / verify=False to use it anyway)")


def _check_labels(key: str, labels: np.ndarray, num_classes: int, files_dir: Path, split: str) -> None:
    if not len(labels) or num_classes <= 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        files = ", ".join(_SPECS[key].files[split]) or "(bundled)"
        raise DatasetFileError(f"{key} ({split} files {files} in {files_dir}) holds label {bad}, outside "
                               f"[0, {num_classes}): the labels are corrupt; {_refetch_hint(key, 'the files')}",
                               files_dir)


def val_indices(n: int, val_size: int | float, seed: int) -> np.ndarray:
    """Sorted indices of the validation samples carved from a training split of ``n``.

    Args:
        n: size of the official training split.
        val_size: count (int) or fraction in [0, 1) (float).
        seed: seed of the permutation (NumPy PCG64).
    """
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"a float val_size is a fraction and must be in [0, 1), got {val_size}; "
                             "pass an int for a count.")
        k = int(round(val_size * n))
    else:
        k = int(val_size)
    if not 0 <= k < n:
        raise ValueError(f"val_size={val_size} must leave training samples: the training split "
                         f"has {n} samples (use 0 <= val_size < {n}).")
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    val_size: int | float | None = None,
    seed: int = 0,
    verify: bool = True,
) -> ImageData:
    """Load a dataset split into memory as uint8 tensors.

    Args:
        name: one of :func:`list_datasets` (a few aliases like ``"fmnist"`` work).
        root: data root (CLI ``--data-dir``); default ``$ROBUSTDIAL_DATA``, else
            ``~/.cache/robustdial/data``. For ``"image-folder"`` it is the folder itself.
        split: ``"train"`` (official train minus validation), ``"val"`` or ``"test"``.
        download: fetch the official files (md5-checked) when they are missing.
        val_size: validation samples carved from the official training split
            (int count or float fraction); ``None`` = the dataset's default
            (``dataset_info(name).val_size``); 0 = no validation split.
        seed: seed of the validation carve-out (same seed -> same split).
        verify: check the split's files against the published md5s (MNIST,
            Fashion-MNIST, CIFAR-10/100, SVHN, STL-10; about 0.3 s for all of
            CIFAR-10's training files). With ``download=True`` a mismatching
            file is fetched again.

    Returns:
        :class:`ImageData` with uint8 images (N, C, H, W) and int64 labels (N,).

    Raises:
        DatasetNotFoundError: files missing and ``download=False``.
        ChecksumError: a file's md5 differs from the published one (``verify``).
        DatasetFileError: a file is truncated or corrupt, or holds labels
            outside [0, num_classes); the message names the file and how to
            re-fetch it.
        DownloadError: ``download=True`` could not reach any mirror.
    """
    key = _canonical(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    spec = _SPECS[key]
    root_path, origin = resolve_root(root)
    files_dir = _dataset_dir(key, root_path) / spec.subdir if spec.subdir else _dataset_dir(key, root_path)
    source_split = "test" if split == "test" else "train"

    dataset_dir = _dataset_dir(key, root_path)
    missing = _missing(key, files_dir, source_split) if key not in _EMBEDDED else []
    if missing and download and key in RESOURCES:
        download_dataset(key, dataset_dir)
        missing = _missing(key, files_dir, source_split)
    if missing:
        raise _not_found(key, files_dir, source_split, missing, origin)
    if verify and key not in _EMBEDDED:
        bad = _bad_checksums(key, dataset_dir, files_dir, source_split)
        if bad and download and key in RESOURCES:
            log.warning("%s: md5 mismatch, fetching the official file again", bad[0][0])
            download_dataset(key, dataset_dir)  # replaces a file only once its md5 is right
            bad = _bad_checksums(key, dataset_dir, files_dir, source_split)
        if bad:
            raise _checksum_error(key, bad)

    try:
        images, labels, classes = spec.read(files_dir, source_split)
    except DatasetFileError as e:
        raise DatasetFileError(f"{str(e).rstrip('.')}; {_refetch_hint(key)}", e.path) from None
    num_classes = spec.info.num_classes if key != "image-folder" else len(classes)
    _check_labels(key, labels, num_classes, files_dir, source_split)
    if split != "test":
        size = spec.info.val_size if val_size is None else val_size
        val = val_indices(len(labels), size, seed)
        if split == "val":
            keep = val
        else:
            mask = np.ones(len(labels), dtype=bool)
            mask[val] = False
            keep = np.flatnonzero(mask)
        if len(keep) != len(labels):
            images, labels = images[keep], labels[keep]
    if not images.flags.writeable:  # np.frombuffer views are read-only; torch wants writable
        images = images.copy()
    log.debug("loaded %s/%s: %d images %s", key, split, len(labels), images.shape[1:])
    return ImageData(images=np.ascontiguousarray(images), labels=labels, name=key, split=split,
                     classes=classes)
