"""Process-group helpers for fit/evaluate under torchrun (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, Sampler

__all__: list[str] = []


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def all_reduce_sum(t: Tensor) -> None:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says so (a callback asking to stop)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)  # no device_ids on the CPU


class _ShardSampler(Sampler[int]):
    """This rank's share of a dataset, round-robin, with no padding (for evaluation)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Any:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def shard_loader(loader: Any, *, train: bool) -> Any:
    """Give this rank its share: padded for training (equal batch counts), exact for eval."""
    from .data import TensorLoader

    if isinstance(loader, TensorLoader):
        if loader.num_replicas > 1:
            return loader
        return loader.shard(rank(), world_size(), pad=train)
    if isinstance(loader, DataLoader):
        from torch.utils.data.distributed import DistributedSampler

        if isinstance(loader.sampler, (DistributedSampler, _ShardSampler)):
            return loader
        ds = loader.dataset
        sampler: Sampler[int]
        if train:
            sampler = DistributedSampler(
                ds,  # type: ignore[arg-type]
                shuffle=isinstance(loader.sampler, RandomSampler),
                drop_last=loader.drop_last,
            )
        else:
            sampler = _ShardSampler(len(ds), rank(), world_size())  # type: ignore[arg-type]
        return DataLoader(
            ds,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            persistent_workers=loader.persistent_workers,
        )
    raise TypeError(
        f"under torchrun, fit/evaluate shard TensorLoader and DataLoader; got "
        f"{type(loader).__name__}: shard your iterable yourself and pass it per rank"
    )
