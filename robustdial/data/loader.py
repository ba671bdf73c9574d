"""Fast batch iteration over an in-memory :class:`ImageData`.

The whole uint8 dataset sits on the target device; a batch is an index gather,
an optional on-device crop/flip (``augment.py``) and a conversion to float32 in
[0, 1]. No worker processes, no per-sample Python. All randomness comes from a
``torch.Generator``, so a given seed reproduces the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from robustdial.data.augment import CropFlip, get_augmentation
from robustdial.data.image_data import ImageData

__all__ = ["batches", "BatchLoader", "shard_indices"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _iterate(data: ImageData, order: torch.Tensor, batch_size: int, aug: CropFlip | None,
             generator: torch.Generator | None, drop_last: bool) -> Iterator[Batch]:
    """Yield batches of ``data`` (already on its target device) in ``order``."""
    order = order.to(data.images.device)
    n = order.numel()
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        x = data.images[idx]  # uint8 (B, C, H, W); augmenting uint8 moves 4x fewer bytes
        if aug is not None:
            x = aug(x, generator)
        yield x.float().div_(255.0), data.labels[idx]


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")


def batches(
    data: ImageData,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: str | CropFlip | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """Iterate once over ``data`` in batches.

    The uint8 images are moved to ``device`` once per call; call ``data.to(device)``
    beforehand (or use :class:`BatchLoader`) to avoid a copy per epoch.

    Args:
        data: the dataset.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: visit samples in a random order (``torch.randperm`` from ``generator``).
        augment: ``None`` / ``"none"``, ``"auto"`` (the dataset's default from
            ``dataset_info``), ``"crop_flip"``, ``"crop_flip_96"`` or a ``CropFlip``.
        device: where batches are produced; default the device of ``data``.
        generator: source of all randomness (order, then crops/flips batch by
            batch); ``None`` uses torch's global RNG.
        drop_last: drop the final incomplete batch.

    Yields:
        ``(x, y)``: x float32 (B, C, H, W) in [0, 1], y int64 (B,), on ``device``.
    """
    _check_batch_size(batch_size)
    aug = get_augmentation(augment, data.name)
    if device is not None:
        data = data.to(device)
    n = len(data)
    if shuffle:
        gdev = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gdev)
    else:
        order = torch.arange(n)
    return _iterate(data, order, batch_size, aug, generator, drop_last)


def shard_indices(order: torch.Tensor, rank: int, world_size: int, *, pad: bool = True) -> torch.Tensor:
    """This rank's part of a global sample order, all ranks equally long.

    Rank r takes positions r, r + W, r + 2W, ... (as ``DistributedSampler``).
    With ``pad`` the order is first extended by repeating its head up to a
    multiple of ``W`` (every sample is seen; at most W − 1 appear twice);
    without it the tail is dropped (shards disjoint; up to W − 1 samples unseen).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    n = order.numel()
    if pad:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            reps = math.ceil(total / n)
            order = order.repeat(reps)[:total] if n else order
    else:
        total = n - n % world_size
    return order[rank:total:world_size]


def _mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from non-negative ints (NumPy SeedSequence)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, dtype=np.uint64)[0] >> 1)


class BatchLoader:
    """Reusable, reproducible, optionally sharded batch iterator (what ``fit`` uses).

    The dataset is moved to ``device`` once, at construction. Each pass
    (``iter(loader)``) uses a shuffle order seeded by ``(seed, epoch)`` —
    identical on every rank — and crop/flip randomness seeded by
    ``(seed, epoch, rank)``. Call :meth:`set_epoch` before each epoch for a new
    order; iterating twice in the same epoch gives the same batches.

    Args:
        data: the dataset.
        batch_size: samples per batch *per rank*.
        shuffle: new random order every epoch.
        augment: see :func:`batches`.
        device: where the data and batches live (default: data's device).
        seed: base seed (non-negative int).
        drop_last: drop each rank's final incomplete batch.
        rank, world_size: DDP sharding; every rank gets a disjoint, equally long
            strided shard of the epoch's order (see :func:`shard_indices`).
        pad_shards: pad the order so every sample is used (a few repeats) rather
            than dropping up to ``world_size − 1`` samples.
    """

    def __init__(self, data: ImageData, batch_size: int, *, shuffle: bool = False,
                 augment: str | CropFlip | None = None, device: torch.device | str | None = None,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 pad_shards: bool = True) -> None:
        _check_batch_size(batch_size)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}.")
        self.data = data.to(device) if device is not None else data
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = get_augmentation(augment, data.name)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.pad_shards = pad_shards
        self.epoch = 0

    @property
    def device(self) -> torch.device:
        return self.data.device

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentations the next pass uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch."""
        n, w = len(self.data), self.world_size
        return math.ceil(n / w) if self.pad_shards else n // w

    def __len__(self) -> int:
        m = self.num_samples
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def indices(self) -> torch.Tensor:
        """The sample indices this rank visits in the current epoch, in order (CPU int64)."""
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size == 1:
            return order
        return shard_indices(order, self.rank, self.world_size, pad=self.pad_shards)

    def __iter__(self) -> Iterator[Batch]:
        aug_gen = None
        if self.augment is not None:
            aug_gen = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, self.rank, 1))
        return _iterate(self.data, self.indices(), self.batch_size, self.augment, aug_gen,
                        self.drop_last)

    def __repr__(self) -> str:
        return (f"BatchLoader({self.data!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augment}, seed={self.seed}, rank={self.rank}/{self.world_size})")
