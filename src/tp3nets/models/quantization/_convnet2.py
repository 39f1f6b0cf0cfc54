"""The int8 ConvNet2: :class:`QuantizableConvNet2`, its int8 weights and its builder."""

from typing import Any

from torch import Tensor

from ...weights import WeightsEnum
from .._convnet2 import ConvNet2, ConvNet2_Weights
from .._registry import register_model
from ._api import Backend, QuantizableModel, _build_quantized, quantized_weights
from ._int8 import Kernel

__all__ = ["ConvNet2_QuantizedWeights", "QuantizableConvNet2", "convnet2"]


class QuantizableConvNet2(ConvNet2, QuantizableModel):
    """:class:`~tp3nets.ConvNet2` with quant/dequant stubs and its fusable groups.

    Same arguments, float weights and state_dict keys as ConvNet2 until it is quantized
    (:func:`quantize_model`); the int8 model takes and returns float tensors and keeps the
    input check. Its ``forward_features`` returns a quantized map (``.dequantize()`` it).

    Example:
        >>> import torch
        >>> QuantizableConvNet2().eval()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    _fuse_groups = (("layer1.0", "layer1.1"), ("classifier.1", "classifier.2"))

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


class ConvNet2_QuantizedWeights(WeightsEnum):
    """Int8 weights for :class:`QuantizableConvNet2`, derived by ``recipes/quantize.py``:
    ``MNIST_INT8_V1`` (the DEFAULT) from :attr:`ConvNet2_Weights.MNIST_V1
    <tp3nets.ConvNet2_Weights.MNIST_V1>`, ``MNIST_INT8_V2`` (for thin, faint and noisy digits)
    from :attr:`ConvNet2_Weights.MNIST_V2 <tp3nets.ConvNet2_Weights.MNIST_V2>`; ``meta`` gives the
    backend, calibration and accuracy.

    Example:
        >>> ConvNet2_QuantizedWeights.DEFAULT.meta["backend"]
        'x86'
    """

    MNIST_INT8_V1 = quantized_weights("convnet2")
    MNIST_INT8_V2 = quantized_weights("convnet2", 2)
    DEFAULT = MNIST_INT8_V1


@register_model(name="quantized_convnet2", weights=ConvNet2_QuantizedWeights, quantized=True)
def convnet2(
    *,
    weights: ConvNet2_QuantizedWeights | ConvNet2_Weights | str | None = None,
    progress: bool = True,
    quantize: bool = False,
    backend: Backend | None = None,
    kernel: Kernel | None = None,
    **kwargs: Any,
) -> QuantizableConvNet2:
    """Build a :class:`QuantizableConvNet2`: int8 with ``quantize=True``, else float.

    Args:
        weights: with ``quantize=True``, ``None`` or a :class:`ConvNet2_QuantizedWeights`
            member or name (``"DEFAULT"``); otherwise float weights as for
            :func:`tp3nets.convnet2`.
        progress: accepted for torchvision compatibility; nothing is downloaded.
        quantize: return the int8 model (in eval mode).
        backend: the calibration scheme; the weights' own (``x86``) by default.
        kernel: the int8 kernels, ``"onednn"`` or ``"reference"``; ``None`` picks oneDNN
            where this PyTorch has its int8 operators on plain tensors.
        **kwargs: passed to :class:`QuantizableConvNet2`.

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
        >>> model = convnet2(weights="DEFAULT", quantize=True)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return _build_quantized(
        QuantizableConvNet2, ConvNet2_Weights, ConvNet2_QuantizedWeights, weights, quantize,
        backend, kwargs, kernel,
    )
