"""MNIST and tensor datasets held in memory, batched without per-sample Python work."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .._util._checks import check_int, check_real, check_seed, type_error

__all__ = [
    "DATA_ENV",
    "TensorLoader",
    "TensorSubset",
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
        root: the folder holding ``MNIST/raw/`` (that ``MNIST/`` or ``MNIST/raw/`` folder
            itself is accepted too); default :func:`default_data_root`.
        train: the 60,000 training images, or the 10,000 test images.
        download: fetch the files when they are missing (needs a network).

    Returns:
        A :class:`~torch.utils.data.TensorDataset` of ``(images, labels)``.

    Raises:
        FileNotFoundError: the files are not there and ``download`` is false; the message
            names the folder looked in and how to point elsewhere.
        ValueError: the files are there but corrupt or truncated.
    """
    from torchvision.datasets import MNIST

    folder = Path(root).expanduser() if root is not None else default_data_root()
    # Accept the MNIST/ or MNIST/raw/ folder itself, a common way to point at the files.
    if folder.name == "raw" and folder.parent.name == "MNIST":
        folder = folder.parent.parent
    elif folder.name == "MNIST" and (folder / "raw").is_dir():
        folder = folder.parent
    raw = folder / "MNIST" / "raw"
    try:
        ds = MNIST(str(folder), train=train, download=download)
    except RuntimeError as exc:
        if download:  # torchvision's own message: a failed download, or bad files
            raise
        if "not found" not in str(exc).lower():  # the files are there but do not parse
            raise _corrupt(raw, train, exc) from None
        raise FileNotFoundError(
            f"MNIST not found in {str(raw)!r} ({exc}; torchvision wants all four files, "
            f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            f"t10k-labels-idx1-ubyte, even for one split); pass the folder "
            f"that holds MNIST/raw/ (root=... in Python, --data DIR on the command line), "
            f"set {DATA_ENV}, or use download=True when online"
        ) from None
    except (AssertionError, ValueError, IndexError) as exc:  # (OSError: as it is)
        raise _corrupt(raw, train, exc) from None
    images = ds.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
    labels = ds.targets.to(torch.int64)
    return TensorDataset(images, labels)


def _corrupt(raw: Path, train: bool, exc: BaseException) -> ValueError:
    part = "train" if train else "t10k"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ValueError(
        f"the MNIST files {part}-images-idx3-ubyte / {part}-labels-idx1-ubyte in {str(raw)!r} "
        f"are corrupt or truncated ({detail}); delete them and copy or download them again"
    )


def train_val_split(
    dataset: TensorDataset | tuple[Tensor, ...], val_size: int | float = 5000, *, seed: int = 42
) -> tuple[TensorDataset, TensorDataset]:
    """Split a dataset into train and validation parts with a seeded generator.

    The indices are exactly those of the reference lab's
    ``random_split(ds, [n_train, n_val], generator=torch.Generator().manual_seed(seed))``
    (its Question 4), so the same seed gives the same split, run after run.

    Args:
        dataset: the tensors to split (a dataset, or a tuple of tensors).
        val_size: validation samples, as a count or a fraction in (0, 1) (rounded down,
            as :func:`~torch.utils.data.random_split` rounds its last part).
        seed: seed of the generator.

    Returns:
        ``(train, val)`` as :class:`TensorSubset`\\ s (:class:`~torch.utils.data.TensorDataset`\\ s
        whose rows are gathered when first needed): the split copies nothing, and a
        :class:`TensorLoader` batches them straight from ``dataset``'s tensors.

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
    if isinstance(dataset, tuple):  # (images, labels), as TensorLoader takes them
        dataset = TensorDataset(*dataset)
    n = len(dataset)
    what = "a count, or a fraction in (0, 1)"
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise type_error("train_val_split", "val_size", what, val_size)
    fraction = not isinstance(val_size, numbers.Integral)
    if fraction:
        check_real(val_size, "val_size", who="train_val_split", low=0.0, high=1.0,
                   low_open=True, high_open=True, what=what)
    seed = check_seed(seed, who="train_val_split")
    # A fraction rounds down, as random_split(ds, [1 - f, f]) does for its last part.
    n_val = math.floor(n * val_size) if fraction else int(val_size)
    if not 0 < n_val < n:
        raise ValueError(f"val_size must leave both parts non-empty, got {val_size} of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[: n - n_val], perm[n - n_val :]
    return TensorSubset(dataset, train_idx), TensorSubset(dataset, val_idx)


def _source_rows(
    dataset: TensorDataset | tuple[Tensor, ...], who: str
) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """The tensors to read ``dataset`` from, checked, and the rows of them it is made of
    (``None``: all): an ungathered :class:`TensorSubset` is read from its source."""
    rows: Tensor | None = None
    if isinstance(dataset, TensorSubset) and dataset._gathered is None:
        tensors, rows = dataset.source, dataset.indices
    elif isinstance(dataset, TensorDataset):
        tensors = dataset.tensors
    else:
        tensors = tuple(dataset)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{who} expects a TensorDataset or a tuple of tensors")
    n = tensors[0].shape[0] if tensors[0].dim() else 0
    if any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise ValueError(f"{who} tensors differ in their first dimension: {shapes}")
    return tensors, rows


class TensorSubset(TensorDataset):
    """Some rows of a :class:`~torch.utils.data.TensorDataset`, gathered when first needed.

    What :func:`train_val_split` returns. Like the ``Subset`` of
    :func:`torch.utils.data.random_split` it copies nothing when made: :class:`TensorLoader`
    cuts its batches straight from the source tensors (the same per-batch gather as any
    shuffled epoch), and indexing reads the source rows. :attr:`tensors` gathers the rows
    into tensors of their own on first access (then kept), for code that wants them.

    The rows are read from the source tensors, so changing those in place changes the
    subset until :attr:`tensors` has been read.

    Args:
        dataset: the source: a ``TensorDataset`` or a tuple of tensors with the same first
            dimension. For a ``TensorSubset`` not yet gathered, ``indices`` count in it and
            the new subset reads the same source (a subset of a split part copies nothing).
        indices: the rows, in order: a 1-D integer tensor or a sequence of ints (``range``
            included).

    Example:
        >>> import torch
        >>> source = TensorDataset(torch.arange(10) * 10, torch.arange(10))
        >>> subset = TensorSubset(source, [7, 2, 5])
        >>> len(subset), subset[0]
        (3, (tensor(70), tensor(7)))
        >>> subset.tensors[0]
        tensor([70, 20, 50])
    """

    def __init__(
        self, dataset: TensorDataset | tuple[Tensor, ...], indices: Tensor | Sequence[int]
    ) -> None:
        # outer: the rows of an ungathered subset given as the source, composed below
        source, outer = _source_rows(dataset, "TensorSubset")
        rows = torch.as_tensor(indices)
        if rows.dim() != 1 or (rows.numel() and (
            rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool
        )):
            raise ValueError(f"indices must be a 1-D sequence of ints, got {indices!r}")
        rows = rows.to(torch.int64)
        n = source[0].shape[0] if outer is None else outer.numel()
        if rows.numel() and not (-n <= int(rows.min()) and int(rows.max()) < n):
            raise IndexError(f"indices must lie in [-{n}, {n}) for {n} rows")
        rows = rows.to(source[0].device).remainder(n) if rows.numel() else rows
        self.source: tuple[Tensor, ...] = source
        self.indices: Tensor = rows if outer is None else outer[rows]
        self._gathered: tuple[Tensor, ...] | None = None

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The rows, gathered into tensors of their own on first access."""
        if self._gathered is None:
            self._gathered = tuple(t.index_select(0, self.indices) for t in self.source)
        return self._gathered

    @tensors.setter
    def tensors(self, value: tuple[Tensor, ...]) -> None:
        value = tuple(value)
        self.source, self._gathered = value, value
        self.indices = torch.arange(value[0].shape[0] if value else 0)

    def __getitem__(self, index: int | slice | Tensor) -> tuple[Tensor, ...]:
        if self._gathered is not None:
            return tuple(t[index] for t in self._gathered)
        rows = self.indices[index]
        if rows.dim() == 0:
            i = int(rows)
            return tuple(t[i] for t in self.source)
        return tuple(t.index_select(0, rows) for t in self.source)

    def __len__(self) -> int:
        return self.indices.numel()


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
            same first dimension. A :class:`TensorSubset` (what :func:`train_val_split`
            returns) is batched straight from its source tensors, with no copy.
        batch_size: samples per batch (under ``torchrun``: the global batch, see
            :meth:`shard`).
        shuffle: draw a new order each epoch.
        seed: base seed of the shuffling.
        drop_last: drop a last, shorter batch.
        transform: applied to each float image batch (augmentation, normalisation).
        scale_uint8: turn uint8 images into floats in [0, 1].
        device: move the tensors there once (e.g. ``"cuda"``: MNIST takes 47 MB as uint8),
            so that batches are cut on the device with no copy per batch.

    Consecutive batches are gathered and scaled together, about :attr:`BLOCK_BYTES` at a
    time, and handed out as views of that block: the batches are the same, for a few
    tensor operations per block instead of per batch. A block is always a copy (also
    without shuffling), so nothing done to a batch in place reaches the dataset.

    Raises:
        ValueError: tensors of different lengths, a ``batch_size`` that is not a positive
            int.
        TypeError: a ``seed`` that is not an int.

    Example:
        >>> import torch
        >>> images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
        >>> loader = TensorLoader((images, torch.arange(10)), batch_size=4, shuffle=True)
        >>> [tuple(x.shape) for x, _ in loader]
        [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)]
        >>> len(loader), next(iter(loader))[0].dtype
        (3, torch.float32)
    """

    #: Bytes of (scaled) rows gathered at once; a batch larger than this is gathered alone.
    BLOCK_BYTES: int = 1 << 21

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
        device: torch.device | str | None = None,
    ) -> None:
        tensors, rows = _source_rows(dataset, "TensorLoader")
        n = tensors[0].shape[0]
        batch_size = check_int(batch_size, "batch_size", who="TensorLoader")
        self.dataset: TensorDataset
        if device is not None:
            tensors = tuple(t.to(device) for t in tensors)
            rows = rows.to(device) if rows is not None else None
            self.dataset = (
                TensorSubset(tensors, rows) if rows is not None else TensorDataset(*tensors)
            )
        else:  # the caller's dataset as it is (a subset is not checked and built again)
            self.dataset = dataset if isinstance(dataset, TensorDataset) else TensorDataset(
                *tensors
            )
        self._source = tensors
        self._rows = rows  # the source rows served (a TensorSubset's), None: all of them
        self._n = rows.numel() if rows is not None else n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = check_seed(seed, who="TensorLoader")
        self.drop_last = drop_last
        self.transform = transform
        self.scale_uint8 = scale_uint8
        self.epoch = 0
        self.rank = 0
        self.num_replicas = 1
        self.pad = False

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors served, one row per sample (gathered once for a :class:`TensorSubset`)."""
        return self.dataset.tensors

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order the next iteration uses."""
        self.epoch = epoch

    def shard(self, rank: int, num_replicas: int, *, pad: bool) -> TensorLoader:
        """A copy that yields only process ``rank``'s share of every epoch.

        Every process draws the same epoch order and cuts it into the same global batches.
        With ``pad`` (training) each global batch is split into ``num_replicas`` contiguous
        parts of near-equal size and process ``rank`` gets part ``rank``: the union of the
        processes' batch ``i`` is the single-process batch ``i``, and every process takes
        the same number of steps. A batch smaller than ``num_replicas`` (a last batch) is
        padded with the first samples of the epoch so that no part is empty. Without ``pad``
        (evaluation) the processes take whole batches in turn, ``rank``, ``rank + W`` …, and
        no sample is seen twice.

        Example:
            >>> import torch
            >>> loader = TensorLoader((torch.arange(10), torch.arange(10)), batch_size=4)
            >>> [x.tolist() for x, _ in loader.shard(0, 2, pad=True)]
            [[0, 1], [4, 5], [8]]
            >>> [x.tolist() for x, _ in loader.shard(1, 2, pad=True)]
            [[2, 3], [6, 7], [9]]
            >>> [x.tolist() for x, _ in loader.shard(1, 2, pad=False)]
            [[4, 5, 6, 7]]
        """
        num_replicas = check_int(num_replicas, "num_replicas", who="TensorLoader.shard")
        rank = check_int(rank, "rank", who="TensorLoader.shard", minimum=0,
                         maximum=num_replicas - 1)
        new = TensorLoader(
            self.dataset,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
            transform=self.transform,
            scale_uint8=self.scale_uint8,
        )
        new.epoch, new.rank, new.num_replicas, new.pad = self.epoch, rank, num_replicas, pad
        return new

    def _order(self) -> Tensor | None:
        """The epoch's order as rows of the source tensors (``None``: all, in order)."""
        if not self.shuffle:
            return self._rows
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**64)
        order = torch.randperm(self._n, generator=g).to(self._source[0].device)
        return order if self._rows is None else self._rows[order]

    def _global_batches(self) -> list[tuple[int, int]]:
        n = self._n
        stop = n - n % self.batch_size if self.drop_last else n
        return [(s, min(s + self.batch_size, stop)) for s in range(0, stop, self.batch_size)]

    def _positions(self) -> Iterator[tuple[int, int] | list[int]]:
        """This process's batches as ``(start, end)`` ranges of the epoch order, or lists
        of positions where padding wraps around."""
        batches = self._global_batches()
        world, rank = self.num_replicas, self.rank
        if world == 1:
            yield from batches
        elif not self.pad:
            yield from batches[rank::world]
        else:
            n = self._n
            for start, end in batches:
                size = end - start
                if size < world:  # pad with the epoch's first samples: no empty part
                    yield [start + rank] if rank < size else [(rank - size) % n]
                    continue
                base, extra = divmod(size, world)
                lo = start + rank * base + min(rank, extra)
                yield (lo, lo + base + (rank < extra))

    def __len__(self) -> int:
        count = len(self._global_batches())
        if self.num_replicas > 1 and not self.pad:
            count = len(range(self.rank, count, self.num_replicas))
        return count

    def _block_rows(self) -> int:
        """Rows gathered at once: about :attr:`BLOCK_BYTES` of batches, at least one."""
        row = 0
        for i, t in enumerate(self._source):
            scaled = i == 0 and self.scale_uint8 and t.dtype == torch.uint8
            row += math.prod(t.shape[1:]) * (4 if scaled else t.element_size())
        return max(1, self.BLOCK_BYTES // max(row, 1))

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        order = self._order()
        self.epoch += 1
        # Consecutive batches are gathered (and scaled) together, a few at a time, and
        # handed out as views: a handful of tensor operations per block instead of per
        # batch, which is most of a small model's data cost. The values are the same.
        per_block = self._block_rows()
        block: list[tuple[int, int]] = []
        for pos in self._positions():
            if block and (not isinstance(pos, tuple) or pos[0] != block[-1][1]):
                yield from self._cut(order, block)  # a gap or a padded batch: flush
                block = []
            if not isinstance(pos, tuple):
                yield from self._cut(order, [pos])
                continue
            block.append(pos)
            if block[-1][1] - block[0][0] >= per_block:
                yield from self._cut(order, block)
                block = []
        if block:
            yield from self._cut(order, block)

    def _cut(
        self, order: Tensor | None, parts: Sequence[tuple[int, int] | list[int]]
    ) -> Iterator[tuple[Tensor, ...]]:
        """The batches of ``parts``: one range of the epoch order, or one padded batch."""
        first = parts[0]
        sel: Tensor | slice
        if isinstance(first, tuple):
            lo, hi = first[0], parts[-1][1]
            sel = slice(lo, hi) if order is None else order[lo:hi]
            sizes = [p[1] - p[0] for p in parts]
        else:
            index = torch.tensor(first, device=self._source[0].device)
            sel = index if order is None else order[index]
            sizes = [len(first)]
        # index_select: the same gather as t[sel], a third of the time for images. A slice
        # (no shuffling, all rows) is a view of the source: copied, so that nothing done to
        # a batch in place (a transform, an optimizer step on the inputs) reaches the data.
        view = isinstance(sel, slice)
        gathered = [
            t[sel] if isinstance(sel, slice) else t.index_select(0, sel) for t in self._source
        ]
        if self.scale_uint8 and gathered[0].dtype == torch.uint8:
            gathered[0] = gathered[0].float().div_(255)  # a new tensor already
        elif view:
            gathered[0] = gathered[0].clone()
        if view:
            gathered[1:] = [t.clone() for t in gathered[1:]]
        # One split per tensor gives every batch's view of the block.
        columns = [torch.split(t, sizes) for t in gathered]
        transform = self.transform
        for x, *rest in zip(*columns, strict=True):
            yield (x if transform is None else transform(x), *rest)
