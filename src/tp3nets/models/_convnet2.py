"""ConvNet2: one Conv-ReLU-MaxPool block and a two-layer classifier with dropout."""

from collections.abc import Mapping
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

__all__ = ["ConvNet2", "ConvNet2_Weights", "convnet2"]


class ConvNet2(ClassifierModel):
    """The lab's ConvNet2: ``8C5s1 - ReLU - MaxPool2 - Dropout - FC500 - ReLU - FC``.

    Same layers, order and state_dict keys as the reference (``layer1.0``,
    ``classifier.1``, ``classifier.3``). ``ConvNet2(dropout=0.0)`` is the lab's base
    "ConvNet" (the same network without its dropout). The base net's classifier has no
    Dropout in front, so its checkpoints name the Linear layers ``classifier.0`` and
    ``classifier.2``; they load too (``load_state_dict`` and ``weights=`` rename them).

    Args:
        num_classes: number of outputs.
        in_channels: channels of the input images.
        input_size: image size ``H`` or ``(H, W)``; the flatten size ``8·⌊H/2⌋·⌊W/2⌋``
            follows from it.
        dropout: dropout probability before the hidden Linear layer (0 gives the base ConvNet).
        hidden: width of the hidden Linear layer.

    Raises:
        ValueError: if a size is not a positive int or the dropout is not in [0, 1).

    Shape:
        (N, in_channels, H, W) → (N, num_classes)

    Example:
        >>> import torch
        >>> ConvNet2()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> ConvNet2(num_classes=5, in_channels=3, input_size=32)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    _head_path = "classifier.3"

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        input_size: int | tuple[int, int] = 28,
        dropout: float = 0.5,
        hidden: int = 500,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_classes = check_int(num_classes, "num_classes", who=name)
        self.in_channels = check_int(in_channels, "in_channels", who=name)
        height, width = _size2(input_size, name)
        if height < 2 or width < 2:
            raise ValueError(f"{name} expects input_size of at least 2x2, got {input_size!r}")
        self.input_shape: tuple[int, ...] = (self.in_channels, height, width)
        hidden = check_int(hidden, "hidden", who=name)
        self.num_features = 8  # channels of forward_features' map
        self.head_hidden_size = hidden  # what the final Linear reads
        self.layer1 = nn.Sequential(
            nn.Conv2d(self.in_channels, 8, kernel_size=5, stride=1, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        flat = 8 * (height // 2) * (width // 2)  # 8 × 14 × 14 = 1568 at 28×28
        self.classifier = nn.Sequential(
            nn.Dropout(check_probability(dropout, "dropout", who=name, high_open=True)),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.num_classes),
        )

        self._register_load_state_dict_pre_hook(  # type: ignore[no-untyped-call]
            self._base_convnet_hook
        )

    def _upgrade_keys(self, state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """``state`` with the base ConvNet's ``classifier.0``/``classifier.2`` keys renamed
        to ConvNet2's ``classifier.1``/``classifier.3`` (other states, and any state for a
        subclass whose classifier is laid out otherwise, come back as they are)."""
        head = f"{prefix}classifier."
        ours = isinstance(self.classifier[0], nn.Dropout) and len(self.classifier) == 4
        if not ours or f"{head}0.weight" not in state or f"{head}1.weight" in state:
            return dict(state)
        renames = {f"{head}0.": f"{head}1.", f"{head}2.": f"{head}3."}

        def renamed(key: str) -> str:
            for src, dst in renames.items():
                if key.startswith(src):
                    return dst + key[len(src) :]
            return key

        return {renamed(k): v for k, v in state.items()}

    def _base_convnet_hook(self, state: dict[str, Tensor], prefix: str, *_: Any) -> None:
        upgraded = self._upgrade_keys(state, prefix)
        if upgraded.keys() != state.keys():
            state.clear()
            state.update(upgraded)

    def _check_input(self, x: Tensor) -> None:
        _assert_images(
            x, "ConvNet2", self.input_shape[0], self.input_shape[1], self.input_shape[2], 2
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """The checked input through ``layer1``: ``(N, 8, H/2, W/2)``."""
        self._check_input(x)
        out: Tensor = self.layer1(x)  # (N, 8, H/2, W/2)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Flatten, dropout, hidden Linear-ReLU (``pre_logits``), final Linear."""
        x = torch.flatten(x, 1)  # (N, 8·H/2·W/2); also right for N = 0
        x = self.classifier[0](x)
        x = self.classifier[1](x)
        x = self.classifier[2](x)  # (N, hidden)
        if pre_logits:
            return x
        logits: Tensor = self.classifier[3](x)  # (N, num_classes)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class ConvNet2_Weights(WeightsEnum):
    """Pretrained weights for :class:`ConvNet2`.

    ``MNIST_V1`` (the DEFAULT) scores best on clean MNIST digits. ``MNIST_V2`` was
    trained to read thin, thick, faint and noisy digits as well
    (``tp3nets.data.augmentation("scan")``): about 99 % on faint or noisy digits where
    V1 reads 25-75 %, for 99.23 % of the clean test set instead of 99.31 %. Choose V2 for
    scans and photographs. Both are calibrated; their figures are in ``meta``.
    """

    MNIST_V1 = mnist_weights("convnet2")
    MNIST_V2 = mnist_weights("convnet2", 2)
    DEFAULT = MNIST_V1


@register_model(weights=ConvNet2_Weights)
def convnet2(
    *, weights: ConvNet2_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNet2:
    """Build a :class:`ConvNet2`, optionally with pretrained weights.

    Args:
        weights: ``None``, a :class:`ConvNet2_Weights` member, its name (``"DEFAULT"``,
            ``"MNIST_V1"``, ``"ConvNet2_Weights.MNIST_V1"``), or a checkpoint path.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        **kwargs: passed to :class:`ConvNet2`.

    Returns:
        The model, in training mode.

    Example:
        >>> convnet2(num_classes=4).num_classes
        4
    """
    return _build(ConvNet2, ConvNet2_Weights, weights, kwargs)
