"""MNIST and tensor datasets held in memory, batched without per-sample Python work."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

__all__ = [
    "DATA_ENV",
    "BatchRandomAffine",
    "TensorLoader",
    "default_data_root",
    "load_mnist",
    "mnist_splits",
    "train_val_split",
]

DATA_ENV: Final = "TP3NETS_DATA"
"""Environment variable naming the folder that holds ``MNIST/raw/`` (torchvision's layout)."""


def default_data_root() -> Path:
    """The data folder: ``$TP3NETS_DATA`` if set, else ``~/.cache/tp3nets/data``.

    Example:
        >>> import os
        >>> os.environ["TP3NETS_DATA"] = "/data"
        >>> str(default_data_root())
        '/data'
        >>> del os.environ["TP3NETS_DATA"]
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/tp3nets/data").expanduser()


def load_mnist(
    root: str | os.PathLike[str] | None = None, *, train: bool = True, download: bool = False
) -> TensorDataset:
    """Read MNIST into memory: uint8 images ``(N, 1, 28, 28)`` and int64 labels ``(N,)``.

    torchvision's :class:`~torchvision.datasets.MNIST` reads the files, so ``root`` has
    torchvision's layout (``root/MNIST/raw/train-images-idx3-ubyte`` …). Keeping the images
    as uint8 takes 47 MB for the training set; :class:`TensorLoader` scales each batch to
    floats in [0, 1], as ``ToTensor()`` does.

    Args:
        root: the folder holding ``MNIST/``; default :func:`default_data_root`.
        train: the 60,000 training images, or the 10,000 test images.
        download: fetch the files when they are missing (needs a network).

    Returns:
        A :class:`~torch.utils.data.TensorDataset` of ``(images, labels)``.

    Raises:
        FileNotFoundError: the files are not there and ``download`` is false; the message
            names the folder looked in and how to point elsewhere.
    """
    from torchvision.datasets import MNIST

    folder = Path(root).expanduser() if root is not None else default_data_root()
    try:
        ds = MNIST(str(folder), train=train, download=download)
    except RuntimeError as exc:
        if download:
            raise
        raise FileNotFoundError(
            f"MNIST not found in {str(folder / 'MNIST' / 'raw')!r} ({exc}); pass the folder "
            f"that holds MNIST/raw/ (root=... in Python, --data DIR on the command line), "
            f"set {DATA_ENV}, or use download=True when online"
        ) from None
    images = ds.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
    labels = ds.targets.to(torch.int64)
    return TensorDataset(images, labels)


def train_val_split(
    dataset: TensorDataset, val_size: int | float = 5000, *, seed: int = 42
) -> tuple[TensorDataset, TensorDataset]:
    """Split a dataset into train and validation parts with a seeded generator.

    The indices are exactly those of the reference lab's
    ``random_split(ds, [n_train, n_val], generator=torch.Generator().manual_seed(seed))``
    (its Question 4), so the same seed gives the same split, run after run.

    Args:
        dataset: the tensors to split.
        val_size: validation samples, as a count or a fraction in (0, 1).
        seed: seed of the generator.

    Returns:
        ``(train, val)`` as in-memory :class:`~torch.utils.data.TensorDataset`\\ s.

    Example:
        >>> import torch
        >>> ds = TensorDataset(torch.arange(10), torch.arange(10))
        >>> train, val = train_val_split(ds, 3, seed=42)
        >>> len(train), len(val)
        (7, 3)
        >>> from torch.utils.data import random_split
        >>> _, ref = random_split(ds, [7, 3], generator=torch.Generator().manual_seed(42))
        >>> val.tensors[0].tolist() == [int(ds[i][0]) for i in ref.indices]
        True
    """
    n = len(dataset)
    n_val = round(val_size * n) if isinstance(val_size, float) else val_size
    if isinstance(val_size, float) and not 0.0 < val_size < 1.0:
        raise ValueError(f"val_size as a fraction must be in (0, 1), got {val_size}")
    if not 0 < n_val < n:
        raise ValueError(f"val_size must leave both parts non-empty, got {val_size} of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[: n - n_val], perm[n - n_val :]
    tensors = dataset.tensors
    return (
        TensorDataset(*(t[train_idx] for t in tensors)),
        TensorDataset(*(t[val_idx] for t in tensors)),
    )


def mnist_splits(
    root: str | os.PathLike[str] | None = None,
    *,
    val_size: int | float = 5000,
    seed: int = 42,
    download: bool = False,
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """MNIST as ``(train, val, test)``: the seeded split of the 60,000, and the 10,000 test.

    Choose hyperparameters on ``val``; touch ``test`` only to report a final figure.
    """
    train, val = train_val_split(load_mnist(root, train=True, download=download), val_size,
                                 seed=seed)
    return train, val, load_mnist(root, train=False, download=download)


class TensorLoader:
    """Batches of in-memory tensors, cut by indexing: no per-sample Python work.

    A drop-in for :class:`~torch.utils.data.DataLoader` over tensors: iterate it for
    ``(x, y)`` batches, ``len()`` gives the batch count, ``.dataset`` the data. uint8 images
    are scaled to float32 in [0, 1] batch by batch. Shuffling draws from a generator seeded
    by ``(seed, epoch)``, so an epoch's order depends on nothing else (resuming a run replays
    it exactly); :func:`tp3nets.fit` calls :meth:`set_epoch`, and iterating again without it
    moves to the next epoch.

    Args:
        dataset: a :class:`~torch.utils.data.TensorDataset` or a tuple of tensors with the
            same first dimension.
        batch_size: samples per batch.
        shuffle: draw a new order each epoch.
        seed: base seed of the shuffling.
        drop_last: drop a last, shorter batch.
        transform: applied to each float image batch (augmentation, normalisation).
        scale_uint8: turn uint8 images into floats in [0, 1].

    Example:
        >>> import torch
        >>> images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
        >>> loader = TensorLoader((images, torch.arange(10)), batch_size=4, shuffle=True)
        >>> [tuple(x.shape) for x, _ in loader]
        [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
        >>> len(loader), next(iter(loader))[0].dtype
        (3, torch.float32)
    """

    def __init__(
        self,
        dataset: TensorDataset | tuple[Tensor, ...],
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: Callable[[Tensor], Tensor] | None = None,
        scale_uint8: bool = True,
    ) -> None:
        tensors = dataset.tensors if isinstance(dataset, TensorDataset) else tuple(dataset)
        if not tensors or not all(isinstance(t, Tensor) for t in tensors):
            raise TypeError("TensorLoader expects a TensorDataset or a tuple of tensors")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(f"TensorLoader tensors differ in their first dimension: {shapes}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset = TensorDataset(*tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.transform = transform
        self.scale_uint8 = scale_uint8
        self.epoch = 0
        self.rank = 0
        self.num_replicas = 1
        self.pad = False

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order the next iteration uses."""
        self.epoch = epoch

    def shard(self, rank: int, num_replicas: int, *, pad: bool) -> TensorLoader:
        """A copy that yields only this process's share of every epoch.

        Each epoch's (shuffled) order is dealt out round-robin. With ``pad`` (training) the
        order is first extended by repeating its start, so every rank gets the same number of
        batches, as :class:`~torch.utils.data.DistributedSampler` does; without it
        (evaluation) no sample is seen twice.
        """
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        new = TensorLoader(
            self.tensors,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
            transform=self.transform,
            scale_uint8=self.scale_uint8,
        )
        new.epoch, new.rank, new.num_replicas, new.pad = self.epoch, rank, num_replicas, pad
        return new

    def _indices(self) -> Tensor | None:
        n = self.tensors[0].shape[0]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx: Tensor | None = torch.randperm(n, generator=g)
        else:
            idx = None
        if self.num_replicas == 1:
            return idx
        full = idx if idx is not None else torch.arange(n)
        if self.pad:
            total = math.ceil(n / self.num_replicas) * self.num_replicas
            if total > n:
                full = torch.cat([full, full[: total - n]])
        return full[self.rank :: self.num_replicas]

    def _count(self) -> int:
        n = self.tensors[0].shape[0]
        if self.num_replicas > 1:
            if self.pad:
                n = math.ceil(n / self.num_replicas)
            else:
                n = len(range(self.rank, n, self.num_replicas))
        return n

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        idx = self._indices()
        n = self._count()
        self.epoch += 1
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            if idx is None:
                batch = tuple(t[start:end] for t in self.tensors)
            else:
                sel = idx[start:end]
                batch = tuple(t[sel] for t in self.tensors)
            x = batch[0]
            if self.scale_uint8 and x.dtype == torch.uint8:
                x = x.float().div_(255)
            if self.transform is not None:
                x = self.transform(x)
            yield (x, *batch[1:])


class BatchRandomAffine(nn.Module):
    """Random rotation, scaling and translation of a whole image batch in one resampling.

    Each image gets its own transform, drawn from the global torch generator (so
    :func:`tp3nets.seed_everything` and resumed checkpoints reproduce it). Applied as the
    ``transform`` of a :class:`TensorLoader`, it costs one ``grid_sample`` per batch instead
    of a PIL call per image.

    Args:
        degrees: maximal rotation, either way.
        translate: maximal shift as a fraction of the image side.
        scale: range of the zoom factor.

    Example:
        >>> import torch
        >>> aug = BatchRandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
        >>> aug(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 1, 28, 28])
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        super().__init__()
        if degrees < 0 or not 0 <= translate < 1 or not 0 < scale[0] <= scale[1]:
            raise ValueError(
                "BatchRandomAffine expects degrees >= 0, 0 <= translate < 1 and "
                f"0 < scale[0] <= scale[1], got {degrees}, {translate}, {scale}"
            )
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.scale = (float(scale[0]), float(scale[1]))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        opts = {"device": x.device, "dtype": torch.float32}
        angle = (torch.rand(n, **opts) * 2 - 1) * math.radians(self.degrees)
        zoom = torch.empty(n, **opts).uniform_(*self.scale)
        shift = (torch.rand(n, 2, **opts) * 2 - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
            1,
        )  # (N, 2, 3): output → input coordinates
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out: Tensor = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                    align_corners=False)
        return out

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}"
