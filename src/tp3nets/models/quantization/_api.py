"""Post-training int8 quantization of the tp3nets models, and the int8 weight files.

Eager-mode static quantization of ``torch.ao.quantization`` (see the docs' quantization
page for why not torchao's PT2E flow): each ``Quantizable*`` model fuses its
Conv-BN-ReLU / Linear-ReLU groups, observes calibration images, and converts to the int8
kernels of the ``x86`` backend (fbgemm + oneDNN), which run fast in plain eager PyTorch.

An int8 state dict holds quantized tensors and packed parameters, which safetensors cannot
store. :func:`encode_quantized_state` writes each quantized tensor as its integer values
plus ``#scale``, ``#zero_point`` (and ``#axis`` for per-channel ones) entries;
:func:`decode_quantized_state` rebuilds them against a freshly converted model.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import torch
from torch import Tensor, nn

from ...weights import CheckpointError, Weights, WeightsEnum
from .._registry import _build, _refuse_pretrained
from .._utils import ClassifierModel

__all__ = [
    "BACKENDS",
    "QuantizableModel",
    "decode_quantized_state",
    "encode_quantized_state",
    "quantize_model",
    "quantized_weights",
]

Backend = Literal["x86", "fbgemm", "onednn", "qnnpack"]
#: The quantized engines the builders accept; the bundled files are calibrated for ``x86``.
BACKENDS: Final = ("x86", "fbgemm", "onednn", "qnnpack")
_PER_CHANNEL: Final = (torch.per_channel_affine, torch.per_channel_affine_float_qparams)
M = TypeVar("M", bound=ClassifierModel)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao.quantization's migration notices (the docs say why we stay on it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
        warnings.filterwarnings("ignore", message=".*must run observer before calling.*")
        yield


class QuantizableModel(nn.Module):
    """What :func:`quantize_model` needs: ``fuse_model()`` and the ``quant``/``dequant`` stubs.

    The ``Quantizable*`` classes of :mod:`tp3nets.models.quantization` mix this in ahead of
    their float model, so they keep its attributes, checks and state_dict keys.
    """

    #: Groups of submodule names fused before quantization (Conv-BN-ReLU, Linear-ReLU).
    _fuse_groups: tuple[tuple[str, ...], ...] = ()
    if TYPE_CHECKING:  # set by quantize_model
        backend: str

    def _add_stubs(self) -> None:
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def fuse_model(self) -> None:
        """Fuse the Conv-BN-ReLU and Linear-ReLU groups in place (eval mode only).

        Raises:
            ValueError: the model is in training mode (fusing folds BatchNorm's running
                statistics, which only holds for inference).
        """
        if self.training:
            raise ValueError(
                f"{type(self).__name__}.fuse_model() folds BatchNorm for inference: call "
                f".eval() first"
            )
        from torch.ao.quantization import fuse_modules

        with _quiet():
            fuse_modules(  # type: ignore[no-untyped-call]
                self, [list(g) for g in self._fuse_groups], inplace=True
            )


def _check_backend(backend: object) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"the quantized engine {backend!r} is not built into this PyTorch (supported: "
            f"{', '.join(torch.backends.quantized.supported_engines)})"
        )
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


def quantize_model(
    model: QuantizableModel,
    calibration: Tensor | Iterable[Any],
    *,
    backend: Backend = "x86",
    batch_size: int = 128,
) -> QuantizableModel:
    """Return an int8 copy of ``model``, calibrated on ``calibration``.

    The copy is fused (BatchNorm folded into the convolutions), observed on the calibration
    images with the backend's default qconfig (histogram observers for activations,
    per-channel weights), and converted to quantized modules. ``model`` is left as it was.
    Calibrate on training images: the test set is for the final figure only.

    Args:
        model: a ``Quantizable*`` model with float weights.
        calibration: images ``(N, C, H, W)``, or an iterable of batches (tensors or
            ``(images, labels)`` pairs).
        backend: the quantized engine to calibrate for and run on.
        batch_size: chunk size when ``calibration`` is one tensor.

    Returns:
        The quantized model, in eval mode; it takes and returns float tensors.

    Raises:
        TypeError: ``model`` is not quantizable.
        ValueError: an unknown or unavailable backend.

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
    engine = _check_backend(backend)
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    torch.backends.quantized.engine = engine
    q = copy.deepcopy(model).eval()
    with _quiet():
        q.fuse_model()
        q.qconfig = get_default_qconfig(engine)  # type: ignore[no-untyped-call]
        prepare(q, inplace=True)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            for images in _batches(calibration, batch_size):
                q(images)
        convert(q, inplace=True)  # type: ignore[no-untyped-call]
    q.backend = engine
    return q


def _encode(key: str, value: Any, out: dict[str, Tensor]) -> None:
    if isinstance(value, Tensor) and value.is_quantized:
        out[key] = value.int_repr().contiguous()
        if value.qscheme() in _PER_CHANNEL:
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
        if like.qscheme() in _PER_CHANNEL:
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
        >>> torch.equal(state["layer1.0.weight"].int_repr(), flat["layer1.0.weight"])
        True
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

    The file name, sha256, size, calibration and accuracy come from
    ``tp3nets/weights/_quantized_records.py``, which ``recipes/quantize.py`` writes. Before
    the recipe has run a record is absent: the member then names a file that is not
    shipped, and loading it raises :class:`~tp3nets.CheckpointError`.
    """
    from ...weights._defaults import MNIST_META, mnist_transforms, record_key
    from ...weights._quantized_records import RECORDS

    record = RECORDS.get(record_key(model, version))
    if record is None:
        return Weights(
            file=f"{model}_mnist_int8_v{version}.safetensors",
            sha256="0" * 64,
            transforms=mnist_transforms,
            meta={**MNIST_META, "recipe": "python recipes/quantize.py (not run yet)"},
        )
    meta = {**MNIST_META, **{k: v for k, v in record.items() if k not in ("file", "sha256")}}
    return Weights(
        file=record["file"], sha256=record["sha256"], transforms=mnist_transforms, meta=meta
    )


def _build_quantized(
    cls: type[M],
    float_weights: type[WeightsEnum],
    int8_weights: type[WeightsEnum],
    weights: Any,
    quantize: bool,
    backend: Backend | None,
    kwargs: dict[str, Any],
) -> M:
    """The builders' logic, after torchvision's quantized builders.

    ``quantize=False``: a float ``Quantizable*`` model with ``float_weights`` (for your own
    calibration or quantization-aware training). ``quantize=True``: the int8 model, with
    ``int8_weights`` loaded (``None`` gives uncalibrated random int8 weights).
    """
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize must be a bool, got {quantize!r}")
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
    engine = _check_backend(backend if backend is not None else (
        member.meta.get("backend", "x86") if member is not None else "x86"
    ))
    model = cls(**kwargs).eval()
    if member is not None:
        categories = member.meta["categories"]
        if model.num_classes != len(categories):
            raise ValueError(
                f"{member!r} has {len(categories)} classes but num_classes="
                f"{model.num_classes} was asked for"
            )
    # A template with the right structure; the file then overwrites every value in it.
    shape: tuple[int, ...] = tuple(getattr(model, "input_shape", ()))
    template = quantize_model(
        cast(QuantizableModel, model), torch.zeros(1, *shape), backend=engine
    )
    if member is not None:
        state = decode_quantized_state(
            member.get_state_dict(), template.state_dict(), source=member.file
        )
        template.load_state_dict(state)
    return template  # type: ignore[return-value]
