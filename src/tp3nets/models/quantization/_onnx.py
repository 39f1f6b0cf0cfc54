"""ONNX export of the int8 models, in ONNX's QDQ form."""

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..._io._atomic import atomic_path
from ..._util._checks import check_int
from ._api import _int8_order
from ._int8 import (
    Dequantize,
    Int8AdaptiveAvgPool2d,
    Int8Conv2d,
    Int8MaxPool2d,
    Quantize,
    _WeightedInt8,
)

__all__ = ["QuantizedExportError", "export_quantized_onnx"]


class QuantizedExportError(RuntimeError):
    """The ONNX exporter cannot write this int8 model, or the file it wrote disagrees."""


def _is_quantized(model: nn.Module) -> bool:
    return bool(_int8_order(model))


class _Graph:
    """The QDQ graph of an int8 model's layers, written in the order they run."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: Tensor) -> str:
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(value.detach().cpu().numpy(), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out

    def qparams(self, scale: float, zero_point: int) -> list[str]:
        return [self.const("scale", torch.tensor(scale, dtype=torch.float32)),
                self.const("zero_point", torch.tensor(zero_point, dtype=torch.uint8))]

    def dq(self, x: str, scale: float, zero_point: int) -> str:
        return self.node("DequantizeLinear", [x, *self.qparams(scale, zero_point)])

    def q(self, x: str, scale: float, zero_point: int) -> str:
        return self.node("QuantizeLinear", [x, *self.qparams(scale, zero_point)])

    def weighted(self, layer: _WeightedInt8, x: str, rank: int) -> tuple[str, int]:
        w = self.node("DequantizeLinear", [
            self.const("weight", layer.weight),
            self.const("weight_scale", layer.weight_scale.to(torch.float32)),
            self.const("weight_zero_point", torch.zeros(len(layer.weight_scale), dtype=torch.int8)),
        ], axis=0)
        xf = self.dq(x, layer.input_scale, layer.input_zero_point)
        bias = self.const("bias", layer.bias)
        if isinstance(layer, Int8Conv2d):
            pads = list(layer.padding) * 2
            y = self.node("Conv", [xf, w, bias], strides=layer.stride, pads=pads,
                          dilations=layer.dilation, group=layer.groups)
        else:
            if rank != 2:  # the models' torch.flatten(x, 1) before their classifier
                xf, rank = self.node("Flatten", [xf], axis=1), 2
            y = self.node("Gemm", [xf, w, bias], transB=1)
        if layer.relu:
            y = self.node("Relu", [y])
        return self.q(y, *layer.output_qparams()), rank

    def layer(self, layer: nn.Module, x: str, rank: int) -> tuple[str, int]:
        """One int8 layer on ``x`` (a tensor of ``rank`` dimensions): its output and rank."""
        if isinstance(layer, Quantize):
            return self.q(x, *layer.output_qparams()), rank
        if isinstance(layer, Dequantize):
            return self.dq(x, layer.input_scale, layer.input_zero_point), rank
        if isinstance(layer, _WeightedInt8):
            return self.weighted(layer, x, rank)
        if isinstance(layer, Int8MaxPool2d):
            p = layer.pool
            k = list(p.kernel_size) if isinstance(p.kernel_size, tuple) else [p.kernel_size] * 2
            stride = p.stride if p.stride is not None else p.kernel_size
            st = list(stride) if isinstance(stride, tuple) else [stride] * 2
            pad = list(p.padding) * 2 if isinstance(p.padding, tuple) else [p.padding] * 4
            dil = list(p.dilation) if isinstance(p.dilation, tuple) else [p.dilation] * 2
            return self.node("MaxPool", [x], kernel_shape=k, strides=st, pads=pad,
                             dilations=dil, ceil_mode=int(p.ceil_mode)), rank
        if isinstance(layer, Int8AdaptiveAvgPool2d) and layer.output_size in (1, (1, 1)):
            xf = self.dq(x, layer.input_scale, layer.input_zero_point)
            y = self.node("GlobalAveragePool", [xf])
            return self.q(y, layer.input_scale, layer.input_zero_point), rank
        raise QuantizedExportError(
            f"ONNX export has no QDQ form for {type(layer).__name__} "
            f"{getattr(layer, 'output_size', '')}".rstrip()
        )


def _write_qdq(model: nn.Module, target: Path, shape: tuple[int, ...], opset: int) -> None:
    import onnx

    graph = _Graph(onnx)
    x, rank = "images", 1 + len(shape)
    for name in _int8_order(model):
        x, rank = graph.layer(model.get_submodule(name), x, rank)
    graph.nodes[-1].output[0] = "logits"
    dims: list[Any] = ["batch", *shape]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            graph.nodes, "tp3nets_int8",
            [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, dims)],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", None])],
            graph.inits,
        ),
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="tp3nets",
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(target))


def export_quantized_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset_version: int = 17,
    check: bool = True,
) -> Path:
    """Write an int8 model to ONNX (QuantizeLinear/DequantizeLinear around the int8 layers).

    The graph is written from the int8 layers themselves, in the order they run: each
    layer's integer weights and scales as initializers, ``DequantizeLinear`` → the float
    operator → ``QuantizeLinear`` around it, which ONNX Runtime fuses into its int8 kernels
    (``QLinearConv``, ``QLinearMatMul``). The batch dimension is dynamic. With ``check``
    the file is run by ONNX Runtime (when installed) on sample digits and must give the
    model's predictions.

    Args:
        model: an int8 model (a ``quantize=True`` builder's, or :func:`quantize_model`'s).
        path: the ``.onnx`` file to write.
        opset_version: ONNX opset (QDQ needs at least 13).
        check: compare the file with the model on random inputs.

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` is not quantized (use :func:`tp3nets.deploy.export_onnx`) or
            the opset is below 13.
        QuantizedExportError: a layer has no QDQ form, the onnx package is missing, or the
            written file gives other predictions than the model.

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
            "tp3nets.deploy._export.export_onnx"
        )
    opset_version = check_int(opset_version, "opset_version", who="export_quantized_onnx",
                              minimum=13, what="an int >= 13 (QDQ ONNX needs opset 13)")
    target = Path(path).expanduser()
    shape = tuple(getattr(model, "input_shape", (1, 28, 28)))
    model = model.eval()
    # Written beside the target and renamed onto it once checked: a full disk or a failed
    # check leaves an earlier export at that path whole.
    with atomic_path(target) as tmp:
        try:
            _write_qdq(model, tmp, shape, opset_version)
        except (OSError, QuantizedExportError):
            raise
        except ImportError as exc:
            raise QuantizedExportError(
                "ONNX export needs the onnx package: pip install 'tp3nets[onnx]'"
            ) from exc
        except Exception as exc:
            raise QuantizedExportError(
                f"the int8 model could not be written as ONNX: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
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
        from ...data.samples import digit_batch

        x = digit_batch()[0]
    else:
        x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected: Tensor = model(x)
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    # Rounding may differ by an int8 step between the runtimes: compare the predictions,
    # and the logits to two steps of the output's scale.
    last = model.get_submodule(_int8_order(model)[-1])
    step = 2 * float(getattr(last, "input_scale", 0.0)) + 1e-6
    if not torch.equal(got.argmax(1), expected.argmax(1)) or float(
        (got - expected).abs().max()
    ) > step:
        raise QuantizedExportError(
            f"{str(target)!r} was written but ONNX Runtime's logits differ from the model's "
            f"(max difference {float((got - expected).abs().max()):.3g})"
        )
