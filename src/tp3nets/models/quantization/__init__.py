"""Int8 variants of the tp3nets models, in the shape of ``torchvision.models.quantization``.

>>> from tp3nets.models import quantization
>>> model = quantization.convnet4(weights="DEFAULT", quantize=True)

Each ``Quantizable*`` class is its float model with quant/dequant stubs and the groups it
fuses; each ``*_QuantizedWeights`` enum holds the bundled int8 weights (x86 backend), with
their accuracy, calibration and file in ``meta``. The builders are registered as
``quantized_convnet2`` … (:func:`tp3nets.list_models` ``(quantized=True)``).
"""

from ._api import (
    BACKENDS,
    QuantizableModel,
    decode_quantized_state,
    encode_quantized_state,
    quantize_model,
    quantized_weights,
)
from ._convnet2 import ConvNet2_QuantizedWeights, QuantizableConvNet2, convnet2
from ._convnet3 import ConvNet3_QuantizedWeights, QuantizableConvNet3, convnet3
from ._convnet4 import ConvNet4_QuantizedWeights, QuantizableConvNet4, convnet4
from ._onnx import QuantizedExportError, export_quantized_onnx

__all__ = [
    "BACKENDS",
    "ConvNet2_QuantizedWeights",
    "ConvNet3_QuantizedWeights",
    "ConvNet4_QuantizedWeights",
    "QuantizableConvNet2",
    "QuantizableConvNet3",
    "QuantizableConvNet4",
    "QuantizableModel",
    "QuantizedExportError",
    "convnet2",
    "convnet3",
    "convnet4",
    "decode_quantized_state",
    "encode_quantized_state",
    "export_quantized_onnx",
    "quantize_model",
    "quantized_weights",
]
