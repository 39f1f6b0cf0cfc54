"""batch_relu: the Conv → BatchNorm → ReLU block, as a block and splatted as in the lab."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tp3nets import batch_relu

HERE = Path(__file__).resolve().parent



import reference_tp3 as ref  # noqa: E402
from _support import DEVICES  # noqa: E402


def test_layers_in_order() -> None:
    """batch_relu gives Conv2d, BatchNorm2d, ReLU(inplace=True), in that order."""
    block = batch_relu(3, 16, 5)
    conv, bn, relu = block
    assert isinstance(block, nn.Sequential)
    assert isinstance(conv, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels) == (3, 16)
    assert conv.kernel_size == (5, 5)
    assert conv.stride == (1, 1)
    assert conv.padding == (2, 2)
    assert conv.bias is not None
    assert isinstance(bn, nn.BatchNorm2d)
    assert bn.num_features == 16
    assert isinstance(relu, nn.ReLU)
    assert relu.inplace


def test_default_kernel_size_is_three() -> None:
    """Without a kernel size, batch_relu uses the lab's 3×3 kernels with padding 1."""
    conv = batch_relu(1, 8)[0]
    assert conv.kernel_size == (3, 3)
    assert conv.padding == (1, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize(("h", "w"), [(28, 28), (5, 9), (1, 1)])
def test_block_keeps_spatial_size(kernel_size: int, h: int, w: int, device: str) -> None:
    """As a block, (N, C_in, H, W) → (N, C_out, H, W), non-negative (after the ReLU)."""
    block = batch_relu(2, 6, kernel_size).to(device).eval()
    out = block(torch.randn(3, 2, h, w, device=device))
    assert out.shape == (3, 6, h, w)
    assert out.device.type == device
    assert (out >= 0).all()


def test_block_use_has_reference_keys() -> None:
    """batch_relu(1, 64) used as a block has the state_dict keys of the splatted reference."""
    block = batch_relu(1, 64)
    reference = nn.Sequential(*ref.batch_relu(1, 64, 3))
    assert list(block.state_dict()) == list(reference.state_dict())
    assert list(block.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert batch_relu(1, 64)(torch.randn(2, 1, 28, 28)).shape == (2, 64, 28, 28)


def test_splatted_use_has_reference_keys() -> None:
    """nn.Sequential(*batch_relu(...), ...) flattens the layers with the reference's keys."""
    ours = nn.Sequential(*batch_relu(1, 64, 3), nn.MaxPool2d(2), *batch_relu(64, 128, 3))
    theirs = nn.Sequential(*ref.batch_relu(1, 64, 3), nn.MaxPool2d(2), *ref.batch_relu(64, 128, 3))
    assert len(ours) == len(theirs) == 7
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_same_outputs_as_reference(train: bool) -> None:
    """With the reference's weights, batch_relu gives the reference's outputs and BN updates."""
    torch.manual_seed(0)
    theirs = nn.Sequential(*ref.batch_relu(3, 8, 3))
    with torch.no_grad():  # non-trivial BatchNorm parameters and statistics
        theirs[1].weight.uniform_(0.5, 1.5)
        theirs[1].bias.uniform_(-0.5, 0.5)
        theirs[1].running_mean.uniform_(-0.1, 0.1)
        theirs[1].running_var.uniform_(0.5, 2.0)
    ours = batch_relu(3, 8, 3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(4, 3, 12, 12)
    torch.testing.assert_close(ours.train(train)(x), theirs.train(train)(x), rtol=0, atol=0)
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)


def test_blocks_are_independent() -> None:
    """Each call builds new layers with their own parameters."""
    a, b = batch_relu(1, 4), batch_relu(1, 4)
    assert a[0].weight is not b[0].weight
    assert a[0].weight.data_ptr() != b[0].weight.data_ptr()


def test_seeded_initialisation_matches_reference() -> None:
    """Under the same seed, batch_relu draws the same initial weights as the reference."""
    torch.manual_seed(5)
    ours = batch_relu(4, 8, 3).state_dict()
    torch.manual_seed(5)
    theirs = nn.Sequential(*ref.batch_relu(4, 8, 3)).state_dict()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_meta_device() -> None:
    """batch_relu built on the meta device has meta parameters and buffers."""
    with torch.device("meta"):
        block = batch_relu(1, 8)
    assert all(t.is_meta for t in [*block.parameters(), *block.buffers()])


def test_torchscript() -> None:
    """A scripted batch_relu gives the eager output."""
    block = batch_relu(1, 4).eval()
    x = torch.randn(2, 1, 6, 6)
    with warnings.catch_warnings():  # newer torch versions deprecate TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(block)
    torch.testing.assert_close(scripted(x), block(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 8, 3), "batch_relu expects in_channels to be a positive int, got 0"),
        ((1, -8, 3), "batch_relu expects out_channels to be a positive int, got -8"),
        ((1, 8, 0), "batch_relu expects kernel_size to be a positive int, got 0"),
        ((1.0, 8, 3), "batch_relu expects in_channels to be a positive int, got 1.0"),
        ((True, 8, 3), "batch_relu expects in_channels to be a positive int, got True"),
        ((1, "8", 3), "batch_relu expects out_channels to be a positive int, got '8'"),
        ((1, 8, 4), "batch_relu expects an odd kernel_size to keep the spatial size, got 4"),
    ],
)
def test_bad_arguments_raise_value_error(args: tuple[object, ...], message: str) -> None:
    """Non-positive or non-int sizes and even kernels raise ValueError naming the value."""
    with pytest.raises(ValueError, match=re.escape(message)):
        batch_relu(*args)  # type: ignore[arg-type]
