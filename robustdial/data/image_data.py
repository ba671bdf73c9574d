"""In-memory image datasets: :class:`ImageData` and the dataset error types.

Images are kept as ``uint8`` tensors of shape (N, C, H, W) with pixel values in
0..255, labels as ``int64`` (N,). The batch iterator (``loader.py``) converts to
float32 in [0, 1] on the device, one batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

__all__ = ["ImageData", "DatasetNotFoundError", "ChecksumError", "DatasetFileError", "DownloadError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked for them.

    The message names the directory searched, the files expected there and how
    to fix it (``--data-dir`` / ``root=``, ``$ROBUSTDIAL_DATA`` or
    ``download=True`` / ``--download``).
    """


class ChecksumError(ValueError):
    """A dataset file's md5 differs from the published checksum (downloaded or on disk)."""


class DatasetFileError(ValueError):
    """A dataset file is present but unusable: truncated, corrupt, or labels outside [0, K).

    The message names the file and says how to re-fetch it.

    Attributes:
        path: the offending file (or folder).
    """

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class DownloadError(OSError):
    """A dataset file could not be fetched from any of its mirrors."""


@dataclass
class ImageData:
    """A labelled image dataset held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), pixel values 0..255.
        labels: int64 tensor (N,), class indices in ``[0, len(classes))``.
        name: dataset name as given to ``load_dataset`` (e.g. ``"cifar10"``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        classes: human-readable class names, index = label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str = ""
    split: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if isinstance(self.images, np.ndarray):
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        if isinstance(self.labels, np.ndarray):
            self.labels = torch.from_numpy(np.ascontiguousarray(self.labels)).long()
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"ImageData.images must be a uint8 tensor (N, C, H, W); got dtype "
                f"{self.images.dtype} and shape {tuple(self.images.shape)}. Convert "
                "float images in [0, 1] with (x * 255).round().to(torch.uint8)."
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"ImageData.labels must be an int64 tensor (N,); got dtype "
                f"{self.labels.dtype} and shape {tuple(self.labels.shape)}."
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"ImageData has {self.images.shape[0]} images but "
                f"{self.labels.shape[0]} labels; they must match."
            )
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        """Device that holds the images."""
        return self.images.device

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``, else ``max(label) + 1``)."""
        if self.classes:
            return len(self.classes)
        return int(self.labels.max().item()) + 1 if len(self) else 0

    def subset(self, n_or_indices: int | Sequence[int] | torch.Tensor | np.ndarray) -> ImageData:
        """Return a new ImageData with some of the samples.

        Args:
            n_or_indices: an int ``n`` keeps the first ``n`` samples (all of them
                when ``n >= len(self)``); a sequence / tensor / array of indices
                (or a boolean mask of length N) keeps those samples in that order.

        Returns:
            A new ImageData (same name, split and classes).
        """
        if isinstance(n_or_indices, (int, np.integer)) and not isinstance(n_or_indices, bool):
            n = int(n_or_indices)
            if n < 0:
                raise ValueError(f"subset(n) needs n >= 0, got {n}.")
            return replace(self, images=self.images[:n], labels=self.labels[:n])
        idx = torch.as_tensor(np.asarray(n_or_indices) if not isinstance(n_or_indices, torch.Tensor)
                              else n_or_indices)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {tuple(idx.shape)}.")
            idx = idx.nonzero().flatten()
        idx = idx.long().to(self.images.device)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"subset indices out of range for a dataset of {len(self)} samples.")
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageData:
        """Return a copy on ``device`` (``self`` when already there). Images stay uint8."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return replace(
            self,
            images=self.images.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
        )

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (f"ImageData(name={self.name!r}, split={self.split!r}, n={n}, shape=({c}, {h}, {w}), "
                f"classes={len(self.classes)}, device={self.images.device})")
