"""One process per device under ``torchrun``: process group, DDP wrapping, reductions.

``torchrun --nproc_per_node N script.py`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and joins the group (NCCL
on CUDA, Gloo on CPU). Each rank trains on its own shard of every global batch
(``BatchLoader(rank=, world_size=)``); DistributedDataParallel averages the
gradients, so a step equals a single-process step on the whole global batch —
except for BatchNorm, whose batch statistics are computed per rank.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init_distributed", "resolve_device", "wrap_ddp", "all_reduce_sum",
           "all_reduce_mean", "any_rank", "barrier", "shutdown"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device | None, info: DistInfo) -> torch.device:
    """``None`` -> CUDA if available else CPU; under torchrun CUDA means ``cuda:LOCAL_RANK``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but CUDA is not available; use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.distributed else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group if launched by torchrun (``WORLD_SIZE`` > 1); else single process.

    Uses an existing group when the caller already created one.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    want_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    backend = "nccl" if want_cuda else "gloo"
    dist.init_process_group(backend=backend)
    _log.info("joined process group: rank %d/%d (local %d), backend %s", rank, world, local, backend)
    return DistInfo(rank, world, local, created_group=True)


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device, *,
             find_unused_parameters: bool = True) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself.

    Rank 0's parameters and buffers are broadcast at construction, so every rank
    starts from the same weights.
    """
    if not info.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; identity in a single process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over ranks (in place; identity in a single process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (one collective + host sync)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo, *, clean: bool = True) -> None:
    """Leave the process group if :func:`init_distributed` created it.

    DDP's reducer sits in reference cycles; if it outlives its (gloo) process
    group it is destroyed during interpreter shutdown and the process aborts
    ("terminate called without an active exception"). So the cycles are
    collected first, and after a clean run the ranks meet at a barrier so none
    tears the group down while another still communicates. After an error
    (``clean=False``) there is no barrier: a crashed rank would never arrive.
    """
    if info.created_group and dist.is_initialized():
        gc.collect()
        if clean:
            dist.barrier()
        dist.destroy_process_group()
