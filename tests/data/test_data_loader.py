"""batches / BatchLoader: coverage, order, determinism, values and DDP shards."""

from __future__ import annotations

import pytest
import torch

from robustdial.data import BatchLoader, ImageData, batches, load_dataset, shard_indices


def _toy(n=103, c=3, h=8, w=8, name="toy"):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return ImageData(images, torch.arange(n), name, "train")  # label = sample index


def test_batches_values_order_and_types():
    d = _toy()
    out = list(batches(d, 32))
    assert [len(y) for _, y in out] == [32, 32, 32, 7]
    x = torch.cat([b[0] for b in out])
    y = torch.cat([b[1] for b in out])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.arange(103))
    assert torch.allclose(x, d.images.float() / 255) and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("augment", [None, "crop_flip"])
def test_shuffle_covers_every_sample_once(augment):
    d = _toy()
    y = torch.cat([b[1] for b in batches(d, 10, shuffle=True, augment=augment,
                                         generator=torch.Generator().manual_seed(0))])
    assert sorted(y.tolist()) == list(range(103))
    assert not torch.equal(y, torch.arange(103))


def test_drop_last_and_batch_size_errors():
    d = _toy()
    assert [len(y) for _, y in batches(d, 25, drop_last=True)] == [25] * 4
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(d, 0))


def test_batches_deterministic_given_generator():
    d = _toy()

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return list(batches(d, 16, shuffle=True, augment="crop_flip", generator=g))

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(a, c))


def test_augmented_batches_are_crops_of_their_own_samples():
    d = _toy(n=20)
    x, y = next(iter(batches(d, 20, shuffle=True, augment="crop_flip",
                             generator=torch.Generator().manual_seed(4))))
    assert x.shape == (20, 3, 8, 8)
    pad = torch.nn.functional.pad(d.images[y].float() / 255, (4, 4, 4, 4))
    for b in range(20):  # each output is a shift (maybe mirrored) of the sample it is labelled with
        cands = [pad[b, :, i:i + 8, j:j + 8] for i in range(9) for j in range(9)]
        assert any(torch.equal(x[b], c) or torch.equal(x[b], c.flip(-1)) for c in cands)


def test_auto_augment_uses_dataset_default():
    d = _toy(n=8, name="cifar10")
    x_none, _ = next(iter(batches(d, 8)))
    x_auto, _ = next(iter(batches(d, 8, augment="auto", generator=torch.Generator().manual_seed(0))))
    assert x_auto.shape == x_none.shape and not torch.equal(x_auto, x_none)
    m = _toy(n=8, name="mnist")
    assert torch.equal(next(iter(batches(m, 8, augment="auto")))[0], next(iter(batches(m, 8)))[0])


def test_batch_loader_epochs_and_len():
    d = _toy()
    loader = BatchLoader(d, 10, shuffle=True, augment="crop_flip", seed=3)
    assert len(loader) == 11 == len(list(loader))
    e0 = torch.cat([y for _, y in loader])
    e0_again = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    e1 = torch.cat([y for _, y in loader])
    assert torch.equal(e0, e0_again) and not torch.equal(e0, e1)
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(103))
    # a fresh loader with the same seed and epoch reproduces images as well as order
    fresh = BatchLoader(d, 10, shuffle=True, augment="crop_flip", seed=3)
    fresh.set_epoch(1)
    loader.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fresh, loader))
    assert len(BatchLoader(d, 10, drop_last=True)) == 10 == len(list(BatchLoader(d, 10, drop_last=True)))


@pytest.mark.parametrize("n", [120, 103])
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_shards(n, world_size):
    d = _toy(n=n)
    loaders = [BatchLoader(d, 8, shuffle=True, seed=1, rank=r, world_size=world_size)
               for r in range(world_size)]
    for ld in loaders:
        ld.set_epoch(2)
    shards = [torch.cat([y for _, y in ld]).tolist() for ld in loaders]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # every rank takes the same number of steps
    assert {len(ld) for ld in loaders} == {len(list(loaders[0]))}
    seen = [i for s in shards for i in s]
    assert set(seen) == set(range(n))  # padded shards cover the data
    assert len(seen) - n == (-n) % world_size  # at most W-1 repeats, only when n % W != 0
    if n % world_size == 0:
        assert len(set(seen)) == len(seen)  # disjoint
    # without padding: disjoint, equal, only the tail dropped
    strict = [torch.cat([y for _, y in BatchLoader(d, 8, shuffle=True, seed=1, rank=r,
                                                   world_size=world_size, pad_shards=False)]).tolist()
              for r in range(world_size)]
    flat = [i for s in strict for i in s]
    assert len(set(flat)) == len(flat) == n - n % world_size
    assert len({len(s) for s in strict}) == 1


def test_shard_indices_errors_and_tiny():
    with pytest.raises(ValueError, match="rank"):
        shard_indices(torch.arange(4), 2, 2)
    assert shard_indices(torch.arange(1), 2, 3).tolist() == [0]  # padding repeats a tiny order


def test_loader_with_real_digits():
    d = load_dataset("digits", split="train")
    x, y = next(iter(BatchLoader(d, 64, shuffle=True, device="cpu")))
    assert x.shape == (64, 1, 8, 8) and y.max() < 10 and x.max() == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu():
    d = _toy()
    cpu = list(batches(d, 16, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(0)))
    gpu = list(batches(d, 16, shuffle=True, augment="crop_flip", device="cuda",
                       generator=torch.Generator().manual_seed(0)))
    assert gpu[0][0].device.type == "cuda" and gpu[0][1].device.type == "cuda"
    assert all(torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu()) for a, b in zip(cpu, gpu))
    loader = BatchLoader(d, 16, shuffle=True, augment="crop_flip", device="cuda", seed=0)
    assert loader.data.images.device.type == "cuda"
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == list(range(103))
