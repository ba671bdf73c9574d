"""Build robustdial/data/embedded/fashion_mnist_mini.npz from the official Fashion-MNIST files.

The demo's embedded data set (no download): the first 6,000 official training
images and the first 1,000 official test images of Fashion-MNIST (Xiao, Rasul,
Vollgraf 2017; MIT licence, github.com/zalandoresearch/fashion-mnist),
downsampled from 28×28 to 14×14 by 2×2 mean pooling (rounded half up to uint8).
Rerun it to check the committed file: it prints the SHA-256 that
``robustdial/data/embedded/README.md`` records.

Usage::

    python scripts/make_fashion_mnist_mini.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "robustdial" / "data" / "embedded" / "fashion_mnist_mini.npz"
OFFICIAL_MD5 = {  # the published md5s of the official files
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if hashlib.md5(raw).hexdigest() != OFFICIAL_MD5[path.name]:
        raise SystemExit(f"{path}: md5 differs from the official file; re-fetch it")
    data = gzip.decompress(raw)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _down(images: np.ndarray) -> np.ndarray:
    n = images.shape[0]
    pooled = images.reshape(n, 14, 2, 14, 2).astype(np.uint16).sum(axis=(2, 4))  # 4 × mean
    return ((pooled + 2) // 4).astype(np.uint8)  # mean, rounded half up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    d = args.data_dir / "fashion-mnist"
    x_tr = _down(_idx(d / "train-images-idx3-ubyte.gz")[: args.n_train])
    y_tr = _idx(d / "train-labels-idx1-ubyte.gz")[: args.n_train].astype(np.uint8)
    x_te = _down(_idx(d / "t10k-images-idx3-ubyte.gz")[: args.n_test])
    y_te = _idx(d / "t10k-labels-idx1-ubyte.gz")[: args.n_test].astype(np.uint8)
    buf = io.BytesIO()
    # a fixed, uncompressed-metadata layout: same bytes on every run
    np.savez_compressed(buf, train_images=x_tr, train_labels=y_tr, test_images=x_te, test_labels=y_te)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(buf.getvalue())
    print(f"wrote {args.out} ({len(buf.getvalue())} bytes), sha256 {hashlib.sha256(buf.getvalue()).hexdigest()}")
    print("class counts train", np.bincount(y_tr, minlength=10).tolist(), "test",
          np.bincount(y_te, minlength=10).tolist())


if __name__ == "__main__":
    main()
