"""Export a model to ONNX or TorchScript, and check the file against eager PyTorch.

Each export runs the written file on test batches (including one of another batch size)
and compares its outputs with the eager model's; a difference above ``atol`` raises
:class:`ExportError`, so a file that leaves these functions computes what the model does.
"""

from __future__ import annotations

import copy
import errno
import importlib.util
import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from .._io._atomic import atomic_path, write_new_file
from .._util._checks import check_int, check_positive

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "export_onnx",
    "export_torchscript",
    "onnx_runtime",
    "verify_onnx",
    "verify_torchscript",
]

#: The formats ``tp3nets export --format`` accepts (see :func:`export_onnx` and
#: :func:`export_torchscript`).
EXPORT_FORMATS: Final = ("onnx", "torchscript")
DEFAULT_ATOL: Final = 1e-4
OnnxRuntime = Literal["auto", "onnxruntime", "reference"]
_OPSET_LOGGERS: Final = ("torch.onnx._internal.exporter._compat", "onnxscript.version_converter")


class ExportError(RuntimeError):
    """The export failed, or the exported model's outputs differ from eager PyTorch."""


def _prepare(model: nn.Module, example_inputs: Tensor | None) -> tuple[nn.Module, Tensor]:
    """A float32 CPU copy of ``model`` in eval mode (the caller's model is left alone)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module to export, got {type(model).__name__}")
    bare = copy.deepcopy(model).to("cpu").float().eval()
    if example_inputs is None:
        shape = getattr(model, "input_shape", None)
        if not isinstance(shape, tuple) or not shape:
            raise ValueError(
                f"cannot tell the input shape of {type(model).__name__}; pass example_inputs="
                "a batch of inputs"
            )
        generator = torch.Generator().manual_seed(0)
        example_inputs = torch.rand((2, *shape), generator=generator)
    if not isinstance(example_inputs, Tensor) or example_inputs.dim() < 1:
        raise TypeError(
            f"example_inputs must be a batched tensor, got {type(example_inputs).__name__}"
        )
    if example_inputs.shape[0] < 2:
        # Batch size 1 would be baked in as a constant by torch.export.
        example_inputs = example_inputs.expand(2, *example_inputs.shape[1:])
    return bare, example_inputs.detach().to("cpu", torch.float32).contiguous()


def _check_inputs(example: Tensor, dynamic_batch: bool) -> list[Tensor]:
    """The example, and (for a dynamic batch) a batch of 3 random inputs of its shape."""
    inputs = [example]
    if dynamic_batch:
        generator = torch.Generator().manual_seed(1)
        inputs.append(torch.rand((3, *example.shape[1:]), generator=generator))
    return inputs


def _compare(
    what: str, model: nn.Module, run: Callable[[Tensor], Tensor], inputs: list[Tensor],
    atol: float,
) -> float:
    worst = 0.0
    with torch.inference_mode():
        for x in inputs:
            expected: Tensor = model(x)
            try:
                got = run(x)
            except Exception as exc:  # the runtime's own error (a fixed batch size …)
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
                raise ExportError(
                    f"{what} cannot run inputs of shape {tuple(x.shape)}: {first} (a file "
                    f"exported with dynamic_batch=False takes its own batch size only: "
                    f"check it with dynamic_batch=False and that batch)"
                ) from None
            if tuple(got.shape) != tuple(expected.shape):
                raise ExportError(
                    f"{what} returns shape {tuple(got.shape)} for inputs {tuple(x.shape)}, "
                    f"eager PyTorch {tuple(expected.shape)}"
                )
            diff = float((got.float() - expected.float()).abs().max())
            if not diff <= atol:  # also catches NaN
                raise ExportError(
                    f"{what} differs from eager PyTorch: max abs diff {diff:.3g} > atol "
                    f"{atol:g} on inputs of shape {tuple(x.shape)}"
                )
            worst = max(worst, diff)
    return worst


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (a full disk …) behind an exporter's exception, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_failed(exc: OSError, target: Path) -> ExportError:
    """One clear error for a failed write; the file at ``target`` (if any) is intact."""
    text = exc.strerror or str(exc)
    if not text.startswith("cannot write"):
        why = "No space left on device" if exc.errno == errno.ENOSPC else text
        kept = "the previous file there is kept" if target.exists() else "nothing was written"
        text = f"cannot write {str(target)!r}: {why}; {kept}"
    return ExportError(f"export failed: {text}")


def _shown(exc: ExportError, tmp: Path, target: Path) -> ExportError:
    """``exc`` naming the target rather than the temporary file that was checked."""
    return ExportError(str(exc).replace(str(tmp), str(target)))


def _check_atol(atol: float, who: str) -> float:
    return check_positive(atol, "atol", who=who, allow_zero=True, finite=False)


def _target(path: str | os.PathLike[str]) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"export target {str(target)!r} is a directory; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():  # mkdir would raise a bare FileExistsError
                raise NotADirectoryError(
                    f"cannot write {str(target)!r}: {str(parent)!r} is a file, not a folder"
                )
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _check_opset(opset_version: int | None) -> int | None:
    """``None`` or an opset the installed onnx package knows."""
    if opset_version is None:
        return None
    import onnx.defs

    highest = int(onnx.defs.onnx_opset_version())
    return check_int(
        opset_version, "opset_version", who="export_onnx", maximum=highest,
        what=f"an int from 1 to {highest} (the newest opset of the installed onnx)",
    )


def _written_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# --------------------------------------------------------------------------------------
# ONNX


def onnx_runtime() -> Literal["onnxruntime", "reference"]:
    """The runtime :func:`verify_onnx` uses by default: onnxruntime if installed, else onnx's
    own reference evaluator (pure Python, slower, same checks).

    Example:
        >>> onnx_runtime() in ("onnxruntime", "reference")
        True
    """
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "reference"


def _onnx_runner(path: Path, runtime: OnnxRuntime) -> Callable[[Tensor], Tensor]:
    chosen = onnx_runtime() if runtime == "auto" else runtime
    if chosen == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_ort(x: Tensor) -> Tensor:
            out = session.run(None, {name: x.numpy()})[0]
            return torch.from_numpy(out)

        return run_ort
    if chosen != "reference":
        raise ValueError(f"runtime must be 'auto', 'onnxruntime' or 'reference', got {runtime!r}")
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    ref_name = evaluator.input_names[0]

    def run_reference(x: Tensor) -> Tensor:
        outs: Any = evaluator.run(None, {ref_name: x.numpy()})
        return torch.as_tensor(outs[0])

    return run_reference


def verify_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    example_inputs: Tensor | None = None,
    *,
    atol: float = DEFAULT_ATOL,
    dynamic_batch: bool = True,
    runtime: OnnxRuntime = "auto",
) -> float:
    """Check an ONNX file with ``onnx.checker`` and run it against ``model``.

    Args:
        path: the ``.onnx`` file.
        model: the eager model it was exported from.
        example_inputs: a batch of inputs; default random inputs of ``model.input_shape``.
        atol: the largest absolute difference of outputs allowed.
        dynamic_batch: also run a batch of another size.
        runtime: ``"onnxruntime"``, ``"reference"`` (onnx's pure-Python evaluator), or
            ``"auto"`` (:func:`onnx_runtime`).

    Returns:
        The largest absolute difference seen.

    Raises:
        ExportError: the file is not valid ONNX, cannot run the inputs (a file exported
            with ``dynamic_batch=False`` takes its own batch size only), or its outputs
            differ by more than ``atol``.
    """
    import onnx

    atol = _check_atol(atol, "verify_onnx")
    bare, example = _prepare(model, example_inputs)
    file = Path(path)
    try:
        onnx.checker.check_model(str(file), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, protobuf's DecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{str(file)!r} is not a valid ONNX model: {first}") from None
    run = _onnx_runner(file, runtime)
    return _compare(f"the ONNX file {str(file)!r}", bare, run, _check_inputs(example,
                    dynamic_batch), atol)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    example_inputs: Tensor | None = None,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
    atol: float = DEFAULT_ATOL,
    verify: bool = True,
) -> Path:
    """Write ``model`` as one self-contained ONNX file and check it against eager PyTorch.

    The model is exported in eval mode from a CPU float32 copy with ``torch.onnx.export``
    (the ``torch.export``-based exporter), its input named ``input`` and its output
    ``logits``; the batch dimension is dynamic unless ``dynamic_batch=False``. Needs
    ``onnx`` and ``onnxscript`` (``pip install 'tp3nets[onnx]'``); the check runs the file
    with onnxruntime when it is installed, else with onnx's reference evaluator.

    Args:
        model: the model (left unchanged).
        path: the ``.onnx`` file to write; missing parent folders are created.
        example_inputs: a batch of inputs to trace with; default random inputs of
            ``model.input_shape``.
        dynamic_batch: let the file take any batch size.
        opset_version: the ONNX opset; default the exporter's.
        atol: the largest absolute difference of outputs allowed by the check.
        verify: run the check (see :func:`verify_onnx`).

    Returns:
        The path written.

    Raises:
        ExportError: the exporter failed, or the file's outputs differ from the model's
            (the file is then removed).
        ImportError: onnx or onnxscript is not installed.
        ValueError: an ``opset_version`` that onnx does not know, or one the exporter cannot
            convert the model to (no file is left behind).

    Example:
        >>> import tempfile
        >>> from tp3nets import convnet2
        >>> with tempfile.TemporaryDirectory() as d:
        ...     export_onnx(convnet2(), f"{d}/convnet2.onnx").name
        'convnet2.onnx'
    """
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'tp3nets[onnx]'"
        )
    atol = _check_atol(atol, "export_onnx")
    opset_version = _check_opset(opset_version)
    bare, example = _prepare(model, example_inputs)
    target = _target(path)
    try:
        # Written beside the target, checked, then renamed over it: a failed export or
        # check, a full disk or a kill never leaves a partial file nor harms an earlier
        # export at the same path.
        with atomic_path(target) as tmp:
            _write_onnx(model, bare, example, tmp, target, dynamic_batch, opset_version)
            if verify:
                try:
                    verify_onnx(tmp, bare, example, atol=atol, dynamic_batch=dynamic_batch)
                except ExportError as exc:
                    raise _shown(exc, tmp, target) from None
    except OSError as exc:
        raise _write_failed(exc, target) from None
    return target


def _write_onnx(
    model: nn.Module, bare: nn.Module, example: Tensor, tmp: Path, target: Path,
    dynamic_batch: bool, opset_version: int | None,
) -> None:
    dynamic: Any = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    # An opset below the exporter's own is converted on a best-effort basis: torch logs a
    # warning, onnxscript logs a failed conversion with a traceback and keeps the newer
    # opset. The opset written is checked below and reported as one clear error instead.
    logs = [logging.getLogger(n) for n in _OPSET_LOGGERS]
    levels = [log.level for log in logs]
    try:
        for log in logs:
            log.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                bare,
                (example,),
                str(tmp),
                dynamo=True,
                external_data=False,
                input_names=["input"],
                output_names=["logits"],
                opset_version=opset_version,
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except Exception as exc:
        os_error = _os_error(exc)
        if os_error is not None:
            raise os_error from None  # a full disk: reported by the caller, file intact
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {first}") from exc
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)
    if opset_version is not None:
        written = _written_opset(tmp)
        if written != opset_version:
            raise ValueError(
                f"the ONNX exporter cannot write {type(model).__name__} in opset "
                f"{opset_version}: it produced opset {written} and could not convert it down; "
                f"ask for a newer opset, or leave the opset to the exporter"
            )


# --------------------------------------------------------------------------------------
# TorchScript


def verify_torchscript(
    path: str | os.PathLike[str],
    model: nn.Module,
    example_inputs: Tensor | None = None,
    *,
    atol: float = DEFAULT_ATOL,
    dynamic_batch: bool = True,
) -> float:
    """Load a TorchScript file with ``torch.jit.load`` and run it against ``model``.

    Returns:
        The largest absolute difference seen.

    Raises:
        ExportError: the file does not load, or its outputs differ by more than ``atol``.
    """
    atol = _check_atol(atol, "verify_torchscript")
    bare, example = _prepare(model, example_inputs)
    file = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            jit_load: Any = torch.jit.load
            loaded = jit_load(str(file), map_location="cpu")
    except Exception as exc:
        raise ExportError(f"{str(file)!r} is not a loadable TorchScript file: {exc}") from None
    loaded.eval()

    def run(x: Tensor) -> Tensor:
        out: Tensor = loaded(x)
        return out

    return _compare(f"the TorchScript file {str(file)!r}", bare, run,
                    _check_inputs(example, dynamic_batch), atol)


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    example_inputs: Tensor | None = None,
    method: Literal["script", "trace"] = "script",
    atol: float = DEFAULT_ATOL,
    verify: bool = True,
) -> Path:
    """Write ``model`` as a TorchScript file and check it against eager PyTorch.

    ``method="script"`` (the default) compiles the model's code, input checks included, so
    the file takes any batch size and rejects wrongly shaped inputs as the model does;
    ``"trace"`` records the operations run on ``example_inputs``. The file loads with
    ``torch.jit.load`` in Python or C++ (libtorch), without tp3nets.

    Args:
        model: the model (left unchanged).
        path: the file to write (``.pt`` by convention); missing parent folders are created.
        example_inputs: a batch of inputs; default random inputs of ``model.input_shape``.
        method: ``"script"`` or ``"trace"``.
        atol: the largest absolute difference of outputs allowed by the check.
        verify: run the check (see :func:`verify_torchscript`).

    Returns:
        The path written.

    Raises:
        ExportError: compiling failed, or the file's outputs differ from the model's (the
            file is then removed).

    Example:
        >>> import tempfile
        >>> from tp3nets import convnet2
        >>> with tempfile.TemporaryDirectory() as d:
        ...     export_torchscript(convnet2(), f"{d}/convnet2.pt").name
        'convnet2.pt'
    """
    if method not in ("script", "trace"):
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    atol = _check_atol(atol, "export_torchscript")
    bare, example = _prepare(model, example_inputs)
    target = _target(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            if method == "script":
                compiled: Any = torch.jit.script(bare)
            else:
                # The input checks become constants of the trace: expected, not a problem.
                tracer_warning: type[Warning] = getattr(torch.jit, "TracerWarning", Warning)
                warnings.simplefilter("ignore", tracer_warning)
                jit_trace: Any = torch.jit.trace
                with torch.no_grad():
                    compiled = jit_trace(bare, (example,))
            # Into memory, then written by Python: torch's own file writer aborts the
            # process on a full disk (c10::Error in a destructor).
            buffer = io.BytesIO()
            torch.jit.save(compiled, buffer)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "; try method='trace'" if method == "script" else ""
        raise ExportError(
            f"TorchScript export ({method}) of {type(model).__name__} failed: {first}{hint}"
        ) from exc
    try:
        with atomic_path(target) as tmp:
            write_new_file(tmp, buffer.getbuffer())
            if verify:
                try:
                    verify_torchscript(tmp, bare, example, atol=atol, dynamic_batch=True)
                except ExportError as exc:
                    raise _shown(exc, tmp, target) from None
    except OSError as exc:
        raise _write_failed(exc, target) from None
    return target
