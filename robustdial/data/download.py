"""Download the official dataset files, verify their md5 and extract archives.

Only ``urllib`` from the standard library is used. Each file is streamed to
``<name>.part``, its md5 is checked against the published value and only then
renamed into place, so a failed or corrupt download never looks like data.
Mirrors are tried in order (MNIST: the same list torchvision uses).
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from robustdial.data.image_data import ChecksumError, DownloadError

__all__ = ["Resource", "RESOURCES", "md5sum", "fetch", "extract", "download_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    """One official file: its name, published md5, mirror URLs and whether to unpack it."""

    filename: str
    md5: str
    urls: tuple[str, ...]
    extract: bool = False


def _mirrored(filename: str, md5: str, bases: tuple[str, ...]) -> Resource:
    return Resource(filename, md5, tuple(b + filename for b in bases))


_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FMNIST = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_SVHN = ("http://ufldl.stanford.edu/housenumbers/",)

#: Official files per dataset (published md5s, as checked by torchvision).
RESOURCES: MappingProxyType[str, tuple[Resource, ...]] = MappingProxyType({
    "mnist": (
        _mirrored("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST),
        _mirrored("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", _MNIST),
        _mirrored("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST),
        _mirrored("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", _MNIST),
    ),
    "fashion-mnist": (
        _mirrored("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", _FMNIST),
        _mirrored("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", _FMNIST),
        _mirrored("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", _FMNIST),
        _mirrored("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", _FMNIST),
    ),
    "cifar10": (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",), extract=True),),
    "cifar100": (Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",), extract=True),),
    "svhn": (
        _mirrored("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", _SVHN),
        _mirrored("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", _SVHN),
    ),
    "stl10": (Resource("stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
                       ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",), extract=True),),
    "tiny-imagenet": (Resource("tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
                               ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",), extract=True),),
})


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(urls: tuple[str, ...] | list[str], dest: Path, md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``dest`` from the first URL that works and check its md5.

    Args:
        urls: mirrors, tried in order (``http(s)://`` or ``file://``).
        dest: final path; the data is streamed to ``dest.part`` first.
        md5: published hex md5 of the file.
        timeout: socket timeout per connection, in seconds.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: a mirror served a file whose md5 differs (nothing is kept).
        DownloadError: no mirror could be reached (e.g. no internet).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    bad_checksum = False
    for url in urls:
        log.info("downloading %s -> %s", url, dest)
        h = hashlib.md5(usedforsecurity=False)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
                while block := resp.read(1 << 20):
                    h.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as e:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: {e}")
            continue
        if h.hexdigest() != md5:
            part.unlink(missing_ok=True)
            bad_checksum = True
            errors.append(f"{url}: md5 {h.hexdigest()} != published {md5}")
            continue
        part.replace(dest)
        return dest
    detail = "\n  ".join(errors)
    if bad_checksum:
        raise ChecksumError(f"refusing {dest.name}: checksum mismatch (file corrupt or altered); "
                            f"nothing was kept.\n  {detail}")
    raise DownloadError(f"could not download {dest.name} (are you offline?). Tried:\n  {detail}\n"
                        f"Download it by hand into {dest.parent} or point --data-dir / "
                        "$ROBUSTDIAL_DATA at a copy.")


def _inside(base: Path, target: Path) -> bool:
    return target.resolve().is_relative_to(base.resolve())


def extract(archive: Path, dest: Path) -> None:
    """Unpack a ``.tar.gz`` or ``.zip`` into ``dest``, refusing paths that escape it and links."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                for m in tf.getmembers():
                    if not (m.isfile() or m.isdir()) or not _inside(dest, dest / m.name):
                        raise ValueError(f"{archive}: refusing unsafe member {m.name!r}.")
                tf.extractall(dest)
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not _inside(dest, dest / name):
                    raise ValueError(f"{archive}: refusing unsafe member {name!r}.")
            zf.extractall(dest)
    else:
        raise ValueError(f"don't know how to extract {archive} (expected .tar.gz or .zip).")


def download_dataset(name: str, directory: Path, *, timeout: float = 60.0) -> Path:
    """Fetch (and unpack) the official files of ``name`` into ``directory`` (= ``<root>/<name>``).

    Files already present with the right md5 are not downloaded again.

    Returns:
        ``directory``.
    """
    if name not in RESOURCES:
        raise ValueError(f"no download for dataset {name!r}; downloadable: {', '.join(RESOURCES)}.")
    directory.mkdir(parents=True, exist_ok=True)
    for res in RESOURCES[name]:
        path = directory / res.filename
        if path.exists() and md5sum(path) == res.md5:
            log.info("%s already present and verified", path)
        else:
            fetch(res.urls, path, res.md5, timeout=timeout)
        if res.extract:
            log.info("extracting %s", path)
            extract(path, directory)
    return directory

