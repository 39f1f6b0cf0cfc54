"""ONNX export of the int8 models, where the exporter can do it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..._atomic import atomic_path
from ._api import _quiet

__all__ = ["QuantizedExportError", "export_quantized_onnx"]


class QuantizedExportError(RuntimeError):
    """The ONNX exporter cannot write this int8 model, or the file it wrote disagrees."""


def _is_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def export_quantized_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset_version: int = 17,
    check: bool = True,
) -> Path:
    """Write an int8 model to ONNX (QuantizeLinear/DequantizeLinear around the int8 layers).

    ``torch.export``-based ONNX export (the default exporter) cannot trace the eager
    quantized modules, so this uses the TorchScript-based exporter (``dynamo=False``),
    which writes the quantized layers in ONNX's QDQ form; ONNX Runtime runs them as int8
    kernels. The batch dimension is dynamic. With ``check`` the file is run on random
    inputs by ONNX Runtime (when installed) and must give the model's predictions.

    Args:
        model: an int8 model (a ``quantize=True`` builder's, or :func:`quantize_model`'s).
        path: the ``.onnx`` file to write.
        opset_version: ONNX opset (QDQ needs at least 13).
        check: compare the file with the model on random inputs.

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` is not quantized (use :func:`tp3nets.export.export_onnx`) or
            the opset is below 13.
        QuantizedExportError: the exporter cannot write the model (the message carries its
            reason), or the written file gives other predictions than the model.

    Example:
        >>> import tempfile, torch
        >>> from tp3nets.models.quantization import QuantizableConvNet2, quantize_model
        >>> q = quantize_model(QuantizableConvNet2().eval(), torch.rand(8, 1, 28, 28))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     export_quantized_onnx(q, f"{d}/q.onnx").name
        'q.onnx'
    """
    if not isinstance(model, nn.Module) or not _is_quantized(model):
        raise ValueError(
            "export_quantized_onnx expects an int8 model (tp3nets.models.quantization builders "
            "with quantize=True, or quantize_model); export float models with "
            "tp3nets.export.export_onnx"
        )
    if isinstance(opset_version, bool) or not isinstance(opset_version, int) or (
        opset_version < 13
    ):
        raise ValueError(f"QDQ ONNX needs opset_version >= 13, got {opset_version!r}")
    target = Path(path).expanduser()
    shape = tuple(getattr(model, "input_shape", (1, 28, 28)))
    model = model.eval()
    example = torch.rand(1, *shape)
    # Written beside the target and renamed onto it once checked: a full disk or a failed
    # check leaves an earlier export at that path whole.
    with atomic_path(target) as tmp:
        try:
            with _quiet(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes about the input check
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset_version,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                )
        except OSError:
            raise
        except Exception as exc:
            raise QuantizedExportError(
                f"the ONNX exporter cannot write this int8 model: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}; export the "
                f"float model with tp3nets.export.export_onnx and quantize it with ONNX "
                f"Runtime instead"
            ) from exc
        if check:
            _check(model, tmp, shape)
    return target


def _check(model: nn.Module, target: Path, shape: tuple[int, ...]) -> None:
    try:
        import onnxruntime
    except ImportError:  # the check is a courtesy of the optional runtime
        return
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    if tuple(shape) == (1, 28, 28):
        # Digits, not noise: on noise a model taught that non-digits have no class (the
        # weights for realistic pictures) gives nearly equal logits, whose order one int8
        # rounding step can swap.
        from ...samples import digit_batch

        x = digit_batch()[0]
    else:
        x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected: Tensor = model(x)
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    # Rounding may differ by one int8 step between the runtimes: compare the predictions,
    # and the logits to a few quantization steps.
    step = float(expected.abs().max()) / 64 + 1e-6
    if not torch.equal(got.argmax(1), expected.argmax(1)) or float(
        (got - expected).abs().max()
    ) > step:
        raise QuantizedExportError(
            f"{str(target)!r} was written but ONNX Runtime's logits differ from the model's "
            f"(max difference {float((got - expected).abs().max()):.3g})"
        )
