"""Post-training int8 quantization of the tp3nets models, and the int8 weight files.

Static quantization on plain tensors (:mod:`._int8`): each ``Quantizable*`` model folds
BatchNorm into its convolutions and fuses the ReLU after them, observes calibration
images, and is converted to int8 layers that hold ``int8`` weights with per-channel scales
and pass ``uint8`` activations with one scale each. No quantized dtype (``torch.qint8``,
``torch.quint8``), deprecated in PyTorch 2.14, is made or read; oneDNN's int8 operators
on plain tensors run the layers where PyTorch has them, float operators elsewhere.

The int8 state dict holds plain tensors under the keys of the ``torch.ao`` layers the
bundled files were first made with: each weight as its integer values plus ``#scale``,
``#zero_point`` and ``#axis`` entries (:func:`encode_quantized_state` and
:func:`decode_quantized_state` also read and write ``torch.ao`` quantized state dicts).
"""

import copy
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..._util._checks import check_bool
from ...weights import CheckpointError, Weights, WeightsEnum
from .._registry import _build, _refuse_pretrained
from .._utils import ClassifierModel
from ._int8 import (
    Dequantize,
    Int8AdaptiveAvgPool2d,
    Int8Conv2d,
    Int8Linear,
    Int8MaxPool2d,
    Kernel,
    Quantize,
    _Int8,
    _WeightedInt8,
    check_kernel,
)

__all__ = [
    "BACKENDS",
    "QuantizableModel",
    "decode_quantized_state",
    "encode_quantized_state",
    "quantize_model",
    "quantized_weights",
]

Backend = Literal["x86", "fbgemm", "onednn", "qnnpack"]
#: The calibration schemes the builders accept, named after the engines they suit: ``x86``
#: and ``fbgemm`` keep activations in [0, 127] (no saturation in the int8 dot products of
#: CPUs without VNNI), ``onednn`` and ``qnnpack`` use [0, 255]. The bundled files are ``x86``.
BACKENDS: Final = ("x86", "fbgemm", "onednn", "qnnpack")
_REDUCED_RANGE: Final = ("x86", "fbgemm")
_PER_CHANNEL: Final = ("per_channel_affine", "per_channel_affine_float_qparams")
M = TypeVar("M", bound=ClassifierModel)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao's notes where its observers are used (see the quantization docs)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.ao")
        yield


class Quant(nn.Identity):
    """Where the float input enters the int8 part (identity in the float model)."""


class Dequant(nn.Identity):
    """Where the int8 part hands float values back (identity in the float model)."""


class _Fused(nn.Module):
    """A convolution or linear layer (BatchNorm folded in) and an optional ReLU."""

    def __init__(self, layer: nn.Module, relu: bool) -> None:
        super().__init__()
        self.layer = layer
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layer(x)
        return out.relu() if self.relu else out


class QuantizableModel(nn.Module):
    """What :func:`quantize_model` needs: ``fuse_model()`` and the ``quant``/``dequant`` stubs.

    The ``Quantizable*`` classes of :mod:`tp3nets.models.quantization` mix this in ahead of
    their float model, so they keep its attributes, checks and state_dict keys.
    """

    #: Groups of submodule names fused before quantization (Conv-BN-ReLU, Linear-ReLU).
    _fuse_groups: tuple[tuple[str, ...], ...] = ()
    #: The submodule whose output ``forward_features`` returns.
    _features_path = "features"
    if TYPE_CHECKING:  # set by quantize_model
        backend: str
    _feature_scale: float
    _feature_zero_point: int

    def _add_stubs(self) -> None:
        self.quant = Quant()
        self.dequant = Dequant()
        # The scale and zero point of an int8 model's feature map (set by _link).
        self._feature_scale = 1.0
        self._feature_zero_point = 0

    def _features_out(self, out: Tensor) -> Tensor:
        """``forward_features``' result as floats: an int8 model's ``uint8`` map times its
        scale; a float model's map as it is."""
        if out.is_floating_point():
            return out
        return (out.to(torch.float32) - self._feature_zero_point) * self._feature_scale

    def fuse_model(self) -> None:
        """Fold each group's BatchNorm into its convolution and fuse its ReLU, in place
        (eval mode only): the first layer of a group becomes the fused layer, the others
        :class:`~torch.nn.Identity`.

        Raises:
            ValueError: the model is in training mode (folding uses BatchNorm's running
                statistics, which only holds for inference).
        """
        if self.training:
            raise ValueError(
                f"{type(self).__name__}.fuse_model() folds BatchNorm for inference: call "
                f".eval() first"
            )
        for group in self._fuse_groups:
            layer = self.get_submodule(group[0])
            relu = False
            for name in group[1:]:
                other = self.get_submodule(name)
                if isinstance(other, nn.BatchNorm2d) and isinstance(layer, nn.Conv2d):
                    layer = fuse_conv_bn_eval(layer, other)
                elif isinstance(other, nn.BatchNorm1d) and isinstance(layer, nn.Linear):
                    layer = fuse_linear_bn_eval(layer, other)
                elif isinstance(other, nn.ReLU):
                    relu = True
                else:
                    raise TypeError(
                        f"cannot fuse {name!r} ({type(other).__name__}) into {group[0]!r}"
                    )
                _set(self, name, nn.Identity())
            _set(self, group[0], _Fused(layer, relu))
        for name, module in list(self.named_modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.endswith(".layer"):
                _set(self, name, _Fused(module, False))


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _check_backend(backend: object) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _batches(calibration: Tensor | Iterable[Any], batch_size: int) -> Iterator[Tensor]:
    """Calibration images as batches: a tensor is cut in chunks; an iterable yields
    tensors or ``(images, labels)`` pairs, as a :class:`~tp3nets.data.TensorLoader` does."""
    if isinstance(calibration, Tensor):
        yield from calibration.split(batch_size)  # type: ignore[no-untyped-call]
        return
    for item in calibration:
        images = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(images, Tensor):
            raise TypeError(
                f"calibration batches must be tensors or (images, labels) pairs, got "
                f"{type(item).__name__}"
            )
        yield images


# --------------------------------------------------------------------------------------
# Observing the fused float model, and converting it

_ORDERED = (Quant, Dequant, _Fused, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
_PASSED = (nn.Identity, nn.Dropout, nn.Flatten)


def _run_order(fused: nn.Module, images: Tensor) -> list[str]:
    """The names of the layers the int8 model computes, in the order a forward pass runs
    them; a layer that cannot take int8 activations is refused."""
    order: list[str] = []
    inside = [False]

    def hook(name: str, module: nn.Module) -> Callable[..., None]:
        def record(*_: Any) -> None:
            if isinstance(module, Quant):
                inside[0] = True
            if isinstance(module, _ORDERED):
                order.append(name)
            elif inside[0] and not isinstance(module, _PASSED):
                raise TypeError(
                    f"cannot run {name!r} ({type(module).__name__}) on int8 activations: "
                    f"int8 models take convolutions, linear layers, ReLU, BatchNorm, max "
                    f"and adaptive average pooling, dropout and flatten"
                )
            if isinstance(module, Dequant):
                inside[0] = False
        return record

    handles = [
        m.register_forward_hook(hook(n, m)) for n, m in fused.named_modules()
        if n and (isinstance(m, _ORDERED) or not list(m.children())) and not n.endswith(".layer")
    ]
    try:
        with torch.no_grad():
            fused(images)
    finally:
        for h in handles:
            h.remove()
    return order


def _observer(quant_max: int) -> Any:
    """A histogram observer of activations (torch.ao's, on float tensors; our min/max one
    when torch.ao is gone)."""
    try:
        with _quiet():
            from torch.ao.quantization.observer import HistogramObserver

            return HistogramObserver(dtype=torch.uint8, quant_min=0, quant_max=quant_max)
    except ImportError:  # pragma: no cover - future PyTorch without torch.ao
        return _MinMax(quant_max)


class _MinMax:
    """Min/max activation observer: scale and zero point covering everything seen."""

    def __init__(self, quant_max: int) -> None:
        self.low, self.high, self.quant_max = 0.0, 0.0, quant_max

    def __call__(self, x: Tensor) -> None:
        self.low = min(self.low, float(x.min()))
        self.high = max(self.high, float(x.max()))

    def calculate_qparams(self) -> tuple[Tensor, Tensor]:
        scale = max((self.high - self.low) / self.quant_max, torch.finfo(torch.float32).eps)
        zero_point = int(min(max(round(-self.low / scale), 0), self.quant_max))
        return torch.tensor([scale]), torch.tensor([zero_point])


def _observe(
    fused: nn.Module, order: list[str], batches: Iterable[Tensor], quant_max: int
) -> dict[str, tuple[float, int]]:
    """Each quantizing layer's output scale and zero point over the calibration images."""
    observed = [n for n in order if isinstance(fused.get_submodule(n), (Quant, _Fused))]
    observers = {n: _observer(quant_max) for n in observed}
    handles = [
        fused.get_submodule(n).register_forward_hook(
            lambda _m, _i, out, n=n: observers[n](out.detach())
        ) for n in observed
    ]
    try:
        with torch.no_grad(), _quiet():
            for images in batches:
                fused(images)
    finally:
        for h in handles:
            h.remove()
    qparams = {}
    for n, observer in observers.items():
        with _quiet():
            scale, zero_point = observer.calculate_qparams()
        qparams[n] = (float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]))
    return qparams


def _weight_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8 values and float32 scales (``max |w| / 127.5``)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    amax = torch.maximum(-flat.min(1).values.clamp(max=0), flat.max(1).values.clamp(min=0))
    scale = (amax / 127.5).clamp(min=torch.finfo(torch.float32).eps)
    inverse = torch.ones_like(scale) / scale
    shape = (-1,) + (1,) * (weight.dim() - 1)
    values = (weight.detach() * inverse.view(shape)).round_().clamp_(-128, 127)
    return values.to(torch.int8), scale


def _convert(
    fused: nn.Module, order: list[str], qparams: Mapping[str, tuple[float, int]], kernel: Kernel
) -> None:
    """Replace, in place, each layer of ``order`` by its int8 layer and link them."""
    for name in order:
        module = fused.get_submodule(name)
        scale, zero_point = qparams.get(name, (1.0, 0))
        new: nn.Module
        if isinstance(module, Quant):
            new = Quantize(scale, zero_point)
        elif isinstance(module, Dequant):
            new = Dequantize()
        elif isinstance(module, nn.MaxPool2d):
            new = Int8MaxPool2d(module)
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            new = Int8AdaptiveAvgPool2d(module)
        else:
            layer = cast(_Fused, module).layer
            values, weight_scale = _weight_int8(cast(Tensor, layer.weight))
            kwargs = dict(relu=cast(_Fused, module).relu, scale=scale, zero_point=zero_point,
                          kernel=kernel)
            if isinstance(layer, nn.Conv2d):
                new = Int8Conv2d(layer, values, weight_scale, **kwargs)  # type: ignore[arg-type]
            elif isinstance(layer, nn.Linear):
                new = Int8Linear(values, weight_scale, layer.bias, **kwargs)  # type: ignore[arg-type]
            else:
                raise TypeError(f"cannot quantize {name!r} ({type(layer).__name__})")
        _set(fused, name, new)
    fused._int8_order = list(order)  # type: ignore[assignment]
    fused.eval()  # the new layers are made in training mode
    _link(fused)
    fused.register_load_state_dict_post_hook(_relink)  # type: ignore[no-untyped-call]


def _relink(model: nn.Module, _keys: Any) -> None:
    """After a state dict is loaded: the layers' input scales come from the new state (a
    module-level function, so that the model pickles)."""
    _link(model)


def _int8_order(model: nn.Module) -> list[str]:
    """The names of an int8 model's layers in the order they run (empty for a float one)."""
    return cast(list[str], vars(model).get("_int8_order", []))


def _link(model: nn.Module) -> None:
    """Give each int8 layer the scale and zero point of the activation before it, and the
    model the scale of what ``forward_features`` returns."""
    previous: tuple[float, int] | None = None
    features = getattr(model, "_features_path", None)
    for name in _int8_order(model):
        layer = cast(_Int8, model.get_submodule(name))
        if previous is not None:
            layer.input_scale, layer.input_zero_point = previous
        if isinstance(layer, _WeightedInt8):
            layer._packed = None
        previous = layer.output_qparams()
        if isinstance(model, QuantizableModel) and name.startswith(f"{features}."):
            model._feature_scale, model._feature_zero_point = previous


def quantize_model(
    model: QuantizableModel,
    calibration: Tensor | Iterable[Any],
    *,
    backend: Backend = "x86",
    batch_size: int = 128,
    kernel: Kernel | None = None,
) -> QuantizableModel:
    """Return an int8 copy of ``model``, calibrated on ``calibration``.

    The copy is fused (BatchNorm folded into the convolutions, ReLU into the layer before
    it), observed on the calibration images (a histogram observer per activation), and
    converted to int8 layers on plain tensors: weights symmetric per output channel,
    activations ``uint8`` with one scale and zero point each. ``model`` is left as it was.
    Calibrate on training images: the test set is for the final figure only.

    Args:
        model: a ``Quantizable*`` model with float weights.
        calibration: images ``(N, C, H, W)``, or an iterable of batches (tensors or
            ``(images, labels)`` pairs).
        backend: the calibration scheme (:data:`BACKENDS`): ``x86`` and ``fbgemm`` keep
            activations in [0, 127], ``onednn`` and ``qnnpack`` in [0, 255].
        batch_size: chunk size when ``calibration`` is one tensor.
        kernel: ``"onednn"`` or ``"reference"`` (float operators); ``None`` picks oneDNN
            where this PyTorch has its int8 operators.

    Returns:
        The quantized model, in eval mode; it takes and returns float tensors.

    Raises:
        TypeError: ``model`` is not quantizable, or holds a layer int8 cannot run.
        ValueError: an unknown backend or kernel, or no calibration batch.

    Example:
        >>> import torch
        >>> from tp3nets.models.quantization import QuantizableConvNet2
        >>> q = quantize_model(QuantizableConvNet2().eval(), torch.rand(16, 1, 28, 28))
        >>> q(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if not isinstance(model, QuantizableModel):
        raise TypeError(
            f"quantize_model expects a Quantizable* model from tp3nets.models.quantization, "
            f"got {type(model).__name__}"
        )
    scheme = _check_backend(backend)
    kernel = check_kernel(kernel)
    batches = list(_batches(calibration, batch_size))
    if not batches:
        raise ValueError("quantize_model got no calibration batch")
    q = copy.deepcopy(model).eval()
    q.fuse_model()
    order = _run_order(q, batches[0][:1])
    quant_max = 127 if scheme in _REDUCED_RANGE else 255
    _convert(q, order, _observe(q, order, batches, quant_max), kernel)
    q.backend = scheme
    return q


def _encode(key: str, value: Any, out: dict[str, Tensor]) -> None:
    if isinstance(value, Tensor) and value.is_quantized:
        out[key] = value.int_repr().contiguous()
        if str(value.qscheme()).rpartition('.')[2] in _PER_CHANNEL:
            out[f"{key}#scale"] = value.q_per_channel_scales().to(torch.float64)
            out[f"{key}#zero_point"] = value.q_per_channel_zero_points().to(torch.int64)
            out[f"{key}#axis"] = torch.tensor(value.q_per_channel_axis())
        else:
            out[f"{key}#scale"] = torch.tensor(value.q_scale(), dtype=torch.float64)
            out[f"{key}#zero_point"] = torch.tensor(value.q_zero_point(), dtype=torch.int64)
    elif isinstance(value, Tensor):
        out[key] = value.detach().contiguous()
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _encode(f"{key}#{i}", item, out)
    elif value is None or isinstance(value, torch.dtype):
        pass  # rebuilt from the model the state is loaded into
    else:
        raise TypeError(f"cannot store state entry {key!r} of type {type(value).__name__}")


def encode_quantized_state(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """A quantized model's state dict as plain tensors, for a safetensors file.

    Example:
        >>> import torch
        >>> from tp3nets.models.quantization import QuantizableConvNet2
        >>> q = quantize_model(QuantizableConvNet2().eval(), torch.rand(8, 1, 28, 28))
        >>> flat = encode_quantized_state(q.state_dict())
        >>> flat["layer1.0.weight"].dtype, flat["layer1.0.weight#scale"].shape
        (torch.int8, torch.Size([8]))
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        _encode(key, value, out)
    return out


def _decode(key: str, like: Any, flat: Mapping[str, Tensor], used: set[str], source: str) -> Any:
    def take(name: str) -> Tensor:
        if name not in flat:
            raise CheckpointError(f"{source} lacks the entry {name!r}; it does not fit this model")
        used.add(name)
        return flat[name]

    if isinstance(like, Tensor) and like.is_quantized:
        values = take(key)
        want = {torch.qint8: torch.int8, torch.quint8: torch.uint8, torch.qint32: torch.int32}
        if values.dtype != want.get(like.dtype) or values.shape != like.shape:
            raise CheckpointError(
                f"{source}: {key!r} holds {values.dtype} {tuple(values.shape)}, expected "
                f"{want.get(like.dtype)} {tuple(like.shape)}"
            )
        scale, zero_point = take(f"{key}#scale"), take(f"{key}#zero_point")
        if str(like.qscheme()).rpartition('.')[2] in _PER_CHANNEL:
            axis = int(take(f"{key}#axis"))
            return torch._make_per_channel_quantized_tensor(values, scale, zero_point, axis)
        return torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero_point))
    if isinstance(like, Tensor):
        value = take(key)
        if value.shape != like.shape or value.dtype != like.dtype:
            raise CheckpointError(
                f"{source}: {key!r} holds {value.dtype} {tuple(value.shape)}, expected "
                f"{like.dtype} {tuple(like.shape)}"
            )
        return value
    if isinstance(like, (tuple, list)):
        return type(like)(_decode(f"{key}#{i}", v, flat, used, source) for i, v in enumerate(like))
    return like


def decode_quantized_state(
    flat: Mapping[str, Tensor], template: Mapping[str, Any], *, source: str = "the weights"
) -> dict[str, Any]:
    """Rebuild a quantized state dict from :func:`encode_quantized_state`'s tensors.

    ``template`` is the state dict of a converted model of the same architecture: it gives
    the structure (quantization schemes, packed parameters, dtypes).

    Raises:
        CheckpointError: an entry is missing, extra, or of another dtype or shape.

    Example:
        >>> import torch
        >>> from tp3nets.models.quantization import QuantizableConvNet2
        >>> q = quantize_model(QuantizableConvNet2().eval(), torch.rand(8, 1, 28, 28))
        >>> flat = encode_quantized_state(q.state_dict())
        >>> state = decode_quantized_state(flat, q.state_dict())
        >>> weight = state["layer1.0.weight"]
        >>> weight.dtype, torch.equal(weight, flat["layer1.0.weight"])
        (torch.int8, True)
    """
    used: set[str] = set()
    state: dict[str, Any] = OrderedDict(
        (k, _decode(k, v, flat, used, source)) for k, v in template.items()
    )
    # The modules' serialization versions: without them the quantized Linear takes the
    # state for its version-1 layout.
    metadata = getattr(template, "_metadata", None)
    if metadata is not None:
        state._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
    extra = sorted(set(flat) - used)
    if extra:
        raise CheckpointError(
            f"{source} has entries this model does not have: {', '.join(extra[:5])}"
            + (" …" if len(extra) > 5 else "")
        )
    return state


# --------------------------------------------------------------------------------------
# The bundled int8 weights and the builders


def quantized_weights(model: str, version: int = 1) -> Weights:
    """The :class:`~tp3nets.Weights` of the bundled int8 file ``version`` of ``model``
    (derived from the fp32 weights of the same version).

    The file name, sha256, size, calibration and accuracy come from the file's record,
    ``tp3nets/weights/records/<model>_mnist_int8_v<version>.json``, which
    ``recipes/quantize.py`` writes.

    Raises:
        CheckpointError: no such int8 file is bundled (its record is missing) or its record
            is broken.

    Example:
        >>> quantized_weights("convnet4", 2).file
        'convnet4_mnist_int8_v2.safetensors'
    """
    from ...weights._defaults import int8_mnist_weights

    return int8_mnist_weights(model, version)


def _build_quantized(
    cls: type[M],
    float_weights: type[WeightsEnum],
    int8_weights: type[WeightsEnum],
    weights: Any,
    quantize: bool,
    backend: Backend | None,
    kwargs: dict[str, Any],
    kernel: Kernel | None = None,
) -> M:
    """The builders' logic, after torchvision's quantized builders.

    ``quantize=False``: a float ``Quantizable*`` model with ``float_weights`` (for your own
    calibration or quantization-aware training). ``quantize=True``: the int8 model, with
    ``int8_weights`` loaded (``None`` gives uncalibrated random int8 weights).
    """
    check_bool(quantize, "quantize", who=f"{cls.__name__}'s builder")
    _refuse_pretrained(cls, kwargs)
    if not quantize:
        if isinstance(weights, int8_weights):
            raise ValueError(
                f"{weights!r} are int8 weights: build with quantize=True, or give "
                f"{float_weights.__name__} members for the float model"
            )
        return _build(cls, float_weights, weights, kwargs)
    member = int8_weights.verify(weights) if not isinstance(weights, float_weights) else None
    if isinstance(weights, float_weights):
        raise ValueError(
            f"quantize=True loads int8 weights: give {int8_weights.__name__} members (or "
            f"their names), got {weights!r}; to quantize float weights yourself, call "
            f"quantize_model on the float model"
        )
    scheme = _check_backend(backend if backend is not None else (
        member.meta.get("backend", "x86") if member is not None else "x86"
    ))
    kernel = check_kernel(kernel)
    model = cls(**kwargs).eval()
    if member is not None:
        categories = member.meta["categories"]
        if model.num_classes != len(categories):
            raise ValueError(
                f"{member!r} has {len(categories)} classes but num_classes="
                f"{model.num_classes} was asked for"
            )
    shape: tuple[int, ...] = tuple(getattr(model, "input_shape", ()))
    if member is None:  # random weights, calibrated on nothing in particular
        return cast(M, quantize_model(
            cast(QuantizableModel, model), torch.zeros(1, *shape), backend=scheme, kernel=kernel
        ))
    # The structure, whose every value the file then overwrites.
    template = cast(QuantizableModel, model)
    template.fuse_model()
    _convert(template, _run_order(template, torch.zeros(1, *shape)), {}, kernel)
    template.backend = scheme
    state = decode_quantized_state(
        member.get_state_dict(), template.state_dict(), source=member.file
    )
    template.load_state_dict(state)
    return cast(M, template)
