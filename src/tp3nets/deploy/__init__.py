"""Deploying a trained model: fold it, export it, and run it on the fastest backend.

:func:`fold_batchnorm` folds each BatchNorm into the convolution before it;
:func:`export_onnx` and :func:`export_torchscript` write files that are checked against the
model before they are kept; :func:`optimize` wraps a model for inference on eager PyTorch, a
traced and frozen graph, or ONNX Runtime, with the same outputs to a stated tolerance.
Calibration (:mod:`tp3nets.calibration`) and int8 models
(:mod:`tp3nets.models.quantization`) have their own homes.

Example:
    >>> import tp3nets
    >>> from tp3nets.deploy import optimize
    >>> fast = optimize(tp3nets.convnet2().eval(), backend="eager")
    >>> fast.backend
    'eager'
"""

from __future__ import annotations

from ._export import (
    EXPORT_FORMATS,
    ExportError,
    export_onnx,
    export_torchscript,
    onnx_runtime,
    verify_onnx,
    verify_torchscript,
)
from ._fold import fold_batchnorm
from ._runtime import (
    BACKENDS,
    FP32_RTOL,
    INT8_RTOL,
    Backend,
    BackendError,
    InferenceModel,
    auto_backend,
    available_backends,
    optimize,
)

__all__ = [
    "BACKENDS",
    "EXPORT_FORMATS",
    "FP32_RTOL",
    "INT8_RTOL",
    "Backend",
    "BackendError",
    "ExportError",
    "InferenceModel",
    "auto_backend",
    "available_backends",
    "export_onnx",
    "export_torchscript",
    "fold_batchnorm",
    "onnx_runtime",
    "optimize",
    "verify_onnx",
    "verify_torchscript",
]
