"""ConvNet3: three Conv-ReLU-MaxPool blocks and a dropout classifier."""

from typing import Any

import torch
from torch import Tensor, nn

from .._util._checks import check_int, check_probability
from ..weights import WeightsEnum
from ..weights._defaults import mnist_weights
from ._registry import _build, register_model
from ._utils import (
    ClassifierModel,
    _assert_images,
    _size2,
)

__all__ = ["ConvNet3", "ConvNet3_Weights", "convnet3"]


def _conv5(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=5, stride=1, padding=2, bias=True),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2),
    ]


class ConvNet3(ClassifierModel):
    """The lab's ConvNet3: ``3 × (C5s1 - ReLU - MaxPool2)`` with 16, 32, 64 filters, then
    ``Dropout - FC128 - ReLU - Dropout - FC256 - ReLU - FC``.

    Same layers, order and state_dict keys as the reference (``layer1.0/3/6``,
    ``classifier.1/4/6``). The reference finds the flatten size by running a probe tensor
    through the convolutions; here it is computed from ``input_size``
    (``64·⌊⌊⌊H/2⌋/2⌋/2⌋·…``, 576 at 28×28), so construction does no tensor work and works on
    the ``meta`` device.

    Args:
        num_classes: number of outputs.
        in_channels: channels of the input images.
        input_size: image size ``H`` or ``(H, W)``, at least 8×8.
        dropout: probability of both dropout layers.

    Raises:
        ValueError: if a size is not a positive int, the image is smaller than 8×8 or the
            dropout is not in [0, 1).

    Shape:
        (N, in_channels, H, W) → (N, num_classes)

    Example:
        >>> import torch
        >>> ConvNet3()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    _head_path = "classifier.6"

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        input_size: int | tuple[int, int] = 28,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_classes = check_int(num_classes, "num_classes", who=name)
        self.in_channels = check_int(in_channels, "in_channels", who=name)
        height, width = _size2(input_size, name)
        if height < 8 or width < 8:
            raise ValueError(f"{name} expects input_size of at least 8x8, got {input_size!r}")
        self.input_shape: tuple[int, ...] = (self.in_channels, height, width)
        p = check_probability(dropout, "dropout", who=name, high_open=True)
        self.num_features = 64  # channels of forward_features' map
        self.head_hidden_size = 256  # what the final Linear reads
        self.layer1 = nn.Sequential(*_conv5(self.in_channels, 16), *_conv5(16, 32), *_conv5(32, 64))
        flat = 64 * (height // 2 // 2 // 2) * (width // 2 // 2 // 2)  # 64 × 3 × 3 at 28×28
        self.classifier = nn.Sequential(
            nn.Dropout(p),
            nn.Linear(flat, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(p),
            nn.Linear(128, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, self.num_classes),
        )

    def _check_input(self, x: Tensor) -> None:
        _assert_images(
            x, "ConvNet3", self.input_shape[0], self.input_shape[1], self.input_shape[2], 8
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """The checked input through ``layer1``: ``(N, 64, H/8, W/8)``."""
        self._check_input(x)
        out: Tensor = self.layer1(x)  # (N, 64, H/8, W/8)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Flatten, the two hidden Linear-ReLU layers (``pre_logits``), final Linear."""
        x = torch.flatten(x, 1)  # (N, 64·H/8·W/8); also right for N = 0
        x = self.classifier[0](x)
        x = self.classifier[1](x)
        x = self.classifier[2](x)
        x = self.classifier[3](x)
        x = self.classifier[4](x)
        x = self.classifier[5](x)  # (N, 256)
        if pre_logits:
            return x
        logits: Tensor = self.classifier[6](x)  # (N, num_classes)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class ConvNet3_Weights(WeightsEnum):
    """Pretrained weights for :class:`ConvNet3`.

    ``MNIST_V1`` (the DEFAULT) scores best on clean MNIST digits. ``MNIST_V2`` was
    trained to read thin, thick, faint and noisy digits as well
    (``tp3nets.data.augmentation("scan")``): about 99 % on faint or noisy digits where
    V1 reads 25-75 %, for 99.53 % of the clean test set instead of 99.61 %. Choose V2 for
    scans and photographs. Both are calibrated; their figures are in ``meta``.
    """

    MNIST_V1 = mnist_weights("convnet3")
    MNIST_V2 = mnist_weights("convnet3", 2)
    DEFAULT = MNIST_V1


@register_model(weights=ConvNet3_Weights)
def convnet3(
    *, weights: ConvNet3_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNet3:
    """Build a :class:`ConvNet3`, optionally with pretrained weights.

    Args:
        weights: ``None``, a :class:`ConvNet3_Weights` member, its name (``"DEFAULT"``,
            ``"MNIST_V1"``, ``"ConvNet3_Weights.MNIST_V1"``), or a checkpoint path.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        **kwargs: passed to :class:`ConvNet3`.

    Returns:
        The model, in training mode.

    Example:
        >>> convnet3(dropout=0.25).classifier[0].p
        0.25
    """
    return _build(ConvNet3, ConvNet3_Weights, weights, kwargs)
