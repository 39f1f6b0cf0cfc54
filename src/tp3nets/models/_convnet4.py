"""ConvNet4: six batch_relu blocks in three stages, global average pooling, one Linear."""

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._util._checks import check_int, check_probability
from ..weights import WeightsEnum
from ..weights._defaults import mnist_weights
from ._registry import _build, register_model
from ._utils import ClassifierModel, _assert_images
from .layers import batch_relu

__all__ = ["ConvNet4", "ConvNet4_Weights", "convnet4"]


class ConvNet4(ClassifierModel):
    """The lab's ConvNet4 (a VGG-style net with batch norm and global average pooling)::

        64C3-BN-ReLU-64C3-BN-ReLU-MaxPool2 - Dropout(0.4)
        128C3-BN-ReLU-128C3-BN-ReLU-MaxPool2 - Dropout(0.4)
        256C3-BN-ReLU-256C3-BN-ReLU-GlobalAvgPool - Dropout(0.5) - FC

    Same layers, order and state_dict keys as the reference (``features.0`` …
    ``features.21``, ``lin1``). The reference pools with ``AvgPool2d(kernel_size=7)``,
    which is a global average only for 28×28 inputs; here the pool is
    :class:`~torch.nn.AdaptiveAvgPool2d` ``(1)``, the last layer of ``features`` as in the
    reference (so ``model.features(x)`` gives the 4·width pooled features), identical at
    28×28 (same logits, no parameters) and correct for any input of at least 4×4.

    Args:
        num_classes: number of outputs.
        in_channels: channels of the input images.
        width: filters of the first stage (the reference's ``base_n``); the stages have
            ``width``, ``2·width`` and ``4·width``.
        dropout: dropout probability after each of the first two stages.
        classifier_dropout: dropout probability before the final Linear layer.

    Raises:
        ValueError: if a size is not a positive int or a dropout is not in [0, 1).

    Shape:
        (N, in_channels, H, W) with H, W ≥ 4 → (N, num_classes)

    Example:
        >>> import torch
        >>> model = ConvNet4().eval()
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> model(torch.zeros(2, 1, 64, 48)).shape
        torch.Size([2, 10])
    """

    _head_path = "lin1"

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        width: int = 64,
        dropout: float = 0.4,
        classifier_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_classes = check_int(num_classes, "num_classes", who=name)
        self.in_channels = check_int(in_channels, "in_channels", who=name)
        self.input_shape: tuple[int, ...] = (self.in_channels, 28, 28)
        n = check_int(width, "width", who=name)
        p = check_probability(dropout, "dropout", who=name, high_open=True)
        self.classifier_dropout = check_probability(
            classifier_dropout, "classifier_dropout", who=name, high_open=True
        )
        self.features = nn.Sequential(
            *batch_relu(self.in_channels, n, 3),
            *batch_relu(n, n, 3),
            nn.MaxPool2d(kernel_size=2),  # (N, n, H/2, W/2)
            nn.Dropout(p),
            *batch_relu(n, 2 * n, 3),
            *batch_relu(2 * n, 2 * n, 3),
            nn.MaxPool2d(kernel_size=2),  # (N, 2n, H/4, W/4)
            nn.Dropout(p),
            *batch_relu(2 * n, 4 * n, 3),
            *batch_relu(4 * n, 4 * n, 3),  # (N, 4n, H/4, W/4)
            nn.AdaptiveAvgPool2d(1),  # (N, 4n, 1, 1); = AvgPool2d(7) at 28×28
        )
        self.num_features = 4 * n
        self.head_hidden_size = 4 * n
        self.lin1 = nn.Linear(4 * n, self.num_classes)

    def _check_input(self, x: Tensor) -> None:
        _assert_images(x, "ConvNet4", self.in_channels, -1, -1, 4)

    def forward_features(self, x: Tensor) -> Tensor:
        """The checked input through ``features``, its global pool included, as the lab's
        model has it: ``(N, 4·width, 1, 1)``."""
        self._check_input(x)
        out: Tensor = self.features(x)  # (N, 4n, 1, 1)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Flatten, dropout (``pre_logits``: ``(N, 4·width)``), final Linear."""
        x = torch.flatten(x, 1)  # (N, 4n); also right for N = 0
        x = F.dropout(x, self.classifier_dropout, self.training)
        if pre_logits:
            return x
        logits: Tensor = self.lin1(x)  # (N, num_classes)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class ConvNet4_Weights(WeightsEnum):
    """Pretrained weights for :class:`ConvNet4`.

    ``MNIST_REAL_V8`` (the DEFAULT) is ``MNIST_V2`` fine-tuned on MNIST plus realistic
    pictures (phone photos, canvas exports, printed digits, low-resolution scans) and on
    pictures without a digit taught as no class, so that letters, scribbles and textures
    get a low probability (``recipes/train_real.py``; 99.71 % of the MNIST test set).
    ``MNIST_V2`` was trained to read thin, thick, faint and noisy digits as well as clean
    ones (``tp3nets.data.augmentation("scan")``) with an exponential moving average of
    its weights; ``MNIST_V1``, the first release, stays available unchanged. ``MNIST_V3``
    is V2's recipe trained twice as long. All are calibrated; their figures are in
    ``meta``.
    """

    MNIST_V1 = mnist_weights("convnet4")
    MNIST_V2 = mnist_weights("convnet4", 2)
    MNIST_V3 = mnist_weights("convnet4", 3)
    MNIST_REAL_V8 = mnist_weights("convnet4", 8)
    DEFAULT = MNIST_REAL_V8


@register_model(weights=ConvNet4_Weights)
def convnet4(
    *, weights: ConvNet4_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNet4:
    """Build a :class:`ConvNet4`, optionally with pretrained weights.

    Args:
        weights: ``None``, a :class:`ConvNet4_Weights` member, its name (``"DEFAULT"``,
            ``"MNIST_V1"``, ``"ConvNet4_Weights.MNIST_V1"``), or a checkpoint path.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        **kwargs: passed to :class:`ConvNet4`.

    Returns:
        The model, in training mode.

    Example:
        >>> model = convnet4(weights="DEFAULT").eval()
        >>> model.num_classes
        10
    """
    return _build(ConvNet4, ConvNet4_Weights, weights, kwargs)
