"""Datasets as uint8 tensors in memory and a fast, on-device batch iterator.

Public API: :func:`load_dataset`, :class:`ImageData`, :func:`dataset_info`,
:func:`batches`, :class:`BatchLoader` (see ``docs/internals.md``, "Data").
"""

from robustdial.data.augment import AUGMENTATIONS, CropFlip, get_augmentation
from robustdial.data.datasets import DatasetInfo, dataset_info, list_datasets, load_dataset, resolve_root
from robustdial.data.download import download_dataset
from robustdial.data.image_data import (ChecksumError, DatasetFileError, DatasetNotFoundError, DownloadError,
                                         ImageData)
from robustdial.data.loader import BatchLoader, batches, shard_indices

__all__ = [
    "AUGMENTATIONS",
    "BatchLoader",
    "ChecksumError",
    "CropFlip",
    "DatasetFileError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DownloadError",
    "ImageData",
    "batches",
    "dataset_info",
    "download_dataset",
    "get_augmentation",
    "list_datasets",
    "load_dataset",
    "resolve_root",
    "shard_indices",
]
