"""Inference backends: the same model run by eager PyTorch, by PyTorch's oneDNN graph path,
or by ONNX Runtime, each checked against eager PyTorch when it is made.

:func:`optimize` returns an :class:`InferenceModel`, an eval-only module whose ``backend``
says what runs it. :func:`~tp3nets.predict` and :func:`~tp3nets.evaluate` take the same
names through ``backend=``.

Tolerance: a backend is kept only if, on the check inputs (a batch of the example and a
batch of one), its outputs have the eager model's shape, differ from them by at most
``FP32_RTOL × max(1, max abs eager output)`` (for int8 models, whose kernels round
differently in each runtime, ``INT8_RTOL`` times that scale or two steps of the output's
int8 scale, whichever is larger), and give the same argmax wherever eager's two best
classes are more than twice that tolerance apart.

Made once: :func:`optimize` keeps what it made for a model and a backend, and gives it
again while the model's parameters and buffers are unchanged (the same tensors, none
written in place since) and the thread count is the same, so
``predict(model, x, backend="onnxruntime")`` in a loop exports and checks the model once.
A training step, ``load_state_dict`` or ``torch.set_num_threads`` makes the next call build
afresh.

The ``"auto"`` rule: ONNX Runtime when it is installed and the model's ONNX export
succeeds and agrees; else the ``"torch"`` backend when it agrees; else eager. It was chosen
by measuring (``benchmarks/bench_backends.py``): ONNX Runtime was the fastest at batch 1
and at batch 64 on the CPUs measured.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from .._util._modules import state_tensors

__all__ = [
    "BACKENDS",
    "FP32_RTOL",
    "INT8_RTOL",
    "Backend",
    "BackendError",
    "InferenceModel",
    "auto_backend",
    "available_backends",
    "optimize",
]

Backend = Literal["auto", "eager", "torch", "onnxruntime"]
#: The names :func:`optimize`, ``predict(backend=)`` and ``--backend`` accept.
BACKENDS: Final = ("auto", "eager", "torch", "onnxruntime")
#: fp32 tolerance: max abs difference from eager ≤ FP32_RTOL × max(1, max abs eager output).
FP32_RTOL: Final = 1e-4
#: int8 tolerance (a few int8 steps): ONNX Runtime and PyTorch round int8 differently.
INT8_RTOL: Final = 1 / 16
_AUTO_ORDER: Final = ("onnxruntime", "torch")
_INSTALL: Final = "pip install 'tp3nets[onnx]'"
logger = logging.getLogger("tp3nets")


class BackendError(RuntimeError):
    """A backend cannot run the model, or its outputs differ from eager PyTorch."""


class InferenceModel(nn.Module):
    """A model made ready for inference by :func:`optimize`: call it as the model.

    Attributes:
        backend: ``"eager"``, ``"torch"`` or ``"onnxruntime"``.
        reason: why this backend runs the model (and what was tried before it).
        max_abs_diff: the largest difference from eager seen by the check (0 for eager).
        tolerance: the largest difference the check allowed.

    It is for inference only: ``train()`` raises, and the outputs carry no gradient
    (except for the eager backend, which calls the model itself).
    """

    def __init__(self, module: nn.Module, backend: str, reason: str,
                 max_abs_diff: float = 0.0, tolerance: float = 0.0) -> None:
        super().__init__()
        self.module = module
        self.backend = backend
        self.reason = reason
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.training = False

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.module(x)
        return out

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError(
                f"this InferenceModel ({self.backend} backend) is for inference only; train "
                f"the original model, then call tp3nets.deploy.optimize again"
            )
        self.training = False  # the wrapped module was made in eval mode and stays so
        return self

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


# --------------------------------------------------------------------------------------
# what this machine has


def _onnxruntime() -> ModuleType | None:
    """onnxruntime, or ``None`` when it (or onnx/onnxscript, which the export needs) is
    missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    module: ModuleType = onnxruntime
    return module


def available_backends() -> tuple[str, ...]:
    """The backends this machine can run (``"auto"`` aside).

    Example:
        >>> available_backends()[:2]
        ('eager', 'torch')
    """
    return ("eager", "torch") + (("onnxruntime",) if _onnxruntime() is not None else ())


def auto_backend() -> str:
    """The backend ``"auto"`` tries first here (it moves on to the next if the model's
    export fails or disagrees with eager: onnxruntime, then torch, then eager).

    Example:
        >>> auto_backend() in ("onnxruntime", "torch")
        True
    """
    return next(b for b in _AUTO_ORDER if b in available_backends())


# --------------------------------------------------------------------------------------
# checks


def check_backend(backend: Any) -> Backend:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError naming them."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    name: Backend = backend  # type: ignore[assignment]
    return name


def _example(model: nn.Module, example: Tensor | None) -> Tensor:
    """A batch of check inputs: ``example``, else random inputs of ``model.input_shape``."""
    if example is None:
        shape = getattr(model, "input_shape", None)
        if not isinstance(shape, tuple) or not shape:
            raise ValueError(
                f"cannot tell the input shape of {type(model).__name__}: pass example= a "
                f"batch of inputs, which the backend is checked on"
            )
        generator = torch.Generator().manual_seed(0)
        return torch.rand((4, *shape), generator=generator)
    if not isinstance(example, Tensor) or example.dim() < 1 or example.shape[0] < 1:
        raise TypeError(f"example must be a batch of inputs (N, ...), got {example!r:.80}")
    return example.detach().to("cpu", torch.float32).contiguous()


def _check_eval(model: nn.Module) -> None:
    from ._fold import require_eval

    require_eval(model, "optimize", "optimize makes a model for inference")


def _check_cpu(model: nn.Module) -> None:
    devices = {tensor.device.type for _name, tensor in state_tensors(model)}
    if devices - {"cpu"}:
        raise ValueError(
            f"the torch and onnxruntime backends run on the CPU; the model is on "
            f"{', '.join(sorted(devices))}: call model.cpu(), or use backend='eager'"
        )


def _verify(name: str, reference: nn.Module, candidate: nn.Module, example: Tensor,
            rtol: float, atol: float = 0.0) -> tuple[float, float]:
    """(max abs diff, tolerance) of ``candidate`` against ``reference`` on the example and
    on a batch of one; a BackendError if they disagree."""
    worst, tol = 0.0, atol
    with torch.inference_mode():
        for x in (example, example[:1]):
            expected: Tensor = reference(x)
            try:
                got: Tensor = candidate(x)
            except Exception as exc:
                raise BackendError(f"{name} cannot run inputs {tuple(x.shape)}: "
                                   f"{_first_line(exc)}") from exc
            if not isinstance(got, Tensor) or got.shape != expected.shape:
                raise BackendError(f"{name} returns {_shape(got)} for inputs "
                                   f"{tuple(x.shape)}, eager {tuple(expected.shape)}")
            tol = max(tol, rtol * max(1.0, float(expected.abs().max())))
            worst = max(worst, _agree(name, expected.float(), got.float(), tol))
    return worst, tol


def _agree(name: str, expected: Tensor, got: Tensor, tol: float) -> float:
    diff = float((got - expected).abs().max()) if expected.numel() else 0.0
    if not diff <= tol:  # also catches NaN
        raise BackendError(f"{name} differs from eager: max abs diff {diff:.3g} > "
                           f"tolerance {tol:.3g}")
    if expected.dim() == 2 and expected.shape[1] > 1:
        top2 = expected.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * tol  # a closer call may flip within tol
        if not torch.equal(got.argmax(1)[clear], expected.argmax(1)[clear]):
            raise BackendError(f"{name} predicts other classes than eager (max abs diff "
                               f"{diff:.3g})")
    return diff


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # the exporter's colours
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


# --------------------------------------------------------------------------------------
# the torch backend


class _ChannelsLast(nn.Module):
    """``module`` (converted to channels_last) given 4-d inputs in channels_last."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out: Tensor = self.module(x)
        return out


class _Frozen(nn.Module):
    """A frozen TorchScript module, called as a module but kept out of ``modules()``: a
    frozen module has no ``training`` flag for ``model.eval()`` and mode helpers to read."""

    def __init__(self, compiled: Any) -> None:
        super().__init__()
        self.__dict__["compiled"] = compiled  # not registered as a submodule

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.__dict__["compiled"](x)
        return out


def _one_dnn(folded: nn.Module, example: Tensor) -> nn.Module:
    """Traced, frozen (constants folded), then ``optimize_for_inference`` (oneDNN
    convolutions with prepacked weights, fused activations)."""
    jit: Any = torch.jit
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about input checks made constants
        traced = jit.trace(folded, (example,), check_trace=False)
        compiled = jit.optimize_for_inference(jit.freeze(traced.eval()))
    return _Frozen(compiled)


def _torch_candidates(model: nn.Module, example: Tensor
                      ) -> Iterator[tuple[str, Callable[[], nn.Module]]]:
    from ._fold import fold_batchnorm

    folded = fold_batchnorm(model)
    yield "oneDNN graph (BatchNorm folded, traced, frozen, optimize_for_inference)", \
        lambda: _one_dnn(folded, example)
    yield "BatchNorm folded, channels_last", lambda: _ChannelsLast(copy.deepcopy(folded))


def _torch(model: nn.Module, example: Tensor) -> InferenceModel:
    tried: list[str] = []
    for what, build in _torch_candidates(model, example):
        try:
            module = build()
            diff, tol = _verify(f"torch backend ({what})", model, module, example, FP32_RTOL)
        except Exception as exc:
            tried.append(f"{what}: {_first_line(exc)}")
            continue
        reason = f"{what}" + (f" (tried: {'; '.join(tried)})" if tried else "")
        return InferenceModel(module, "torch", reason, diff, tol)
    raise BackendError("the torch backend cannot run the model: " + "; ".join(tried))


# --------------------------------------------------------------------------------------
# the onnxruntime backend


class _OnnxRuntime(nn.Module):
    """An ``onnxruntime.InferenceSession`` on the CPU, called as a module."""

    def __init__(self, onnx_model: bytes, ort: Any) -> None:
        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_model, options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU; got inputs on "
                             f"{x.device}")
        feed = {self.input_name: x.detach().to(torch.float32).contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """No progress lines on stdout (``tp3nets predict --json`` prints JSON there) and no
    INFO records of the ONNX passes while the model is exported."""
    logs = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [log.level for log in logs]
    try:
        for log in logs:
            log.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)


def _onnx_file(model: nn.Module, example: Tensor, atol: float, path: Path) -> bool:
    """Write the model's ONNX file at ``path``; True if it is an int8 model (exported by
    ``export_quantized_onnx``, which refuses float models)."""
    from ..models.quantization import export_quantized_onnx
    from ._export import export_onnx

    with _quiet_exporter():
        try:
            export_quantized_onnx(model, path)
            return True
        except ValueError:  # not an int8 model
            pass
        export_onnx(model, path, example_inputs=example, atol=atol)
    return False


def _int8_output_step(model: nn.Module) -> float:
    """The scale of an int8 model's output (one int8 step of its logits); 0 otherwise."""
    from ..models.quantization._api import _int8_order

    order = _int8_order(model)
    return float(getattr(model.get_submodule(order[-1]), "input_scale", 0.0)) if order else 0.0


def _onnxruntime_model(model: nn.Module, example: Tensor) -> InferenceModel:
    ort = _onnxruntime()
    if ort is None:
        raise ImportError(f"the onnxruntime backend needs onnxruntime, onnx and onnxscript: "
                          f"{_INSTALL}")
    with torch.inference_mode():
        scale = max(1.0, float(model(example).abs().max()))
    with tempfile.TemporaryDirectory(prefix="tp3nets-ort-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            int8 = _onnx_file(model, example, FP32_RTOL * scale, path)
        except Exception as exc:
            raise BackendError(f"ONNX export failed: {_first_line(exc)}") from exc
        module = _OnnxRuntime(path.read_bytes(), ort)
    rtol = INT8_RTOL if int8 else FP32_RTOL
    atol = 2 * _int8_output_step(model) if int8 else 0.0
    diff, tol = _verify("onnxruntime backend", model, module, example, rtol, atol)
    kind = "int8 QDQ export" if int8 else "ONNX export"
    reason = f"onnxruntime {ort.__version__}, {torch.get_num_threads()} thread(s), {kind}"
    return InferenceModel(module, "onnxruntime", reason, diff, tol)


# --------------------------------------------------------------------------------------
# optimize


_BUILDERS: Final[dict[str, Callable[[nn.Module, Tensor], InferenceModel]]] = {
    "torch": _torch,
    "onnxruntime": _onnxruntime_model,
}


def _auto(model: nn.Module, example: Tensor) -> InferenceModel:
    tried: list[str] = []
    for name in _AUTO_ORDER:
        try:
            chosen = _BUILDERS[name](model, example)
        except (BackendError, ImportError) as exc:
            tried.append(f"{name}: {exc}")
            continue
        chosen.reason = f"auto: {chosen.reason}" + (
            f"; tried {' | '.join(tried)}" if tried else "")
        return chosen
    return InferenceModel(model, "eager", "auto: no faster backend agreed with eager; "
                          + " | ".join(tried))


#: What optimize made, per model: backend -> (fingerprint of the model, the result).
_MADE: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple[Any, ...], InferenceModel]]]
_MADE = weakref.WeakKeyDictionary()
_MADE_LOCK = threading.Lock()


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """What must not change for a made backend to stay valid: each parameter's and
    buffer's storage, shape, dtype and in-place write counter, the structure, the threads,
    and which backends can run (what ``"auto"`` chose from)."""
    items: list[Any] = [type(model), torch.get_num_threads(), available_backends()]
    for name, value in state_tensors(model):
        items.append((name, value.data_ptr(), value._version, tuple(value.shape),
                      value.dtype))
    return tuple(items)


def _remembered(model: nn.Module, backend: str) -> InferenceModel | None:
    with _MADE_LOCK:
        entry = _MADE.get(model, {}).get(backend)
    if entry is not None and entry[0] == _fingerprint(model):
        return entry[1]
    return None


def _remember(model: nn.Module, backend: str, made: InferenceModel) -> None:
    if made.module is model:
        return  # eager, made for nothing; kept, it would also keep the model alive
    with _MADE_LOCK:
        _MADE.setdefault(model, {})[backend] = (_fingerprint(model), made)


def optimize(
    model: nn.Module,
    backend: Backend = "auto",
    *,
    example: Tensor | None = None,
) -> InferenceModel:
    """``model`` made ready for fast CPU inference by ``backend``, checked against eager.

    Backends:

    - ``"eager"``: the model itself, unchanged (the reference).
    - ``"torch"``: pure PyTorch: BatchNorm folded (:func:`~tp3nets.deploy.fold_batchnorm`),
      then traced, frozen and given to ``torch.jit.optimize_for_inference`` (oneDNN
      convolutions with prepacked weights); a model that cannot be traced runs folded in
      channels_last instead (``reason`` says which).
    - ``"onnxruntime"``: the model's ONNX export (:func:`~tp3nets.deploy.export_onnx`, or
      ``export_quantized_onnx`` for the int8 models) in an ``onnxruntime.InferenceSession``
      with ``torch.get_num_threads()`` threads, any batch size.
    - ``"auto"``: onnxruntime if installed and it agrees, else torch, else eager.

    Every backend but eager is checked when made, on ``example`` and on a batch of one: see
    the module's tolerance. The choice is logged at INFO on the ``tp3nets`` logger when it
    is made. What
    is made is kept for the model until its weights or the thread count change (see the
    module's "Made once"): a second call returns the same :class:`InferenceModel`.

    Args:
        model: a module in eval mode, on the CPU, taking one tensor and returning one.
        backend: one of :data:`BACKENDS`.
        example: a batch of inputs to check on; default random inputs of the model's
            ``input_shape``.

    Returns:
        An eval-only :class:`InferenceModel`; its ``backend`` says what runs it.

    Raises:
        ValueError: an unknown backend, a model in training mode or off the CPU, no
            ``example`` for a model without ``input_shape``.
        BackendError: the named backend cannot run the model or disagrees with eager (the
            message gives the difference); ``"auto"`` falls back instead.
        ImportError: ``backend="onnxruntime"`` without onnxruntime (``pip install
            'tp3nets[onnx]'``).

    Example:
        >>> import tp3nets
        >>> fast = optimize(tp3nets.convnet2(weights="DEFAULT").eval(), "torch")
        >>> fast.backend, fast(torch.rand(5, 1, 28, 28)).shape
        ('torch', torch.Size([5, 10]))
    """
    backend = check_backend(backend)
    if isinstance(model, InferenceModel):
        if backend not in ("auto", model.backend):
            raise ValueError(f"the model already runs on the {model.backend} backend; "
                             f"optimize the original model for {backend!r}")
        return model
    _check_eval(model)
    if backend == "eager":
        return InferenceModel(model, "eager", "asked for")
    # What was made for this model's very tensors (on the CPU, or it would not have been
    # made) is given again without walking them twice.
    made = _remembered(model, backend)
    if made is not None:
        return made
    _check_cpu(model)
    checked = _example(model, example)
    chosen = _auto(model, checked) if backend == "auto" else _BUILDERS[backend](model, checked)
    logger.info("%s runs on the %s backend: %s", type(model).__name__, chosen.backend,
                chosen.reason)
    _remember(model, backend, chosen)
    return chosen
