"""The int8 ConvNet4: :class:`QuantizableConvNet4`, its int8 weights and its builder."""

from typing import Any

from torch import Tensor

from ...weights import WeightsEnum
from .._convnet4 import ConvNet4, ConvNet4_Weights
from .._registry import register_model
from ._api import Backend, QuantizableModel, _build_quantized, quantized_weights
from ._int8 import Kernel

__all__ = ["ConvNet4_QuantizedWeights", "QuantizableConvNet4", "convnet4"]


class QuantizableConvNet4(ConvNet4, QuantizableModel):
    """:class:`~tp3nets.ConvNet4` with quant/dequant stubs and its fusable groups.

    Same arguments, float weights and state_dict keys as ConvNet4 until it is quantized
    (:func:`quantize_model`); the int8 model takes and returns float tensors and keeps the
    input check. Its ``forward_features`` returns a quantized map (``.dequantize()`` it).

    Example:
        >>> import torch
        >>> QuantizableConvNet4(width=8).eval()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    _fuse_groups = tuple(
        (f"features.{i}", f"features.{i + 1}", f"features.{i + 2}") for i in (0, 3, 8, 11, 16, 19)
    )

    def __init__(self, num_classes: int = 10, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_stubs()

    def forward_features(self, x: Tensor) -> Tensor:
        self._check_input(x)  # on the float input, before it is quantized
        return self._features_out(self.features(self.quant(x)))

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.dequant(self.forward_head(self.forward_features(x)))
        return logits


class ConvNet4_QuantizedWeights(WeightsEnum):
    """Int8 weights for :class:`QuantizableConvNet4`, derived by ``recipes/quantize.py``
    from the fp32 weights of the same version: ``MNIST_INT8_V8`` (the DEFAULT) from
    :attr:`ConvNet4_Weights.MNIST_REAL_V8 <tp3nets.ConvNet4_Weights.MNIST_REAL_V8>`,
    ``MNIST_INT8_V1``, ``MNIST_INT8_V2`` and ``MNIST_INT8_V3`` from ``MNIST_V1``,
    ``MNIST_V2`` and ``MNIST_V3``; ``meta`` gives the backend, calibration and accuracy.

    Example:
        >>> ConvNet4_QuantizedWeights.DEFAULT.meta["backend"]
        'x86'
    """

    MNIST_INT8_V1 = quantized_weights("convnet4")
    MNIST_INT8_V2 = quantized_weights("convnet4", 2)
    MNIST_INT8_V3 = quantized_weights("convnet4", 3)
    MNIST_INT8_V8 = quantized_weights("convnet4", 8)
    DEFAULT = MNIST_INT8_V8


@register_model(name="quantized_convnet4", weights=ConvNet4_QuantizedWeights, quantized=True)
def convnet4(
    *,
    weights: ConvNet4_QuantizedWeights | ConvNet4_Weights | str | None = None,
    progress: bool = True,
    quantize: bool = False,
    backend: Backend | None = None,
    kernel: Kernel | None = None,
    **kwargs: Any,
) -> QuantizableConvNet4:
    """Build a :class:`QuantizableConvNet4`: int8 with ``quantize=True``, else float.

    Args:
        weights: with ``quantize=True``, ``None`` or a :class:`ConvNet4_QuantizedWeights`
            member or name (``"DEFAULT"``); otherwise float weights as for
            :func:`tp3nets.convnet4`.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        quantize: return the int8 model (in eval mode).
        backend: the calibration scheme; the weights' own (``x86``) by default.
        kernel: the int8 kernels, ``"onednn"`` or ``"reference"``; ``None`` picks oneDNN
            where this PyTorch has its int8 operators on plain tensors.
        **kwargs: passed to :class:`QuantizableConvNet4`.

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
        >>> model = convnet4(weights="DEFAULT", quantize=True)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return _build_quantized(
        QuantizableConvNet4, ConvNet4_Weights, ConvNet4_QuantizedWeights, weights, quantize,
        backend, kwargs, kernel,
    )
