"""Batched, on-device data augmentation: random crop with zero padding and horizontal flip.

No per-sample Python loops: a batch is padded once and every crop is gathered
with one advanced-indexing op; flips are one ``torch.where``. Works on uint8 or
float tensors on any device. Random offsets come from an explicit
``torch.Generator`` so a seeded iterator is reproducible.

Named policies (the paper's settings, see REFERENCE.md):
``"crop_flip"`` — pad 4, random crop back to the input size, flip with p = 0.5
(CIFAR-10/100); ``"crop_flip_96"`` — pad 4, crop 96, flip (STL-10);
``"none"`` — identity (MNIST, Fashion-MNIST, SVHN, digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F

__all__ = ["CropFlip", "AUGMENTATIONS", "get_augmentation", "crop", "flip", "random_crop",
           "random_flip"]


def crop(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor,
         size: tuple[int, int] | None = None) -> torch.Tensor:
    """Crop each image at its own offset from the zero-padded batch.

    Args:
        x: images (B, C, H, W), any dtype.
        pad: zero padding on every side, in pixels.
        dy, dx: int64 (B,) top-left offsets in the padded image, in
            ``[0, H + 2·pad − size_h]`` and ``[0, W + 2·pad − size_w]``
            (``dy = dx = pad`` gives back the input).
        size: output (height, width); default the input size.

    Returns:
        (B, C, size_h, size_w): ``out[b] = padded[b, :, dy[b]:dy[b]+h, dx[b]:dx[b]+w]``.
    """
    B, C, H, W = x.shape
    h, w = size if size is not None else (H, W)
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x  # zeros, (B, C, H+2p, W+2p)
    dev = x.device
    rows = dy.to(dev)[:, None] + torch.arange(h, device=dev)  # (B, h)
    cols = dx.to(dev)[:, None] + torch.arange(w, device=dev)  # (B, w)
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where ``mask`` (bool (B,)) is True."""
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)


def _gen_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else x.device


def random_crop(x: torch.Tensor, pad: int, size: tuple[int, int] | None = None, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop ``size`` (default input size) at uniform random offsets.

    Draws ``dy`` then ``dx`` (each ``torch.randint`` of shape (B,)) from ``generator``.
    """
    B, _, H, W = x.shape
    h, w = size if size is not None else (H, W)
    if h > H + 2 * pad or w > W + 2 * pad:
        raise ValueError(f"cannot crop {h}x{w} from {H}x{W} images padded by {pad}.")
    gdev = _gen_device(x, generator)
    dy = torch.randint(0, H + 2 * pad - h + 1, (B,), generator=generator, device=gdev)
    dx = torch.randint(0, W + 2 * pad - w + 1, (B,), generator=generator, device=gdev)
    return crop(x, pad, dy, dx, (h, w))


def random_flip(x: torch.Tensor, p: float = 0.5, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability ``p`` (draws ``torch.rand(B)``)."""
    mask = torch.rand(x.shape[0], generator=generator, device=_gen_device(x, generator)) < p
    return flip(x, mask)


@dataclass(frozen=True)
class CropFlip:
    """Random crop with zero padding, then random horizontal flip.

    Attributes:
        pad: zero padding per side, pixels.
        size: crop size (square); ``None`` = the input size.
        flip: flip left-right with probability 0.5.
    """

    pad: int = 4
    size: int | None = None
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch (B, C, H, W) on its device; same generator state -> same output."""
        size = (self.size, self.size) if self.size is not None else None
        if self.pad or size is not None:
            x = random_crop(x, self.pad, size, generator=generator)
        if self.flip:
            x = random_flip(x, generator=generator)
        return x


AUGMENTATIONS: MappingProxyType[str, CropFlip | None] = MappingProxyType({
    "none": None,
    "crop_flip": CropFlip(pad=4, size=None, flip=True),
    "crop_flip_96": CropFlip(pad=4, size=96, flip=True),
})


def get_augmentation(augment: str | CropFlip | None, dataset: str = "") -> CropFlip | None:
    """Resolve ``None`` / ``"none"`` / ``"auto"`` / a policy name / a :class:`CropFlip`.

    ``"auto"`` uses the default of ``dataset`` (``dataset_info(dataset).augment``;
    none for unknown names).
    """
    if augment is None or isinstance(augment, CropFlip):
        return augment
    if augment == "auto":
        from robustdial.data.datasets import dataset_info

        try:
            augment = dataset_info(dataset).augment
        except ValueError:
            augment = "none"
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; choose None, 'auto' or one of "
                         f"{', '.join(AUGMENTATIONS)}.")
    return AUGMENTATIONS[augment]
