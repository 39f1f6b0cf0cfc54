"""The measured figures of torchvision's weights meta: ``_ops``, ``_file_size``, ``min_size``.

The recipes record them (``recipes/weights_file.py``) and the tests measure them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["file_size_mb", "gflops", "min_input_size"]


def gflops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """The GFLOPs of one forward pass of ``model`` on one image of ``input_shape``
    ``(C, H, W)``, in torchvision's convention (its weights meta's ``_ops``).

    torchvision counts the multiplications of the convolutions and matrix products (a
    multiply-add counts once; biases, normalisation, activations and pooling count nothing)
    and reports them in billions. :class:`torch.utils.flop_counter.FlopCounterMode` counts
    two floating-point operations a multiply-add, over the same operators: its count is
    halved. The result is exact (to one operation), not rounded to torchvision's three
    decimals: MNIST models need a millionth of a GFLOP to a hundredth.

    Example:
        >>> gflops(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (1, 28, 28))
        7.84e-06
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    multiply_adds: int = counter.get_total_flops() // 2
    return round(multiply_adds / 1e9, 9)


def min_input_size(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """The smallest (height, width) that ``model`` accepts, the other side kept at that of
    ``input_shape`` ``(C, H, W)``: torchvision's ``min_size``. Found by trying, from one
    pixel up; a model that accepts only ``input_shape`` gives its (H, W).

    Raises:
        ValueError: ``model`` refuses ``input_shape`` itself.

    Example:
        >>> min_input_size(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)), (1, 28, 28))
        (4, 4)
    """
    channels, height, width = input_shape
    was_training = model.training
    model.eval()

    def accepts(h: int, w: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, h, w))
        except (ValueError, RuntimeError):
            return False
        return True

    try:
        if not accepts(height, width):
            raise ValueError(
                f"{type(model).__name__} refuses an input of shape (1, {channels}, {height}, "
                f"{width}): give the input_shape it was made for"
            )
        min_h = next(h for h in range(1, height + 1) if accepts(h, width))
        min_w = next(w for w in range(1, width + 1) if accepts(height, w))
    finally:
        model.train(was_training)
    return min_h, min_w


def file_size_mb(num_bytes: int) -> float:
    """A file size as torchvision's meta has it (``_file_size``): bytes / 1024 / 1024,
    three decimals.

    Example:
        >>> file_size_mb(4_605_456)
        4.392
    """
    return round(num_bytes / 1024 / 1024, 3)
