"""On-device crop/flip: equals a slow per-sample reference, genuine shifts, seeded determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdial.data import AUGMENTATIONS, CropFlip, get_augmentation
from robustdial.data.augment import crop, flip, random_crop, random_flip


def _images(b=6, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (b, c, h, w), generator=g, dtype=torch.uint8)  # no zeros inside


def _reference_crop(x, pad, dy, dx, h, w):
    out = []
    for b in range(x.shape[0]):  # slow and obvious
        p = F.pad(x[b : b + 1], (pad, pad, pad, pad))[0]
        out.append(p[:, int(dy[b]) : int(dy[b]) + h, int(dx[b]) : int(dx[b]) + w])
    return torch.stack(out)


def test_crop_matches_slow_reference():
    x = _images()
    g = torch.Generator().manual_seed(1)
    dy = torch.randint(0, 9, (6,), generator=g)
    dx = torch.randint(0, 9, (6,), generator=g)
    assert torch.equal(crop(x, 4, dy, dx), _reference_crop(x, 4, dy, dx, 8, 8))
    # non-square output and a different size
    dy2 = torch.randint(0, 7, (6,), generator=g)
    dx2 = torch.randint(0, 5, (6,), generator=g)
    assert torch.equal(crop(x, 2, dy2, dx2, (6, 8)), _reference_crop(x, 2, dy2, dx2, 6, 8))


def test_centre_offset_is_identity_and_padding_is_zero():
    x = _images()
    assert torch.equal(crop(x, 4, torch.full((6,), 4), torch.full((6,), 4)), x)
    out = crop(x, 4, torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long))
    assert (out[:, :, :4] == 0).all() and (out[:, :, :, :4] == 0).all()
    assert torch.equal(out[:, :, 4:, 4:], x[:, :, :4, :4])


def test_random_crop_outputs_are_shifts_of_the_padded_image():
    x = _images(b=16)
    out = random_crop(x, 4, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (4, 4, 4, 4))
    shifts = set()
    for b in range(16):
        found = [(i, j) for i in range(9) for j in range(9)
                 if torch.equal(padded[b, :, i : i + 8, j : j + 8], out[b])]
        assert len(found) == 1, f"sample {b} is not a crop of its padded image"
        shifts.add(found[0])
    assert len(shifts) > 1  # offsets actually vary


def test_random_crop_same_seed_same_output_different_seed_differs():
    x = _images(b=32)
    a = random_crop(x, 4, generator=torch.Generator().manual_seed(5))
    b = random_crop(x, 4, generator=torch.Generator().manual_seed(5))
    c = random_crop(x, 4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crop_draws_dy_then_dx():
    x = _images()
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    dy = torch.randint(0, 9, (6,), generator=g2)
    dx = torch.randint(0, 9, (6,), generator=g2)
    assert torch.equal(random_crop(x, 4, generator=g1), _reference_crop(x, 4, dy, dx, 8, 8))


def test_flip():
    x = _images()
    mask = torch.tensor([True, False, True, False, False, True])
    out = flip(x, mask)
    for b in range(6):
        expected = x[b].flip(-1) if mask[b] else x[b]
        assert torch.equal(out[b], expected)
    assert torch.equal(flip(out, mask), x)
    assert torch.equal(random_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, p=0.0), x)
    many = _images(b=400, c=1, h=2, w=3)
    flipped = (random_flip(many, generator=torch.Generator().manual_seed(0)) != many).flatten(1).any(1)
    assert 150 < int(flipped.sum()) < 250  # about half


def test_crop_flip_policies():
    x = _images(b=4, h=32, w=32).float() / 255
    aug = get_augmentation("crop_flip")
    assert aug == CropFlip(pad=4, size=None, flip=True)
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(0)))
    stl = _images(b=2, h=96, w=96)
    assert get_augmentation("crop_flip_96")(stl).shape == (2, 3, 96, 96)
    assert get_augmentation("auto", "cifar10") is AUGMENTATIONS["crop_flip"]
    assert get_augmentation("auto", "stl10") is AUGMENTATIONS["crop_flip_96"]
    assert get_augmentation("auto", "mnist") is None and get_augmentation("none") is None
    assert get_augmentation("auto", "my-own-folder") is None
    with pytest.raises(ValueError, match="crop_flip"):
        get_augmentation("cutout")
    with pytest.raises(ValueError, match="cannot crop"):
        random_crop(x, 0, (40, 40))
