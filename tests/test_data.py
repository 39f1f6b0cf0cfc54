"""tp3nets.data: MNIST in memory, seeded splits, TensorLoader batching and sharding."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset, random_split

from tp3nets.data import (
    DATA_ENV,
    BatchRandomAffine,
    TensorLoader,
    TensorSubset,
    load_mnist,
    mnist_splits,
    train_val_split,
)

TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------------------
# MNIST files


def test_missing_mnist_names_the_folder_and_the_way_out(tmp_path: Path) -> None:
    """Offline with no files, the error names the folder looked in and how to point elsewhere."""
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, train=False)
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "root=" in msg
    assert "--data DIR" in msg
    assert DATA_ENV in msg
    assert "download=True" in msg


@pytest.mark.mnist
@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_corrupt_mnist_files_are_named_as_such(
    mnist_root: Path, tmp_path: Path, damage: str
) -> None:
    """Files that are there but do not parse: not "not found", nor a bare AssertionError."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                 "train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # torchvision wants 4
        with (mnist_root / "MNIST" / "raw" / name).open("rb") as fh:
            head = fh.read(5000)
        (raw / name).write_bytes(b"hello\n" if damage == "text" else head)
    with pytest.raises(ValueError, match=r"the MNIST files t10k-images-idx3-ubyte / "
                       r"t10k-labels-idx1-ubyte in .* are corrupt or truncated"):
        load_mnist(tmp_path, train=False)


def test_a_failed_download_keeps_torchvision_s_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline with download=True: torchvision's 'Error downloading', not 'corrupt'."""
    from torchvision.datasets import MNIST

    def offline(self: Any) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(RuntimeError, match="Error downloading"):
        load_mnist(tmp_path, download=True)


def test_data_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without root=, load_mnist looks in $TP3NETS_DATA."""
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_mnist(train=False)


@pytest.mark.mnist
def test_load_mnist_holds_the_test_set_in_memory(mnist_root: Path) -> None:
    """The test set comes as uint8 (10000, 1, 28, 28) images and int64 labels, counts exact."""
    images, labels = load_mnist(mnist_root, train=False).tensors
    assert images.shape == (10000, 1, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == TEST_LABEL_COUNTS


@pytest.mark.mnist
@pytest.mark.parametrize("sub", ["MNIST", "MNIST/raw"])
def test_load_mnist_accepts_the_mnist_folder_itself(mnist_root: Path, sub: str) -> None:
    """Pointing root at MNIST/ or MNIST/raw/ finds the same files."""
    labels = load_mnist(mnist_root / sub, train=False).tensors[1]
    assert torch.bincount(labels).tolist() == TEST_LABEL_COUNTS


@pytest.mark.mnist
def test_tensor_loader_batches_equal_totensor_dataloader(mnist_root: Path) -> None:
    """TensorLoader batches are bitwise those of torchvision's ToTensor + DataLoader."""
    from torchvision import datasets, transforms

    reference = datasets.MNIST(str(mnist_root), train=False, transform=transforms.ToTensor())
    ref_loader = DataLoader(torch.utils.data.Subset(reference, range(64)), batch_size=32)
    images, labels = load_mnist(mnist_root, train=False).tensors
    ours = TensorLoader((images[:64], labels[:64]), 32)
    for (x, y), (rx, ry) in zip(ours, ref_loader, strict=True):
        assert x.dtype == rx.dtype == torch.float32
        assert torch.equal(x, rx)
        assert torch.equal(y, ry)


@pytest.mark.mnist
def test_mnist_splits_is_the_seeded_random_split(mnist_root: Path) -> None:
    """mnist_splits gives 55000/5000/10000 with the validation part of random_split(seed 42)."""
    train, val, test = mnist_splits(mnist_root)
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    full = load_mnist(mnist_root, train=True)
    _, ref = random_split(range(60000), [55000, 5000], generator=torch.Generator().manual_seed(42))
    assert torch.equal(val.tensors[0], full.tensors[0][list(ref.indices)])
    assert torch.equal(val.tensors[1], full.tensors[1][list(ref.indices)])


# --------------------------------------------------------------------------------------
# splits


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), frac=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_train_val_split_matches_random_split(n: int, frac: float, seed: int) -> None:
    """train_val_split picks exactly random_split's samples, for any size and seed."""
    n_val = min(max(1, round(frac * n)), n - 1)
    ds = TensorDataset(torch.arange(n), torch.arange(n) * 2)
    train, val = train_val_split(ds, n_val, seed=seed)
    ref_train, ref_val = random_split(
        range(n), [n - n_val, n_val], generator=torch.Generator().manual_seed(seed)
    )
    assert train.tensors[0].tolist() == list(ref_train)
    assert val.tensors[0].tolist() == list(ref_val)
    assert torch.equal(val.tensors[1], val.tensors[0] * 2)


@pytest.mark.filterwarnings("ignore:Length of split at index")  # random_split's empty part
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), frac=st.floats(0.01, 0.99), seed=st.integers(0, 2**31))
def test_a_fraction_splits_as_random_split_does(n: int, frac: float, seed: int) -> None:
    """val_size as a fraction gives random_split(ds, [1 - f, f])'s parts (it rounds the
    last part down; round() gave 4 of 10 for 0.35 where random_split gives 3)."""
    ds = TensorDataset(torch.arange(n))
    ref_train, ref_val = random_split(
        range(n), [1 - frac, frac], generator=torch.Generator().manual_seed(seed)
    )
    if not 0 < len(ref_val) < n:
        return  # an empty part: refused below
    train, val = train_val_split(ds, frac, seed=seed)
    assert train.tensors[0].tolist() == list(ref_train)
    assert val.tensors[0].tolist() == list(ref_val)


def test_train_val_split_refuses_empty_parts() -> None:
    """A validation size that leaves a part empty, or a fraction outside (0, 1), is refused."""
    ds = TensorDataset(torch.arange(10))
    with pytest.raises(ValueError, match="must leave both parts non-empty, got 10 of 10"):
        train_val_split(ds, 10)
    with pytest.raises(ValueError,
                       match=r"expects val_size to be a count, or a fraction in \(0, 1\), got 1.5"):
        train_val_split(ds, 1.5)
    assert len(train_val_split(ds, 0.3)[1]) == 3


# --------------------------------------------------------------------------------------
# TensorLoader


def ids(loader: TensorLoader) -> list[list[int]]:
    return [y.tolist() for _, y in loader]


def flat(lists: Iterable[list[int]]) -> list[int]:
    return [v for part in lists for v in part]


def test_tensor_loader_scales_uint8_and_keeps_other_tensors() -> None:
    """uint8 images become float32 in [0, 1]; float inputs and labels pass unchanged."""
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    (x, y), = TensorLoader((images, torch.arange(3)), 3)
    assert x.dtype == torch.float32
    assert x.flatten().tolist() == pytest.approx([0, 0.2, 1])
    assert y.tolist() == [0, 1, 2]
    floats = torch.rand(3, 2)
    assert torch.equal(next(iter(TensorLoader((floats, torch.arange(3)), 3)))[0], floats)


def test_tensor_loader_shuffles_by_seed_and_epoch() -> None:
    """The order depends only on (seed, epoch): same seed and epoch replay, epochs differ."""
    data = (torch.zeros(50, 1), torch.arange(50))
    a, b = TensorLoader(data, 10, shuffle=True, seed=7), TensorLoader(data, 10, shuffle=True,
                                                                      seed=7)
    first, second = ids(a), ids(a)  # iterating again moves to the next epoch
    assert first == ids(b)
    assert first != second
    assert sorted(flat(first)) == list(range(50))
    a.set_epoch(0)
    assert ids(a) == first
    torch.manual_seed(123)  # the global RNG plays no part
    b.set_epoch(1)
    assert ids(b) == second
    assert ids(TensorLoader(data, 10, shuffle=True, seed=8)) != first
    assert ids(TensorLoader(data, 10)) == [list(range(i, i + 10)) for i in range(0, 50, 10)]


def test_tensor_loader_len_and_drop_last() -> None:
    """len() counts batches; drop_last drops a short last batch."""
    data = (torch.zeros(10, 1), torch.arange(10))
    assert len(TensorLoader(data, 4)) == 3
    assert [len(b) for b in ids(TensorLoader(data, 4))] == [
        4, 4, 2]
    assert len(TensorLoader(data, 4, drop_last=True)) == 2
    assert ids(TensorLoader(data, 4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_tensor_loader_applies_transform_and_device() -> None:
    """transform runs on each float batch; device= holds the tensors there."""
    data = (torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.arange(4))
    loader = TensorLoader(data, 2, transform=lambda x: x * 2, device="cpu")
    assert [x.max().item() for x, _ in loader] == [2.0, 2.0]
    assert loader.tensors[0].device.type == "cpu"


def test_tensor_loader_checks_its_arguments() -> None:
    """Tensors of different lengths, a bad batch size and a bad rank are refused."""
    with pytest.raises(ValueError, match=r"differ in their first dimension: \(3, 1\), \(4,\)"):
        TensorLoader((torch.zeros(3, 1), torch.arange(4)))
    with pytest.raises(ValueError, match="expects batch_size to be a positive int, got 0"):
        TensorLoader((torch.zeros(3, 1),), 0)
    with pytest.raises(TypeError, match="TensorDataset or a tuple of tensors"):
        TensorLoader(([1, 2],))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expects rank to be an int in \[0, 1\], got 2"):
        TensorLoader((torch.zeros(3, 1),)).shard(2, 2, pad=True)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 9), world=st.integers(1, 4),
       shuffle=st.booleans(), drop_last=st.booleans())
def test_training_shards_split_each_global_batch(
    n: int, batch: int, world: int, shuffle: bool, drop_last: bool
) -> None:
    """Training shards take equal step counts; together their batch i is global batch i."""
    data = (torch.zeros(n, 1), torch.arange(n))
    whole = TensorLoader(data, batch, shuffle=shuffle, seed=3, drop_last=drop_last)
    shards = [whole.shard(r, world, pad=True) for r in range(world)]
    assert all(len(s) == len(whole) for s in shards)
    expected = ids(whole)
    got = [ids(s) for s in shards]
    assert all(len(g) == len(expected) for g in got)
    for i, global_batch in enumerate(expected):
        parts = [g[i] for g in got]
        assert all(parts)  # no process gets an empty batch
        if len(global_batch) >= world:
            assert flat(parts) == global_batch
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        else:
            assert flat(parts)[: len(global_batch)] == global_batch


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 9), world=st.integers(1, 4),
       shuffle=st.booleans())
def test_evaluation_shards_see_each_sample_once(
    n: int, batch: int, world: int, shuffle: bool
) -> None:
    """Evaluation shards take whole batches in turn: every sample exactly once, no padding."""
    data = (torch.zeros(n, 1), torch.arange(n))
    whole = TensorLoader(data, batch, shuffle=shuffle, seed=5)
    shards = [whole.shard(r, world, pad=False) for r in range(world)]
    expected = ids(whole)
    for r, shard in enumerate(shards):
        assert ids(shard) == expected[r::world]
        assert len(shard) == len(expected[r::world])
    assert sorted(flat(flat(ids(s)) for s in shards)) == list(range(n))


# --------------------------------------------------------------------------------------
# TensorSubset: the split's parts, batched straight from the source tensors


def _batches(loader: TensorLoader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in b) for b in loader]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 50), frac=st.floats(0.05, 0.95), batch=st.integers(1, 9),
       world=st.integers(1, 3), shuffle=st.booleans(), drop_last=st.booleans(),
       pad=st.booleans())
def test_a_subset_loader_yields_the_batches_of_its_gathered_tensors(
    n: int, frac: float, batch: int, world: int, shuffle: bool, drop_last: bool, pad: bool
) -> None:
    """Batching a split part from its source gives, batch for batch, what batching the
    gathered rows gives: shuffled or not, with drop_last, sharded either way."""
    images = torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8)
    full = TensorDataset(images, torch.arange(n) * 3)
    n_val = min(max(round(frac * n), 1), n - 1)
    train, val = train_val_split(full, n_val, seed=n)
    for part in (train, val):
        assert isinstance(part, TensorSubset)
        lazy = TensorLoader(part, batch, shuffle=shuffle, seed=7, drop_last=drop_last)
        eager = TensorLoader(tuple(t.clone() for t in part.tensors), batch, shuffle=shuffle,
                             seed=7, drop_last=drop_last)
        for rank in range(world):
            a, b = lazy.shard(rank, world, pad=pad), eager.shard(rank, world, pad=pad)
            assert len(a) == len(b)
            got, want = _batches(a), _batches(b)
            assert len(got) == len(want)
            for x, y in zip(got, want, strict=True):
                assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 9), block_bytes=st.integers(1, 400),
       world=st.integers(1, 3), shuffle=st.booleans(), drop_last=st.booleans(),
       pad=st.booleans(), uint8=st.booleans(), subset=st.booleans(), augment=st.booleans())
def test_batches_do_not_depend_on_how_many_are_gathered_at_once(
    n: int, batch: int, block_bytes: int, world: int, shuffle: bool, drop_last: bool,
    pad: bool, uint8: bool, subset: bool, augment: bool,
) -> None:
    """Gathering several batches at once (any block size) gives, batch for batch, bitwise
    what gathering each alone gives: shuffled or not, drop_last, sharded, subsets, a
    transform drawing random numbers."""
    g = torch.Generator().manual_seed(n)
    images = (torch.randint(0, 256, (n + 5, 1, 2, 2), dtype=torch.uint8, generator=g)
              if uint8 else torch.rand(n + 5, 1, 2, 2, generator=g))
    data: TensorDataset = TensorDataset(images, torch.arange(n + 5) * 3)
    data = TensorSubset(data, torch.randperm(n + 5, generator=g)[:n]) if subset else \
        TensorDataset(images[:n], torch.arange(n) * 3)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand(x.shape[0], 1, 1, 1)

    loader = TensorLoader(data, batch, shuffle=shuffle, seed=3, drop_last=drop_last,
                          transform=noisy if augment else None)
    for rank in range(world):
        runs = []
        for size in (1, block_bytes, 1 << 21):  # one batch a block, some, all of them
            part = loader.shard(rank, world, pad=pad)
            part.BLOCK_BYTES = size
            torch.manual_seed(0)
            runs.append(_batches(part))
        assert [len(r) for r in runs] == [len(loader.shard(rank, world, pad=pad))] * 3
        for got in runs[1:]:
            for x, y in zip(got, runs[0], strict=True):
                assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))


def test_consecutive_batches_are_views_of_one_gathered_block() -> None:
    """Batches are cut from blocks of about BLOCK_BYTES: a few gathers for many batches."""
    images = torch.randint(0, 256, (1000, 1, 28, 28), dtype=torch.uint8)
    loader = TensorLoader((images, torch.arange(1000)), 64, shuffle=True)
    per_block = loader.BLOCK_BYTES // (784 * 4 + 8)  # float32 pixels and an int64 label
    assert per_block // 64 >= 2
    batches = list(loader)
    storages = [x.untyped_storage().data_ptr() for x, _ in batches]
    assert storages[0] == storages[per_block // 64 - 1]  # the first block's batches
    assert len(set(storages)) == -(-1000 // (64 * -(-per_block // 64)))  # blocks of whole batches
    assert torch.equal(torch.cat([y for _, y in batches]).sort().values, torch.arange(1000))
    single = TensorLoader((images[:64], torch.arange(64)), 64)
    single.BLOCK_BYTES = 1
    (x, _), = single
    assert torch.equal(x, images[:64].float() / 255)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_changing_a_batch_in_place_leaves_the_data_alone(
    shuffle: bool, dtype: torch.dtype
) -> None:
    """Without shuffling, batches were views of the source tensors: an in-place transform
    (Normalize(inplace=True)) or an in-place op on the labels changed the dataset itself,
    more at every epoch. Batches now never share memory with the source."""
    images = torch.randint(0, 256, (100, 1, 4, 4)).to(dtype)
    labels = torch.arange(100)
    kept = images.clone(), labels.clone()

    def in_place(x: torch.Tensor) -> torch.Tensor:
        return x.sub_(0.5).div_(0.25)

    loader = TensorLoader((images, labels), 16, shuffle=shuffle, transform=in_place)
    for _ in range(3):
        for x, y in loader:
            y.add_(100)
            x.mul_(3)
    assert torch.equal(images, kept[0])
    assert torch.equal(labels, kept[1])


def test_batch_random_affine_rotates_non_square_images_without_shear() -> None:
    """A spot 6 pixels from the centre stays 6 pixels from it, whatever the angle, on a
    20x40 image (the rotation used to be done in [-1, 1] coordinates: a shear)."""
    h, w = 20, 40
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    cy, cx = h / 2, w / 2
    spot = torch.exp(-((ys - cy) ** 2 + (xs - (cx + 6)) ** 2) / 2.0)
    images = spot.expand(32, 1, h, w).clone()
    torch.manual_seed(0)
    out = BatchRandomAffine(degrees=90, translate=0, scale=(1, 1))(images)
    mass = out.sum(dim=(1, 2, 3))
    oy = (out[:, 0] * ys).sum(dim=(1, 2)) / mass
    ox = (out[:, 0] * xs).sum(dim=(1, 2)) / mass
    distance = ((oy - cy) ** 2 + (ox - cx) ** 2).sqrt()
    torch.testing.assert_close(distance, torch.full((32,), 6.0), atol=0.15, rtol=0)


def test_a_loader_seed_is_checked_when_built() -> None:
    with pytest.raises(TypeError, match=r"expects seed to be an int, got 0\.5"):
        TensorLoader((torch.zeros(4, 1),), 2, shuffle=True, seed=0.5)  # type: ignore[arg-type]
    big = TensorLoader((torch.arange(10),), 4, shuffle=True, seed=2**63)
    assert sorted(torch.cat([b for b, in big]).tolist()) == list(range(10))


def test_the_split_and_its_loaders_copy_nothing() -> None:
    """train_val_split keeps references to the source; TensorLoader cuts its batches from
    the source and leaves the subset ungathered; .tensors gathers once and keeps it."""
    full = TensorDataset(torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8),
                         torch.arange(100))
    train, val = train_val_split(full, 20, seed=1)
    assert train.source[0] is full.tensors[0]
    assert val.source[1] is full.tensors[1]
    loader = TensorLoader(train, 16, shuffle=True)
    first = next(iter(loader))
    assert train._gathered is None  # nothing gathered by the loader
    assert len(loader.dataset) == 80
    assert len(loader) == 5
    gathered = train.tensors
    assert train.tensors is gathered  # kept
    assert torch.equal(gathered[1], full.tensors[1][train.indices])
    assert first[0].dtype == torch.float32  # uint8 still scaled
    # A gathered subset is batched from its own tensors, with the same batches.
    again = TensorLoader(train, 16, shuffle=True)
    assert torch.equal(next(iter(again))[1], first[1])


def test_tensor_subset_reads_rows_as_indexing_does() -> None:
    """Integer, negative, slice and tensor indices read the source rows in subset order."""
    source = (torch.arange(10) * 10, torch.arange(10))
    subset = TensorSubset(source, [7, -1, 2, 5])
    assert len(subset) == 4
    assert subset[0] == (torch.tensor(70), torch.tensor(7))
    assert subset[-3] == (torch.tensor(90), torch.tensor(9))
    assert subset[1:3][0].tolist() == [90, 20]
    assert subset[torch.tensor([3, 0])][1].tolist() == [5, 7]
    assert subset.tensors[0].tolist() == [70, 90, 20, 50]
    assert subset[1:3][0].tolist() == [90, 20]  # the same once gathered
    assert next(iter(DataLoader(subset, batch_size=4)))[1].tolist() == [7, 9, 2, 5]
    empty = TensorSubset(source, [])
    assert len(empty) == 0
    assert empty.tensors[0].shape == (0,)


def test_a_subset_of_a_split_part_reads_the_same_source() -> None:
    """TensorSubset of an ungathered TensorSubset composes the rows and copies nothing;
    of a gathered one, it reads the gathered tensors. Either way, the same rows."""
    full = TensorDataset(torch.arange(20) * 10, torch.arange(20))
    train, _ = train_val_split(full, 5, seed=3)
    head = TensorSubset(train, range(4))
    assert head.source[0] is full.tensors[0]
    assert head.tensors[1].tolist() == train.indices[:4].tolist()
    tail = TensorSubset(train, [-1, -2])
    assert tail.tensors[1].tolist() == train.indices[[-1, -2]].tolist()
    with pytest.raises(IndexError, match=r"indices must lie in \[-15, 15\) for 15 rows"):
        TensorSubset(train, [15])
    gathered = train.tensors  # a subset of it now reads the gathered tensors
    again = TensorSubset(train, range(4))
    assert again.source[0] is gathered[0]
    assert torch.equal(again.tensors[1], head.tensors[1])


def test_tensor_subset_refuses_bad_input() -> None:
    source = (torch.zeros(5, 2), torch.arange(5))
    with pytest.raises(IndexError, match=r"indices must lie in \[-5, 5\) for 5 rows"):
        TensorSubset(source, [0, 5])
    with pytest.raises(ValueError, match="indices must be a 1-D sequence of ints"):
        TensorSubset(source, [[0, 1]])
    with pytest.raises(ValueError, match="indices must be a 1-D sequence of ints"):
        TensorSubset(source, [0.5])
    with pytest.raises(ValueError, match="differ in their first dimension"):
        TensorSubset((torch.zeros(5), torch.zeros(4)), [0])
    with pytest.raises(TypeError, match="TensorDataset or a tuple of tensors"):
        TensorSubset(([1, 2],), [0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# augmentation


def test_batch_random_affine_is_seeded_and_identity_at_zero() -> None:
    """BatchRandomAffine draws from the global RNG; with no range it returns the images."""
    x = torch.rand(6, 1, 28, 28)
    aug = BatchRandomAffine(degrees=15, translate=0.1, scale=(0.9, 1.1))
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    b = aug(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, x)
    still = BatchRandomAffine(degrees=0, translate=0, scale=(1, 1))
    torch.testing.assert_close(still(x), x, atol=1e-5, rtol=0)
    for bad in ({"degrees": -1}, {"degrees": float("nan")}, {"degrees": (-10, 10)},
                {"translate": (0.1, 0.1)}, {"translate": 1.0}, {"scale": None},
                {"scale": (1, float("inf"))}, {"scale": (0.9, 1.0, 1.1)}, {"scale": (1.1, 0.9)}):
        with pytest.raises(ValueError, match=r"BatchRandomAffine expects finite numbers: "
                           r"degrees >= 0 .* got degrees="):
            BatchRandomAffine(**bad)  # type: ignore[arg-type]
    assert aug(x[:0]).shape == (0, 1, 28, 28)
