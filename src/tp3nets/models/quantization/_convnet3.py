"""The int8 ConvNet3: :class:`QuantizableConvNet3`, its int8 weights and its builder."""

from typing import Any

from torch import Tensor

from ...weights import WeightsEnum
from .._convnet3 import ConvNet3, ConvNet3_Weights
from .._registry import register_model
from ._api import Backend, QuantizableModel, _build_quantized, quantized_weights
from ._int8 import Kernel

__all__ = ["ConvNet3_QuantizedWeights", "QuantizableConvNet3", "convnet3"]


class QuantizableConvNet3(ConvNet3, QuantizableModel):
    """:class:`~tp3nets.ConvNet3` with quant/dequant stubs and its fusable groups.

    Same arguments, float weights and state_dict keys as ConvNet3 until it is quantized
    (:func:`quantize_model`); the int8 model takes and returns float tensors and keeps the
    input check. Its ``forward_features`` returns a quantized map (``.dequantize()`` it).

    Example:
        >>> import torch
        >>> QuantizableConvNet3().eval()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    _fuse_groups = (
        ("layer1.0", "layer1.1"),
        ("layer1.3", "layer1.4"),
        ("layer1.6", "layer1.7"),
        ("classifier.1", "classifier.2"),
        ("classifier.4", "classifier.5"),
    )

    _features_path = "layer1"

    def __init__(self, num_classes: int = 10, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_stubs()

    def forward_features(self, x: Tensor) -> Tensor:
        self._check_input(x)  # on the float input, before it is quantized
        return self._features_out(self.layer1(self.quant(x)))

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.dequant(self.forward_head(self.forward_features(x)))
        return logits


class ConvNet3_QuantizedWeights(WeightsEnum):
    """Int8 weights for :class:`QuantizableConvNet3`, derived from
    :attr:`ConvNet3_Weights.MNIST_V1 <tp3nets.ConvNet3_Weights.MNIST_V1>` by
    ``recipes/quantize.py``; ``meta`` gives the backend, calibration and accuracy.

    Example:
        >>> ConvNet3_QuantizedWeights.DEFAULT.meta["backend"]
        'x86'
    """

    MNIST_INT8_V1 = quantized_weights("convnet3")
    DEFAULT = MNIST_INT8_V1


@register_model(name="quantized_convnet3", weights=ConvNet3_QuantizedWeights, quantized=True)
def convnet3(
    *,
    weights: ConvNet3_QuantizedWeights | ConvNet3_Weights | str | None = None,
    progress: bool = True,
    quantize: bool = False,
    backend: Backend | None = None,
    kernel: Kernel | None = None,
    **kwargs: Any,
) -> QuantizableConvNet3:
    """Build a :class:`QuantizableConvNet3`: int8 with ``quantize=True``, else float.

    Args:
        weights: with ``quantize=True``, ``None`` or a :class:`ConvNet3_QuantizedWeights`
            member or name (``"DEFAULT"``); otherwise float weights as for
            :func:`tp3nets.convnet3`.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        quantize: return the int8 model (in eval mode).
        backend: the calibration scheme; the weights' own (``x86``) by default.
        kernel: the int8 kernels, ``"onednn"`` or ``"reference"``; ``None`` picks oneDNN
            where this PyTorch has its int8 operators on plain tensors.
        **kwargs: passed to :class:`QuantizableConvNet3`.

    Returns:
        The int8 model in eval mode (``quantize=True``), else the float model in training
        mode.

    Raises:
        ValueError: int8 weights without ``quantize=True`` or float ones with it, or an
            unavailable backend.
        CheckpointError: the int8 file is missing or was modified
            (:class:`tp3nets.CheckpointError`).

    Example:
        >>> import torch
        >>> model = convnet3(weights="DEFAULT", quantize=True)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return _build_quantized(
        QuantizableConvNet3, ConvNet3_Weights, ConvNet3_QuantizedWeights, weights, quantize,
        backend, kwargs, kernel,
    )
