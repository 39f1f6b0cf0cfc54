"""Int8 layers on plain tensors: ``uint8`` activations and ``int8`` weights with their
scales beside them, run by oneDNN's int8 operators or by plain float operators.

PyTorch 2.14 deprecates its quantized dtypes (``torch.qint8``, ``torch.quint8``, …) and
the eager kernels that take them. These layers use neither: an activation is a ``uint8``
tensor whose scale and zero point are fixed when the model is converted, a weight is an
``int8`` tensor with one float scale per output channel. Two kernels compute them:

* ``"onednn"``: ``torch.ops.onednn.qconv2d_pointwise`` / ``qlinear_pointwise``, the int8
  operators on plain tensors that PyTorch's own x86 int8 path (Inductor, torchao) lowers
  to; VNNI and AMX instructions where the CPU has them.
* ``"reference"``: the same arithmetic with float operators (the integer values times
  their scales, convolved in float32, requantized); any build of PyTorch runs it, slower.

Both give the outputs of the ``torch.ao`` eager int8 kernels the bundled files were made
with, to the last int8 step (oneDNN's identically on the bundled files' test images; the
reference kernel's float accumulation may move a rounding by one step).
"""

import functools
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "KERNELS",
    "Dequantize",
    "Int8AdaptiveAvgPool2d",
    "Int8Conv2d",
    "Int8Linear",
    "Int8MaxPool2d",
    "Quantize",
    "default_kernel",
]

Kernel = Literal["onednn", "reference"]
#: The int8 kernels: oneDNN's operators on plain tensors, or float operators.
KERNELS: Final = ("onednn", "reference")


@functools.cache
def default_kernel() -> Kernel:
    """``"onednn"`` where this PyTorch has oneDNN's int8 operators in the signature these
    layers call (``output_scale``, not the older ``inv_output_scale``), else
    ``"reference"``."""
    ops = getattr(torch.ops, "onednn", None)
    try:
        conv = ops.qconv2d_pointwise.default  # type: ignore[union-attr]
        names = [a.name for a in conv._schema.arguments]
        for op in ("qconv_prepack", "qlinear_pointwise", "qlinear_prepack"):
            getattr(ops, op)
    except (AttributeError, RuntimeError):
        return "reference"
    mkldnn = bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
    return "onednn" if mkldnn and "output_scale" in names else "reference"


def check_kernel(kernel: object) -> Kernel:
    """``kernel`` if it is one of :data:`KERNELS` and runs here; ``None`` → the default."""
    if kernel is None:
        return default_kernel()
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)} or None, got {kernel!r}")
    if kernel == "onednn" and default_kernel() != "onednn":
        raise ValueError(
            "this PyTorch has no oneDNN int8 operators on plain tensors (torch.ops.onednn."
            "qconv2d_pointwise); use kernel='reference'"
        )
    return kernel


def _inverse(scale: float) -> float:
    """``1 / scale`` rounded to float32, as fbgemm and oneDNN compute it."""
    return float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(scale, dtype=torch.float32))


def quantize(x: Tensor, scale: float, zero_point: int) -> Tensor:
    """``x`` as ``uint8`` values ``round(x / scale) + zero_point``, clamped to [0, 255]
    (rounding half to even; the division as a product with the float32 inverse)."""
    q = (x * _inverse(scale)).round_().add_(zero_point).clamp_(0, 255)
    return q.to(torch.uint8)


def dequantize(q: Tensor, scale: float, zero_point: int) -> Tensor:
    return (q.to(torch.float32) - zero_point) * scale


class _Int8(nn.Module):
    """What every int8 layer has: the scale and zero point of the activation it reads,
    set from the layer before it when the model is linked (``_link``)."""

    input_scale: float
    input_zero_point: int

    def __init__(self) -> None:
        super().__init__()
        self.input_scale = 1.0
        self.input_zero_point = 0

    def output_qparams(self) -> tuple[float, int]:
        """The scale and zero point of what the layer returns: by default its input's."""
        return self.input_scale, self.input_zero_point


class Quantize(_Int8):
    """Float input → ``uint8`` (channels-last for 4-d inputs, oneDNN's layout).

    State: ``scale`` (float32, shape (1,)) and ``zero_point`` (int64, shape (1,)), the keys
    the bundled files hold for the input.
    """

    scale: Tensor
    zero_point: Tensor

    def __init__(self, scale: float = 1.0, zero_point: int = 0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([scale], dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor([zero_point], dtype=torch.int64))

    def output_qparams(self) -> tuple[float, int]:
        return float(self.scale), int(self.zero_point)

    def forward(self, x: Tensor) -> Tensor:
        scale, zero_point = self.output_qparams()
        q = quantize(x, scale, zero_point)
        return q.contiguous(memory_format=torch.channels_last) if q.dim() == 4 else q


class Dequantize(_Int8):
    """``uint8`` → float, with the scale of the layer before it; a float input is returned
    as it is."""

    def forward(self, q: Tensor) -> Tensor:
        if q.is_floating_point():
            return q
        return dequantize(q, self.input_scale, self.input_zero_point)


class _WeightedInt8(_Int8):
    """A convolution or linear layer: int8 weight, per-output-channel scales, float bias,
    the output's scale and zero point, and an optional fused ReLU.

    Its state dict uses the bundled files' keys (those of the ``torch.ao`` layers they were
    made with): ``{weight}``, ``{weight}#scale`` (float64), ``{weight}#zero_point`` (int64
    zeros), ``{weight}#axis``, ``{bias}``, ``scale``, ``zero_point``.
    """

    _weight_key = "weight"
    _bias_key = "bias"
    _packed: Tensor | None  # oneDNN's prepacked weight, made on first use
    kernel: str
    weight: Tensor
    weight_scale: Tensor
    bias: Tensor
    scale: Tensor
    zero_point: Tensor
    out_scale: float
    out_zero_point: int
    _kernel_scales: Tensor
    _kernel_zero_points: Tensor

    def __init__(
        self, weight: Tensor, weight_scale: Tensor, bias: Tensor | None, *, relu: bool,
        scale: float, zero_point: int, kernel: Kernel,
    ) -> None:
        super().__init__()
        out_channels = weight.shape[0]
        self.register_buffer("weight", weight.to(torch.int8).contiguous())
        self.register_buffer("weight_scale", weight_scale.to(torch.float64).reshape(-1))
        bias = bias if bias is not None else torch.zeros(out_channels)
        self.register_buffer("bias", bias.detach().to(torch.float32).contiguous())
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor(int(zero_point), dtype=torch.int64))
        self.relu = relu
        self.kernel = kernel
        self._packed = None
        self._refresh()

    @torch.jit.unused
    def __getstate__(self) -> dict[str, Any]:
        """The state to copy or pickle, without oneDNN's packed weight (an opaque tensor
        that cannot be copied; it is packed again at the next call)."""
        state = self.__dict__.copy()
        state["_packed"] = None
        return state

    def _refresh(self) -> None:
        """Copies of the state in the forms the kernels take, made once rather than per
        call (after a load, ``_load_from_state_dict`` makes them again)."""
        self._packed = None
        self.out_scale = float(self.scale)
        self.out_zero_point = int(self.zero_point)
        self._kernel_scales = self.weight_scale.to(torch.float32)
        self._kernel_zero_points = torch.zeros_like(self.weight_scale, dtype=torch.int64)

    def output_qparams(self) -> tuple[float, int]:
        return self.out_scale, self.out_zero_point

    def _float_weight(self) -> Tensor:
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        return self.weight.to(torch.float32) * self._kernel_scales.view(shape)

    def _finish(self, y: Tensor) -> Tensor:
        """The float result of the reference kernel as the layer's output."""
        if self.relu:
            y = y.relu_()
        scale, zero_point = self.output_qparams()
        return quantize(y, scale, zero_point)

    def _input(self, x: Tensor) -> Tensor:
        return quantize(x, self.input_scale, self.input_zero_point) if x.is_floating_point() else x

    # State dict under the files' keys ---------------------------------------------------

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        w = prefix + self._weight_key
        destination[w] = self.weight
        destination[w + "#scale"] = self.weight_scale
        destination[w + "#zero_point"] = torch.zeros_like(self.weight_scale, dtype=torch.int64)
        destination[w + "#axis"] = torch.tensor(0)
        destination[prefix + self._bias_key] = self.bias
        destination[prefix + "scale"] = self.scale
        destination[prefix + "zero_point"] = self.zero_point

    def _load_from_state_dict(
        self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
        missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
    ) -> None:
        like: dict[str, Tensor] = {}
        self._save_to_state_dict(like, prefix, False)
        for key, current in like.items():
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor) or value.shape != current.shape or (
                value.dtype != current.dtype
            ):
                error_msgs.append(
                    f"{key!r}: expected {current.dtype} {tuple(current.shape)}, got "
                    f"{getattr(value, 'dtype', type(value).__name__)} "
                    f"{tuple(getattr(value, 'shape', ()))}"
                )
                continue
            if key.endswith("#zero_point") and bool(value.any()):
                error_msgs.append(f"{key!r}: int8 weights are symmetric (zero points 0)")
            elif key.endswith("#axis") and int(value) != 0:
                error_msgs.append(f"{key!r}: scales are per output channel (axis 0)")
        if error_msgs:
            return
        w = prefix + self._weight_key
        with torch.no_grad():
            for name, key in (("weight", w), ("weight_scale", w + "#scale"),
                              ("bias", prefix + self._bias_key), ("scale", prefix + "scale"),
                              ("zero_point", prefix + "zero_point")):
                if key in state_dict:
                    getattr(self, name).copy_(state_dict[key])
        self._refresh()


class Int8Conv2d(_WeightedInt8):
    """An int8 2-d convolution (BatchNorm folded in), with an optional fused ReLU."""

    def __init__(
        self, conv: nn.Conv2d, weight: Tensor, weight_scale: Tensor, *, relu: bool,
        scale: float, zero_point: int, kernel: Kernel,
    ) -> None:
        super().__init__(weight, weight_scale, conv.bias, relu=relu, scale=scale,
                         zero_point=zero_point, kernel=kernel)
        if not isinstance(conv.padding, tuple):
            raise ValueError(f"int8 convolutions take numeric padding, got {conv.padding!r}")
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups

    def _pack(self) -> Tensor:
        packed = self._packed
        if packed is None:
            packed = torch.ops.onednn.qconv_prepack(
                self.weight, self._kernel_scales, self.input_scale,
                self.input_zero_point, self.stride, self.padding, self.dilation, self.groups,
                None,
            )
            self._packed = packed
        return packed

    def forward(self, x: Tensor) -> Tensor:
        q = self._input(x)
        if self.kernel == "onednn":
            scale, zero_point = self.output_qparams()
            out: Tensor = torch.ops.onednn.qconv2d_pointwise(
                q.contiguous(memory_format=torch.channels_last), self.input_scale,
                self.input_zero_point, self._pack(), self._kernel_scales,
                self._kernel_zero_points, self.bias,
                self.stride, self.padding, self.dilation, self.groups, scale, zero_point,
                None, "relu" if self.relu else "none", [], "",
            )
            return out
        y = F.conv2d(
            dequantize(q, self.input_scale, self.input_zero_point), self._float_weight(),
            self.bias, self.stride, self.padding, self.dilation, self.groups,
        )
        return self._finish(y)


class Int8Linear(_WeightedInt8):
    """An int8 linear layer, with an optional fused ReLU (file keys of ``torch.ao``'s
    quantized Linear: ``_packed_params._packed_params#0`` is the weight, ``#1`` the bias)."""

    _weight_key = "_packed_params._packed_params#0"
    _bias_key = "_packed_params._packed_params#1"

    def _pack(self) -> Tensor:
        packed = self._packed
        if packed is None:
            packed = torch.ops.onednn.qlinear_prepack(self.weight, None)
            self._packed = packed
        return packed

    def forward(self, x: Tensor) -> Tensor:
        q = self._input(x)
        if self.kernel == "onednn":
            scale, zero_point = self.output_qparams()
            out: Tensor = torch.ops.onednn.qlinear_pointwise(
                q.contiguous(), self.input_scale, self.input_zero_point, self._pack(),
                self._kernel_scales, self._kernel_zero_points, self.bias, scale,
                zero_point, None, "relu" if self.relu else "none", [], "",
            )
            return out
        y = F.linear(dequantize(q, self.input_scale, self.input_zero_point),
                     self._float_weight(), self.bias)
        return self._finish(y)


class Int8MaxPool2d(_Int8):
    """Max pooling of ``uint8`` activations (the scale is kept)."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, q: Tensor) -> Tensor:
        p = self.pool
        k, s = p.kernel_size, p.stride
        if (
            k == s == 2 and p.padding == 0 and p.dilation == 1 and not p.return_indices
            and not p.ceil_mode and q.dim() == 4
        ):
            # Three elementwise maxima of strided views: cheaper than a pooling kernel, and
            # PyTorch's max_pool2d refuses uint8 maps of more than 255 elements.
            h, w = q.shape[-2] // 2 * 2, q.shape[-1] // 2 * 2
            a = torch.maximum(q[..., 0:h:2, 0:w:2], q[..., 0:h:2, 1:w:2])
            b = torch.maximum(q[..., 1:h:2, 0:w:2], q[..., 1:h:2, 1:w:2])
            return torch.maximum(a, b)
        out: Tensor = p(q.to(torch.int32))
        return out.to(torch.uint8)


class Int8AdaptiveAvgPool2d(_Int8):
    """Adaptive average pooling of ``uint8`` activations: the mean, rounded to the nearest
    step (the scale is kept)."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d) -> None:
        super().__init__()
        self.output_size = pool.output_size

    def forward(self, q: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(q.to(torch.float32), self.output_size).round_().to(
            torch.uint8
        )
