"""Building blocks shared by the tp3nets models."""


from torch import nn

from .._util._checks import check_int as _check_int

__all__ = ["batch_relu"]


def batch_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv → BatchNorm → ReLU, keeping the spatial size (for odd kernel sizes).

    This is the ``batch_relu`` of the reference lab. The reference returns a plain list; here
    the result is a :class:`~torch.nn.Sequential`, so it works as a block on its own, and
    iterating it yields its three layers, so ``nn.Sequential(*batch_relu(1, 64, 3))``
    flattens it into a parent exactly as the reference does, with the same state_dict keys.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (the number of convolution kernels).
        kernel_size: side of the square kernel; the padding is ``(kernel_size - 1) // 2``.

    Returns:
        ``Sequential(Conv2d, BatchNorm2d, ReLU(inplace=True))``.

    Raises:
        ValueError: if a size is not positive or ``kernel_size`` is even (an even kernel
            cannot keep the spatial size).

    Shape:
        (N, in_channels, H, W) → (N, out_channels, H, W)

    Example:
        >>> import torch
        >>> batch_relu(1, 8)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 8, 28, 28])
        >>> [type(m).__name__ for m in batch_relu(1, 8)]
        ['Conv2d', 'BatchNorm2d', 'ReLU']
    """
    in_channels = _check_int(in_channels, "in_channels", who="batch_relu")
    out_channels = _check_int(out_channels, "out_channels", who="batch_relu")
    kernel_size = _check_int(kernel_size, "kernel_size", who="batch_relu")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"batch_relu expects an odd kernel_size to keep the spatial size, got {kernel_size}"
        )
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=1,
            padding=(kernel_size - 1) // 2,
            bias=True,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
