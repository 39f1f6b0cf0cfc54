"""Process-group helpers for fit/evaluate under torchrun (gloo on CPU, nccl on GPU).

The convention throughout: a loader's ``batch_size`` is the *global* batch. Under W
processes, training splits each global batch into W parts (one per process), so that
DistributedDataParallel's gradient average equals the single-process gradient of that
batch; evaluation gives each process whole batches of its own and sums the results.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from typing import Any, Final

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

__all__: list[str] = []

#: Seconds a process waits for the others in one collective before giving up (default
#: 600; torch's own default is 30 minutes), for the process group that fit starts.
TIMEOUT_ENV: Final = "TP3NETS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S: Final = 600.0


def timeout_seconds() -> float:
    """The collective timeout: ``TP3NETS_DIST_TIMEOUT`` seconds, default 600.

    Raises:
        ValueError: a value that is not a positive number of seconds.
    """
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched() -> bool:
    """Whether this process is one of several: a group exists, or torchrun describes one."""
    if is_distributed():
        return True
    return (dist.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
            and "MASTER_ADDR" in os.environ)


def local_world_size() -> int:
    """Processes on this node (torchrun's ``LOCAL_WORLD_SIZE``; else the world size)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def gpus_for_every_process() -> bool:
    """Whether each process on this node can have a CUDA device of its own.

    Every process of a node sees the same counts, so all of them decide alike.
    """
    return torch.cuda.is_available() and torch.cuda.device_count() >= local_world_size()


def init_from_env(device: torch.device) -> bool:
    """Start the process group that ``torchrun`` describes in the environment, once.

    The backend follows the device the process trains on: nccl for a CUDA device (made
    the current one), gloo otherwise. Does nothing outside torchrun (no ``WORLD_SIZE`` > 1
    and ``MASTER_ADDR``); where a group already exists, checks that its backend can carry
    tensors of ``device``. Returns whether a distributed group is active afterwards.

    Raises:
        ValueError: an existing nccl group and a device other than CUDA.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        if is_distributed() and dist.get_backend() == "nccl" and device.type != "cuda":
            raise ValueError(
                f"the process group uses nccl, which carries CUDA tensors only, but the "
                f"device is {str(device)!r}; start the group with gloo to train on the CPU"
            )
        return is_distributed()
    if not launched():
        return False
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return is_distributed()


def check_same_batches(loader: Any, name: str) -> None:
    """Refuse, before the first step, ranks whose loaders hold different numbers of
    batches: DDP all-reduces the gradients at every step, so a rank with more batches
    would wait forever for the others. Loaders without ``len()`` cannot be checked."""
    try:
        n: int | None = len(loader)
    except TypeError:
        n = None
    counts = all_gather_object(n)
    if None in counts or len(set(counts)) == 1:
        return
    shown = ", ".join(f"rank {r} {c}" for r, c in enumerate(counts))
    raise ValueError(
        f"rank {rank()}: the ranks' {name}s have different numbers of batches ({shown}); "
        f"every rank must take as many steps, or the gradient all-reduce waits forever. "
        f"Give every rank the same dataset: fit shards it across the ranks itself"
    )


def explain_timeout(exc: BaseException, where: str) -> BaseException | None:
    """A clearer error for a collective that timed out, naming this rank, or ``None``
    when ``exc`` is no timeout."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or ("timed out" not in text.lower() and (
        "timeout" not in text.lower()
    )):
        return None
    stalled = stalled_ranks()
    who = (
        f"rank{'s' if len(stalled) > 1 else ''} {', '.join(map(str, stalled))} stalled or "
        f"died (did not reach it)" if stalled else "a rank has stalled or died"
    )
    return RuntimeError(
        f"rank {rank()}: waited more than {timeout_seconds():g} s for the other ranks "
        f"during {where}: {who} (set {TIMEOUT_ENV} to wait longer or shorter). "
        f"torch said: {text.strip().splitlines()[0] if text.strip() else type(exc).__name__}"
    )


_WAITED: Final = "tp3nets/timed_out/"


def stalled_ranks() -> list[int]:
    """After this rank's collective timed out: the ranks that did not time out too.

    Every rank whose collective times out says so in the process group's store, then
    waits a short grace (a fifth of the timeout, 1 to 10 s) for the others to say so:
    the ranks that stay silent never reached the collective, so they are the ones that
    stalled (or died). An empty list when the store cannot tell.
    """
    import time

    try:
        store = dist.distributed_c10d._get_default_store()
        world, me = world_size(), rank()
        store.set_timeout(datetime.timedelta(seconds=5))
        store.set(f"{_WAITED}{me}", "1")
        said = {me}
        deadline = time.monotonic() + min(10.0, max(1.0, timeout_seconds() / 5))
        while len(said) < world and time.monotonic() < deadline:
            said.update(r for r in range(world) if store.check([f"{_WAITED}{r}"]))
            time.sleep(0.1)
    except Exception:  # the store's host (rank 0) gone, or no store: no names
        return []
    return [r for r in range(world) if r not in said]


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (plain Python data only)."""
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says so (a callback asking to stop)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart)."""
    for buf in model.buffers():
        dist.broadcast(buf, src=0)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)  # no device_ids on the CPU


def _shared_seed() -> int:
    """Rank 0's torch seed, so that every rank draws the same shuffling order."""
    t = torch.tensor([torch.initial_seed() % 2**31], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    dist.broadcast(t, src=0)
    return int(t.item())


class _RoundRobinBatches(Sampler[list[int]]):
    """Whole batches ``rank, rank + W, …`` of a sequential batching (for evaluation)."""

    def __init__(self, n: int, batch_size: int, drop_last: bool, rank: int, world: int) -> None:
        self.batches = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batches):
            if i % self.world == self.rank:
                yield batch

    def __len__(self) -> int:
        return len(range(self.rank, len(self.batches), self.world))


def _loader_options(loader: DataLoader[Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        opts["prefetch_factor"] = loader.prefetch_factor
        opts["multiprocessing_context"] = loader.multiprocessing_context
    return opts


def shard_loader(loader: Any, *, train: bool) -> Any:
    """This rank's share of ``loader``.

    Training: each global batch split across ranks, padded where a split would leave a
    rank empty, so every rank takes the same number of steps. Evaluation: whole batches
    dealt round-robin, no padding, so no sample is seen twice. Any iterable other than a
    TensorLoader or DataLoader is taken as this rank's own share and passed through.
    """
    from ..data._datasets import TensorLoader

    world, r = world_size(), rank()
    if isinstance(loader, TensorLoader):
        if loader.num_replicas > 1:
            return loader
        return loader.shard(r, world, pad=train)
    if isinstance(loader, DataLoader):
        from torch.utils.data.distributed import DistributedSampler

        if isinstance(loader.sampler, DistributedSampler) or isinstance(
            loader.batch_sampler, _RoundRobinBatches
        ):
            return loader  # already sharded by the caller
        ds = loader.dataset
        if isinstance(ds, IterableDataset):
            raise TypeError(
                "under torchrun, fit/evaluate cannot shard a DataLoader over an "
                "IterableDataset; give each process its own share of the stream"
            )
        if loader.batch_size is None or not isinstance(
            loader.sampler, (SequentialSampler, RandomSampler)
        ):
            raise TypeError(
                "under torchrun, fit/evaluate shard DataLoaders built with batch_size= and "
                f"shuffle=True/False; this one has a {type(loader.sampler).__name__} and "
                f"batch_sampler {type(loader.batch_sampler).__name__}: give it a "
                "DistributedSampler yourself"
            )
        n = len(ds)  # type: ignore[arg-type]
        if not train:
            return DataLoader(
                ds,
                batch_sampler=_RoundRobinBatches(n, loader.batch_size, loader.drop_last, r, world),
                **_loader_options(loader),
            )
        if loader.batch_size % world:
            raise ValueError(
                f"under torchrun with {world} processes, the DataLoader's batch_size "
                f"({loader.batch_size}) must be a multiple of {world}: it is the global batch, "
                f"split across the processes"
            )
        sampler: DistributedSampler[Any] = DistributedSampler(
            ds,
            num_replicas=world,
            rank=r,
            shuffle=isinstance(loader.sampler, RandomSampler),
            seed=_shared_seed(),
            drop_last=loader.drop_last,
        )
        return DataLoader(
            ds,
            batch_size=loader.batch_size // world,
            sampler=sampler,
            drop_last=loader.drop_last,
            **_loader_options(loader),
        )
    return loader  # any other iterable: this process's own share, as the caller made it
