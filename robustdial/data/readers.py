"""Readers for the official on-disk formats of the supported datasets.

Every reader returns ``(images, labels, classes)``: images as a uint8 NumPy
array (N, C, H, W), labels as int64 (N,), classes as a tuple of names. Readers
only parse files; finding them and raising ``DatasetNotFoundError`` is the job
of ``datasets.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import pickle
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from robustdial.data.image_data import DatasetFileError

__all__ = [
    "read_idx",
    "read_idx_pair",
    "read_cifar",
    "read_svhn",
    "read_stl10",
    "read_tiny_imagenet",
    "read_image_folder",
    "RestrictedUnpickler",
    "reading",
]

Arrays = tuple[np.ndarray, np.ndarray, tuple[str, ...]]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# Errors a truncated or corrupt file raises while it is parsed (gzip, zlib, pickle,
# NumPy reshapes, scipy's loadmat, PIL). A missing or unreadable file is not "corrupt".
_PARSE_ERRORS = (EOFError, OSError, zlib.error, pickle.UnpicklingError, ValueError, KeyError,
                 IndexError, TypeError, AttributeError)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a parse failure while reading ``path`` into :class:`DatasetFileError` naming the file."""
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError, DatasetFileError):
        raise
    except pickle.UnpicklingError as e:
        if "refusing to load global" in str(e):
            raise  # code in a dataset pickle is refused as such, not as corruption
        raise DatasetFileError(f"{path}: cannot be read, the file is truncated or corrupt "
                               f"(UnpicklingError: {e})", path) from None
    except _PARSE_ERRORS as e:
        detail = str(e).strip() or type(e).__name__
        raise DatasetFileError(f"{path}: cannot be read, the file is truncated or corrupt "
                               f"({type(e).__name__}: {detail})", path) from None


# --------------------------------------------------------------------------- idx (MNIST, FMNIST)
def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally ``.gz``) into a NumPy array without copying twice.

    The idx format is a 4-byte magic ``0x0000 <dtype> <ndim>`` followed by
    ``ndim`` big-endian uint32 sizes and the raw data. Only unsigned bytes
    (type 0x08), which MNIST and Fashion-MNIST use, are supported.
    """
    raw = path.read_bytes()
    if path.suffix == ".gz":
        with reading(path):
            raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetFileError(f"{path} is not an idx file (bad magic number); the file is corrupt.",
                               path)
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DatasetFileError(f"{path}: idx data type 0x{dtype_code:02x} unsupported (expected 0x08, "
                               "uint8); the file is corrupt.", path)
    with reading(path):
        dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DatasetFileError(f"{path}: header says {dims} ({expected} bytes) but the file holds "
                               f"{len(raw) - offset} bytes; the file is truncated or corrupt.", path)
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def read_idx_pair(images_path: Path, labels_path: Path, classes: tuple[str, ...]) -> Arrays:
    """Read an idx image file (N, H, W) and its idx label file (N,)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetFileError(f"{images_path} / {labels_path}: shapes {images.shape} and {labels.shape} "
                         "do not form an image/label pair.")
    return images[:, None], labels, classes


# --------------------------------------------------------------------------- CIFAR pickles
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals NumPy arrays need.

    The CIFAR python files are pickled dicts of lists, byte strings and one
    uint8 ndarray (``_codecs.encode`` appears when Python 3 re-pickles bytes at
    protocol 2); anything else (a class or function that could run code while
    loading) raises ``pickle.UnpicklingError``.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2 (text -> bytes only)
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from a dataset pickle; only NumPy arrays "
                "are allowed (is this an official CIFAR file?)."
            )
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, any version
        return getattr(np, name)


def _unpickle(path: Path) -> dict[str, Any]:
    with path.open("rb") as f, reading(path):
        obj = RestrictedUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise DatasetFileError(f"{path}: expected a pickled dict, got {type(obj).__name__}; "
                               "the file is corrupt.", path)
    return obj


def read_cifar(batch_paths: list[Path], meta_path: Path, *, label_key: str, names_key: str) -> Arrays:
    """Read CIFAR-10 / CIFAR-100 python batches.

    Args:
        batch_paths: the pickles to concatenate, in order (e.g. data_batch_1..5).
        meta_path: ``batches.meta`` (CIFAR-10) or ``meta`` (CIFAR-100).
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).
        names_key: ``"label_names"`` or ``"fine_label_names"``.
    """
    images, labels = [], []
    for p in batch_paths:
        d = _unpickle(p)
        with reading(p):
            data = np.asarray(d["data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32))  # stored channel-planar R, G, B rows
            labels.append(np.asarray(d[label_key], dtype=np.int64))
            if len(labels[-1]) != len(images[-1]):
                raise ValueError(f"{len(images[-1])} images but {len(labels[-1])} labels")
    meta = _unpickle(meta_path)
    with reading(meta_path):
        classes = tuple(str(c) for c in meta[names_key])
    return np.concatenate(images), np.concatenate(labels), classes


# --------------------------------------------------------------------------- SVHN
def read_svhn(path: Path) -> Arrays:
    """Read ``train_32x32.mat`` / ``test_32x32.mat``; the digit 0 is stored as 10 -> label 0."""
    from scipy.io import loadmat

    with reading(path):
        mat = loadmat(str(path))
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8, copy=False)
        labels = mat["y"].astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
    labels[labels == 10] = 0
    return images, labels, tuple(str(i) for i in range(10))


# --------------------------------------------------------------------------- STL-10
def read_stl10(x_path: Path, y_path: Path, names_path: Path) -> Arrays:
    """Read STL-10 binaries: images stored column-major (N, 3, 96, 96), labels 1..10 -> 0..9."""
    raw = np.fromfile(x_path, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DatasetFileError(f"{x_path}: {raw.size} bytes is not a whole number of 3x96x96 images; "
                               "the file is truncated or corrupt.", x_path)
    images = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != len(images):
        raise DatasetFileError(f"{y_path}: {len(labels)} labels for {len(images)} images in {x_path}; "
                               "one of the files is truncated or corrupt.", y_path)
    classes = tuple(line.strip() for line in names_path.read_text().splitlines() if line.strip())
    return images, labels, classes


# --------------------------------------------------------------------------- image files
def _read_images(paths: list[Path], mode: str | None = None) -> np.ndarray:
    """Decode image files with PIL into one uint8 array (N, C, H, W).

    ``mode``: ``"L"`` or ``"RGB"``; ``None`` picks ``"L"`` when every file is
    greyscale and ``"RGB"`` otherwise. All images must have the same size.
    """
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - PIL ships with matplotlib
        raise ImportError("reading image files needs Pillow: pip install pillow") from e
    if not paths:
        return np.zeros((0, 3, 1, 1), dtype=np.uint8)
    if mode is None:
        mode = "L"
        for p in paths:
            with reading(p), Image.open(p) as im:
                if im.mode not in ("L", "1", "I;16"):
                    mode = "RGB"
                    break
    arrays = []
    size = None
    for p in paths:
        with reading(p), Image.open(p) as im:
            a = np.asarray(im.convert(mode), dtype=np.uint8)
        if size is None:
            size = a.shape
        elif a.shape != size:
            raise ValueError(f"{p} has size {a.shape[:2]} but earlier images have {size[:2]}; "
                             "image-folder needs images of one size (resize them first).")
        arrays.append(a)
    stacked = np.stack(arrays)
    return stacked[:, None] if mode == "L" else np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(folder: Path) -> Arrays:
    """Read ``folder/<class>/<image>`` (class = sorted subfolder name, as torchvision's ImageFolder)."""
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{folder} has no class subfolders (expected {folder}/<class>/<image>.png).")
    paths, labels = [], []
    for k, d in enumerate(class_dirs):
        files = _list_images(d)
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}/<class>/.")
    return _read_images(paths), np.asarray(labels, dtype=np.int64), tuple(d.name for d in class_dirs)


def read_tiny_imagenet(base: Path, split: str) -> Arrays:
    """Read Tiny ImageNet-200 (``base`` = ``tiny-imagenet-200/``), 64x64 RGB, 200 classes.

    ``split="train"``: ``train/<wnid>/images/*.JPEG`` (500 per class).
    ``split="val"``: the official ``val/images`` with ``val/val_annotations.txt``
    (50 per class; the official test split has no labels). Decoding 100k JPEGs
    with PIL takes about a minute.
    """
    wnids = tuple(w.strip() for w in (base / "wnids.txt").read_text().splitlines() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    words = {}
    if (base / "words.txt").exists():
        for line in (base / "words.txt").read_text().splitlines():
            parts = line.split("\t", 1)
            if len(parts) == 2 and parts[0] in index:
                words[parts[0]] = parts[1].split(",")[0].strip()
    classes = tuple(words.get(w, w) for w in wnids)
    paths, labels = [], []
    if split == "train":
        for w in wnids:
            files = _list_images(base / "train" / w / "images")
            paths += files
            labels += [index[w]] * len(files)
    else:
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                paths.append(base / "val" / "images" / parts[0])
                labels.append(index[parts[1]])
    return _read_images(paths, mode="RGB"), np.asarray(labels, dtype=np.int64), classes

