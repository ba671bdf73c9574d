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

__all__ = ["Resource", "RESOURCES", "md5sum", "fetch", "extract", "download_dataset", "official_md5s"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    """One official file: its name, published md5, mirror URLs and whether to unpack it.

    ``members`` lists ``(path, md5)`` of the unpacked files of an archive, paths
    relative to the dataset directory (the values torchvision checks), so that
    files on disk can be verified without the archive.
    """

    filename: str
    md5: str
    urls: tuple[str, ...]
    extract: bool = False
    members: tuple[tuple[str, str], ...] = ()


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
                         ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",), extract=True,
                         members=(("cifar-10-batches-py/data_batch_1", "c99cafc152244af753f735de768cd75f"),
                                  ("cifar-10-batches-py/data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                                  ("cifar-10-batches-py/data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                                  ("cifar-10-batches-py/data_batch_4", "634d18415352ddfa80567beed471001a"),
                                  ("cifar-10-batches-py/data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                                  ("cifar-10-batches-py/test_batch", "40351d587109b95175f43aff81a1287e"),
                                  ("cifar-10-batches-py/batches.meta", "5ff9c542aee3614f3951f8cda6e48888"))),),
    "cifar100": (Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",), extract=True,
                          members=(("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d"),
                                   ("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                                   ("cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48"))),),
    "svhn": (
        _mirrored("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", _SVHN),
        _mirrored("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", _SVHN),
    ),
    "stl10": (Resource("stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
                       ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",), extract=True,
                       members=(("stl10_binary/train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
                                ("stl10_binary/train_y.bin", "5a34089d4802c674881badbb80307741"),
                                ("stl10_binary/test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
                                ("stl10_binary/test_y.bin", "36f9794fa4beb8a2c72628de14fa638e"))),),
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


def official_md5s(name: str) -> dict[str, str]:
    """Published md5 of each official file of ``name`` on disk, keyed by path relative to ``<root>/<name>``.

    Plain files are listed with their own md5, archives with their unpacked
    members' (``Resource.members``). Datasets without published checksums give ``{}``.
    """
    out: dict[str, str] = {}
    for res in RESOURCES.get(name, ()):
        if res.extract:
            out.update(res.members)
        else:
            out[res.filename] = res.md5
    return out


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    return str(reason if reason is not None else exc).strip() or type(exc).__name__


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
        DownloadError: no mirror could be reached (e.g. no internet); the
            message is one line naming every mirror tried.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    bad_checksum = False
    for url in urls:
        h = hashlib.md5(usedforsecurity=False)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
                log.info("downloading %s -> %s", url, dest)
                while block := resp.read(1 << 20):
                    h.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as e:
            part.unlink(missing_ok=True)
            log.debug("mirror failed: %s: %s", url, e)
            errors.append(f"{url} ({_reason(e)})")
            continue
        if h.hexdigest() != md5:
            part.unlink(missing_ok=True)
            bad_checksum = True
            errors.append(f"{url} (md5 {h.hexdigest()} != published {md5})")
            continue
        part.replace(dest)
        return dest
    tried = "; ".join(errors)
    if bad_checksum:
        raise ChecksumError(f"refusing {dest.name}: checksum mismatch (file corrupt or altered); "
                            f"nothing was kept. Tried: {tried}")
    raise DownloadError(f"could not download {dest.name} (are you offline?); tried {tried}. "
                        f"Copy the file into {dest.parent} by hand, or point --data-dir / "
                        "$ROBUSTDIAL_DATA at a copy")


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

    Files already present with the right md5 are not downloaded again. When a
    download fails, the folders this call created are removed again (a failed
    offline ``--download`` leaves no empty ``<root>/<name>/`` behind).

    Returns:
        ``directory``.
    """
    if name not in RESOURCES:
        raise ValueError(f"no download for dataset {name!r}; downloadable: {', '.join(RESOURCES)}.")
    directory = Path(directory)
    # the folders this call creates: removed again (if still empty) when it fails
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for res in RESOURCES[name]:
            path = directory / res.filename
            if path.exists() and md5sum(path) == res.md5:
                log.info("%s already present and verified", path)
            else:
                fetch(res.urls, path, res.md5, timeout=timeout)
            if res.extract:
                log.info("extracting %s", path)
                extract(path, directory)
    except BaseException:
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:  # not empty (a file was fetched) or not ours to remove
                break
        raise
    return directory

