"""fit, evaluate, predict: a generic, fast, reproducible training engine for any nn.Module."""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import numbers
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

import torch
import torch.optim.optimizer as _optim_module
from torch import Tensor, nn

from . import _distributed as dist_utils
from ._checks import int_at_least, int_seed
from ._malloc import reuse_freed_memory
from .callbacks import Callback
from .callbacks import monitor_mode as monitor_mode_of
from .checkpoint import (
    _bare,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)

__all__ = [
    "FitState",
    "History",
    "Metric",
    "Precision",
    "accuracy",
    "default_unpack",
    "evaluate",
    "fit",
    "predict",
    "reuse_freed_memory",
    "seed_everything",
    "train_one_epoch",
]

#: Numeric precision of fit/evaluate/predict: float32, bfloat16 autocast, or float16
#: autocast with a gradient scaler (CUDA only).
Precision = Literal["32", "bf16", "16"]
_PRECISIONS: Final = ("32", "bf16", "16")
# On an accelerator, reading the loss back forces a synchronisation; a NaN loss is looked
# for every this many batches (and at the end of the epoch) instead of after each one.
_NONFINITE_CHECK_EVERY: Final = 32
#: The columns that fit adds to every history row beside the figures.
_ROW_KEYS: Final = ("epoch", "lr", "time")


def _cheap_readback(device: torch.device) -> bool:
    """Whether reading a tensor's value back costs no synchronisation (on the CPU).

    Where it does (accelerators), losses and counts stay tensors during a pass and are
    read together, and the NaN check reads every :data:`_NONFINITE_CHECK_EVERY` batches.
    Tests run that path on the CPU by replacing this function.
    """
    return device.type == "cpu"


_profiler_enabled: Callable[[], bool] = getattr(
    torch.autograd, "_profiler_enabled", lambda: True  # unknown: assume a profiler listens
)


@runtime_checkable
class Metric(Protocol):
    """A stateful metric in torchmetrics' shape: ``update(preds, target)`` and ``compute()``.

    :func:`fit` and :func:`evaluate` call ``reset()`` before each pass when the object has
    one (and otherwise work on a fresh copy of it each pass), ``update`` for each batch and
    ``compute`` after the pass. Under ``torchrun`` the object reduces its own state across
    processes (torchmetrics does); plain callables are reduced by tp3nets.

    Example:
        >>> class Seen:
        ...     def update(self, preds, target): self.n = getattr(self, "n", 0) + len(target)
        ...     def compute(self): return self.n
        >>> isinstance(Seen(), Metric)
        True
    """

    def update(self, preds: Tensor, target: Tensor) -> Any: ...

    def compute(self) -> Any: ...


MetricLike = Metric | Callable[[Tensor, Tensor], Tensor | float]


def accuracy(
    preds: Tensor, target: Tensor, *, loss_fn: Callable[..., Tensor] | None = None
) -> Tensor:
    """Top-1 accuracy of ``preds`` against ``target``, read the way ``loss_fn`` reads them.

    * Logits ``(N, C, ...)`` with class indices ``(N, ...)``: the argmax is the answer.
      With :class:`~torch.nn.CrossEntropyLoss` or :class:`~torch.nn.NLLLoss`, targets equal
      to their ``ignore_index`` are not counted.
    * Logits with class probabilities or one-hot targets of their own shape, under one of
      those two losses: the argmax of each is compared.
    * :class:`~torch.nn.BCEWithLogitsLoss`: a logit above 0 answers 1;
      :class:`~torch.nn.BCELoss`: a probability above 0.5 does; targets above 0.5 are 1.
    * Otherwise, predictions of the target's shape are rounded (binary probabilities).

    :func:`fit` and :func:`evaluate` pass their own ``loss_fn``, so ``metrics={"acc":
    accuracy}`` (the default) follows the loss being trained.

    Example:
        >>> import torch
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
        >>> accuracy(torch.tensor([-2.0, 3.0]), torch.tensor([0.0, 1.0]),
        ...          loss_fn=torch.nn.BCEWithLogitsLoss())
        tensor(1.)
    """
    hits, total = _correct(preds, target, loss_fn)
    return hits.float() / (total.clamp(min=1) if isinstance(total, Tensor) else max(total, 1))


def _correct(
    preds: Tensor, target: Tensor, loss_fn: Callable[..., Tensor] | None = None
) -> tuple[Tensor, Tensor | int]:
    """``(right answers, answers counted)``, as an int64 scalar and an int (or int64 scalar
    where targets can be ignored): exact to sum across batches."""
    if not isinstance(preds, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"accuracy needs tensors, got predictions {type(preds).__name__} and targets "
            f"{type(target).__name__}; pass metrics={{...}} suited to this model's output"
        )
    classes = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
    if isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)) and preds.shape == target.shape:
        cut = 0.0 if isinstance(loss_fn, nn.BCEWithLogitsLoss) else 0.5
        hits = (preds > cut) == (target > 0.5)
        return hits.sum(), hits.numel()
    if classes and target.is_floating_point() and preds.shape == target.shape and (
        preds.dim() >= 2
    ):
        hits = preds.argmax(dim=1) == target.argmax(dim=1)
        return hits.sum(), hits.numel()
    predicted = preds.argmax(dim=1) if preds.dim() == target.dim() + 1 else preds.round()
    if predicted.shape != target.shape:
        raise ValueError(
            f"accuracy needs logits (N, C, ...) with targets (N, ...), or predictions with "
            f"the targets' shape; got predictions {tuple(preds.shape)} and targets "
            f"{tuple(target.shape)}"
        )
    hits = predicted == target
    if classes and not target.is_floating_point():
        counted = target != getattr(loss_fn, "ignore_index", -100)
        return (hits & counted).sum(), counted.sum()
    return hits.sum(), hits.numel()


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy (if present) and torch on every device.

    With the same seed, two :func:`fit` runs on the CPU give bitwise identical weights and
    history. ``deterministic=True`` also makes torch pick deterministic kernels (and raise
    where none exists), which CUDA needs for bitwise repeatability.

    Example:
        >>> import torch
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """
    seed = int_seed(seed)
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must lie in [-2**63, 2**64), got {seed}")
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class History:
    """Per-epoch figures of a :func:`fit` run, Keras-style keys (``loss``, ``val_acc`` …).

    Each row holds ``epoch``, the training figures (``loss``, ``acc``), the validation ones
    (``val_loss``, ``val_acc``) when there is a validation loader, ``lr`` and ``time``
    (seconds). ``monitor`` and ``mode`` decide :attr:`best_epoch`. ``history[key]`` is one
    figure's series; iterating a history gives its rows.

    Example:
        >>> h = History(monitor="val_loss")
        >>> h.append({"epoch": 1, "loss": 0.5, "val_loss": 0.4})
        >>> h.append({"epoch": 2, "loss": 0.3, "val_loss": 0.45})
        >>> h.best_epoch, h["loss"], h.best["val_loss"]
        (1, [0.5, 0.3], 0.4)
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"

    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's figures."""
        self.epochs.append(dict(row))

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, float]]:
        """The epochs' rows, first to last (``history[key]`` gives one figure's series)."""
        return iter(self.epochs)

    def __getitem__(self, key: str) -> list[float]:
        """The series of one figure over the epochs (``nan`` where it is missing)."""
        if not any(key in row for row in self.epochs):
            raise KeyError(f"no figure {key!r} in history; have {', '.join(self.keys())}")
        return [row.get(key, math.nan) for row in self.epochs]

    def keys(self) -> list[str]:
        """Every figure name that appears, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.epochs:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def best_epoch(self) -> int | None:
        """The epoch (1-based) with the best ``monitor`` figure, or ``None`` without one."""
        best = self.best
        return None if best is None else int(best["epoch"])

    @property
    def best(self) -> dict[str, float] | None:
        """The row of the best epoch (the first one on a tie), or ``None`` without one."""
        rows = [r for r in self.epochs if self.monitor in r and not math.isnan(r[self.monitor])]
        if not rows:
            return None
        pick = min if self.mode == "min" else max
        return dict(pick(rows, key=lambda r: r[self.monitor]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: ``{"monitor", "mode", "best_epoch", "epochs": [...]}``."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_epoch": self.best_epoch,
            "epochs": [dict(r) for r in self.epochs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history saved with :meth:`to_dict`."""
        return cls(
            epochs=[dict(r) for r in data.get("epochs", [])],
            monitor=str(data.get("monitor", "val_loss")),
            mode="max" if data.get("mode") == "max" else "min",
        )

    def plot(self, keys: Sequence[str] | None = None, *, ax: Any = None) -> Any:
        """Plot figures against the epoch with matplotlib (``pip install tp3nets[plot]``).

        Args:
            keys: figures to draw; default every loss and accuracy.
            ax: an existing matplotlib Axes.

        Returns:
            The matplotlib Axes.

        Raises:
            ImportError: matplotlib is not installed.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                "History.plot needs matplotlib: pip install 'tp3nets[plot]'"
            ) from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(self.epochs)]
        names = list(keys) if keys is not None else [
            k for k in self.keys() if k.endswith("loss") or k.endswith("acc")
        ]
        for name in names:
            ax.plot(epochs, self[name], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


@dataclass
class FitState:
    """What callbacks see and may change during :func:`fit`.

    ``model`` is the bare module (never the DDP or ``torch.compile`` wrapper). ``logs``
    holds ``{"batch", "loss"}`` in ``on_batch_end`` and the epoch's history row in
    ``on_epoch_end``. Set ``stop_training = True`` to end the run after the current epoch.
    ``in_epoch`` is true from ``on_epoch_start`` until the epoch's row is in the history;
    a full checkpoint can only be taken outside that span (from ``on_epoch_end``,
    ``on_fit_start`` or ``on_fit_end``), where resuming from it is exact.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: History
    epoch: int = 0
    batch: int = 0
    logs: dict[str, float] = field(default_factory=dict)
    stop_training: bool = False
    is_main: bool = True
    scaler: Any = None
    callbacks: Sequence[Any] = ()
    in_epoch: bool = False

    def checkpoint(self) -> dict[str, Any]:
        """A full checkpoint of the run so far: model, optimizer, scheduler, gradient
        scaler, epoch, history, callback states and RNG states.

        Raises:
            RuntimeError: called during an epoch (``on_epoch_start``, ``on_batch_end``),
                whose unfinished training a resumed run could not continue.
        """
        if self.in_epoch:
            raise RuntimeError(
                f"a full checkpoint can only be taken between epochs (on_epoch_end, "
                f"on_fit_start, on_fit_end): epoch {self.epoch} is under way and a resumed "
                f"run could not continue it; for a snapshot of the weights alone use "
                f"torch.save(state.model.state_dict(), path)"
            )
        return make_checkpoint(
            self.model, self.optimizer, self.scheduler, self.scaler, self.epoch, self.history,
            callbacks=self.callbacks, stop_training=self.stop_training,
        )

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`checkpoint` atomically to ``path`` (on the main process only)."""
        target = Path(path)
        if self.is_main:
            save_checkpoint(self.checkpoint(), target)
        return target


# --------------------------------------------------------------------------------------
# batches and devices


def _resolve_device(device: torch.device | str | None, model: nn.Module) -> torch.device:
    """The device to run on: ``device``, or by default where the model is, with one CUDA
    device per process under torchrun (``cuda:LOCAL_RANK``) where the node has enough."""
    launched = dist_utils.launched()
    if device is None:
        if launched and torch.cuda.is_available():
            if dist_utils.gpus_for_every_process():
                return torch.device("cuda", dist_utils.local_rank())
            if dist_utils.local_rank() == 0:
                warnings.warn(
                    f"torchrun started {dist_utils.local_world_size()} processes on this "
                    f"node, which has {torch.cuda.device_count()} CUDA device(s): not enough "
                    f"for one each, so they run where the model is; pass device='cpu' to "
                    f"say so, or start at most {torch.cuda.device_count()} processes a node",
                    UserWarning, stacklevel=3,
                )
        first = next(model.parameters(), None)
        if first is not None and first.device.type != "meta":
            return first.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available here")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and (mps is None or not mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available here")
    if dev.type == "cuda" and dev.index is None:
        if launched and not dist_utils.is_distributed():
            # torchrun's convention: process LOCAL_RANK drives CUDA device LOCAL_RANK.
            if not dist_utils.gpus_for_every_process():
                raise ValueError(
                    f"device {str(device)!r} under torchrun needs one CUDA device per "
                    f"process, but {dist_utils.local_world_size()} processes share "
                    f"{torch.cuda.device_count()} on this node; start fewer processes or "
                    f"pass device='cpu'"
                )
            return torch.device("cuda", dist_utils.local_rank())
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(obj, Tensor):
        if not channels_last and obj.device == device:
            return obj
        # Asynchronous copies from pinned host memory; a pageable copy would be synchronous
        # anyway, and non_blocking on it only adds a staging copy.
        non_blocking = obj.device.type == "cpu" and device.type != "cpu" and obj.is_pinned()
        out = obj.to(device, non_blocking=non_blocking)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, channels_last) for v in obj)
    return obj


def default_unpack(batch: Any) -> tuple[Any, Any]:
    """Split a batch into ``(inputs, target)``: ``(x, y, ...)`` sequences or dicts.

    Dicts are read by the first pair of keys found among ``("input", "target")``,
    ``("x", "y")``, ``("image", "label")`` and ``("inputs", "labels")``.

    Example:
        >>> default_unpack({"image": 1, "label": 2})
        (1, 2)
    """
    if isinstance(batch, Mapping):
        for xk, yk in (("input", "target"), ("x", "y"), ("image", "label"), ("inputs", "labels")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise ValueError(
            f"cannot find inputs and targets in a batch with keys {sorted(batch)}; pass "
            "unpack=lambda b: (inputs, target)"
        )
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(
        f"expected batches of (inputs, target), got {type(batch).__name__}; pass "
        "unpack=lambda b: (inputs, target)"
    )


def _batch_size(x: Any) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, Mapping) and x:
        return _batch_size(next(iter(x.values())))
    if isinstance(x, (list, tuple)) and x:
        return _batch_size(x[0])
    raise ValueError(f"cannot tell the batch size of {type(x).__name__}")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _check_precision(precision: Any, device: torch.device) -> str:
    value = str(precision)
    if value not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if value == "16" and device.type != "cuda":
        raise ValueError(
            f"precision='16' (float16 with a gradient scaler) needs a CUDA device, got "
            f"{device.type!r}; use precision='bf16' on the CPU"
        )
    return value


def _check_loader(loader: Any, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of batches, got {type(loader).__name__}")
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return
    if n == 0:
        raise ValueError(f"{name} is empty (0 batches); check the dataset and batch_size")


def _classes(logits: Any) -> int | None:
    return int(logits.shape[1]) if isinstance(logits, Tensor) and logits.dim() >= 2 else None


def _label_error(y: Any, classes: int | None, loss_fn: Callable[..., Tensor]) -> str | None:
    """Why class labels ``y`` cannot index ``classes`` outputs, or ``None`` if they can."""
    if classes is None or not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return None
    if not isinstance(y, Tensor) or y.is_floating_point() or y.numel() == 0:
        return None
    ignore = getattr(loss_fn, "ignore_index", -100)
    valid = y[y != ignore]
    if valid.numel() == 0:
        return None
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or high >= classes:
        return (
            f"labels must be class indices in [0, {classes}) for a model with {classes} "
            f"outputs, got labels from {low} to {high}"
        )
    return None


class _LabelGuard:
    """Checks class labels where a bad one would be fatal rather than explained.

    On the CPU the loss raises on a label out of range (and :func:`_compute_loss` explains
    it), so only the first batch is checked. On an accelerator it is a device-side assert
    that kills the process: labels are checked on the first batch, and afterwards while
    they are still on the host (cheap, and the host is waiting for the device anyway).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], device: torch.device) -> None:
        self.loss_fn = loss_fn
        self.active = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
        self.on_host = device.type != "cpu"
        self.classes: int | None = None
        self.checked_first = False

    def before_transfer(self, y: Any) -> None:
        if self.active and self.on_host and self.classes is not None and isinstance(
            y, Tensor
        ) and y.device.type == "cpu":
            self._raise(_label_error(y, self.classes, self.loss_fn))

    def after_forward(self, y: Any, out: Any) -> None:
        if self.active and not self.checked_first:
            self.checked_first = True
            self.classes = _classes(out)
            self._raise(_label_error(y, self.classes, self.loss_fn))

    @staticmethod
    def _raise(message: str | None) -> None:
        if message is not None:
            raise ValueError(message)


def _device_batches(
    batches: Iterable[Any],
    unpack: Callable[[Any], tuple[Any, Any]],
    guard: _LabelGuard,
    device: torch.device,
    channels_last: bool,
) -> Iterator[tuple[int, Any, Any, int]]:
    """``(index, inputs, target, size)`` on ``device`` for each non-empty batch.

    The index counts every batch of the loader, so windows based on ``len(loader)`` stay
    right; an empty batch counts for nothing (its mean loss would be NaN) and is skipped.
    Labels are checked on the host before the transfer.
    """
    for i, batch in enumerate(batches):
        x, y = unpack(batch)
        n = _batch_size(x)
        if n == 0:
            continue
        guard.before_transfer(y)
        yield i, _to_device(x, device, channels_last), _to_device(y, device), n


def _compute_loss(loss_fn: Callable[..., Tensor], out: Any, y: Any) -> Tensor:
    try:
        loss = loss_fn(out, y)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        labels = _label_error(y, _classes(out), loss_fn)
        if labels is not None:
            raise ValueError(labels) from None
        oshape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        yshape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        ydtype = f" {str(y.dtype).removeprefix('torch.')}" if isinstance(y, Tensor) else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{type(loss_fn).__name__} cannot take model output {oshape} with target "
            f"{yshape}{ydtype}: {first}{_target_hint(loss_fn, out, y)}"
        ) from exc
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(
            "loss_fn must return a scalar tensor (use reduction='mean'), got "
            + (f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__)
        )
    return loss


def _target_hint(loss_fn: Callable[..., Tensor], out: Any, y: Any) -> str:
    """Our own advice for the commonest mistakes (torch's wording varies between versions):
    class-index targets of a classification loss given as floats, and models that return
    several outputs."""
    if isinstance(out, (tuple, list, Mapping)):
        return (
            f"; the model returns a {type(out).__name__}: pass a loss_fn that takes it, or "
            "wrap the model to return the logits alone"
        )
    if (isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and isinstance(out, Tensor)
            and isinstance(y, Tensor) and y.is_floating_point() and out.dim() == y.dim() + 1):
        return "; class indices must be integers (int64): pass target.long()"
    return ""


def _nonfinite(value: float | str, where: str) -> FloatingPointError:
    return FloatingPointError(
        f"the training loss became {value} {where}; lower the learning rate, clip the "
        "gradients (grad_clip_norm=...), try precision='32', or check the data for NaN/inf"
    )


def _floats(values: Sequence[Tensor | float]) -> list[float]:
    """Python floats of per-batch scalars, with one device synchronisation for all."""
    if values and all(isinstance(v, Tensor) for v in values):
        with contextlib.suppress(RuntimeError):
            stacked = torch.stack([v.reshape(()) for v in values])  # type: ignore[union-attr]
            out: list[float] = stacked.double().cpu().tolist()
            return out
    return [float(v) for v in values]


class _Meter:
    """Per-batch loss and metric values, weighted by batch size when computed.

    The epoch figure is ``fsum(value_i * n_i) / sum(n_i)`` over every batch of every
    process: ``math.fsum`` rounds the exact sum once, so the result does not depend on how
    the batches were spread over processes. Accuracy is summed as integer counts of right
    answers.

    Accuracy is counted on groups of batches rather than batch by batch: the detached
    outputs and targets wait in a list (at most :attr:`GROUP_BATCHES` batches and
    :attr:`GROUP_ELEMENTS` output elements) and are counted together, three tensor
    operations per group instead of per batch; the counts are the same integers either
    way. Nothing is read back from an accelerator during the pass; on the CPU, where
    reading costs nothing, the loss is kept as the Python float the NaN check already read.
    """

    GROUP_BATCHES = 64
    GROUP_ELEMENTS = 1 << 20

    def __init__(self, metrics: Mapping[str, MetricLike], device: torch.device,
                 loss_fn: Callable[..., Tensor] | None = None) -> None:
        self.on_cpu = _cheap_readback(device)
        self.loss_fn = loss_fn  # how accuracy reads the predictions
        self.stateful = {
            k: m if callable(getattr(m, "reset", None)) else copy.deepcopy(m)
            for k, m in metrics.items() if isinstance(m, Metric)
        }
        self.plain = {k: m for k, m in metrics.items() if not isinstance(m, Metric)}
        self.counts = [k for k, m in self.plain.items() if m is accuracy]
        self.others = {k: m for k, m in self.plain.items() if m is not accuracy}
        self.losses: list[Tensor | float] = []
        self.sizes: list[int] = []
        self.values: dict[str, list[Tensor | float]] = {k: [] for k in self.plain}
        self.answers: dict[str, list[Tensor | int]] = {k: [] for k in self.counts}
        self.group: list[tuple[Tensor, Tensor]] = []
        self.group_elements = 0
        self.group_shapes: tuple[torch.Size, torch.Size] | None = None
        for m in self.stateful.values():
            reset = getattr(m, "reset", None)
            if callable(reset):
                reset()

    def update(self, loss: Tensor, out: Any, y: Any, n: int,
               loss_value: float | None = None) -> None:
        """Record one batch. ``loss_value``: ``loss.item()`` when the caller has it."""
        self.sizes.append(n)
        if self.on_cpu:
            self.losses.append(loss_value if loss_value is not None else loss.item())
        else:
            self.losses.append(loss.detach())
        if not self.plain and not self.stateful:
            return
        preds = out.detach() if isinstance(out, Tensor) else out
        if self.counts:
            if isinstance(preds, Tensor) and isinstance(y, Tensor):
                self._group(preds, y)
            else:  # not tensors: accuracy() raises its own clear error here
                self._count(preds, y)
        if not self.others and not self.stateful:
            return
        if isinstance(preds, Tensor) and preds.is_floating_point():
            preds = preds.float()  # bf16/fp16 logits under autocast
        for name, fn in self.others.items():
            value = fn(preds, y)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item() if self.on_cpu else value.detach()
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                got = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor)
                       else type(value).__name__)
                raise TypeError(
                    f"metric {name!r} must return the batch's figure as a number or a "
                    f"one-element tensor, got {got}"
                )
            self.values[name].append(value)
        for m in self.stateful.values():
            m.update(preds, y)

    def nonfinite_since(self, start: int) -> bool:
        """Whether a loss recorded since the ``start``-th batch is NaN or infinite.

        On an accelerator, one stack and one read for all of them: no work per batch.
        """
        return not all(math.isfinite(v) for v in _floats(self.losses[start:]))

    def _group(self, preds: Tensor, y: Tensor) -> None:
        # Batches join a group only with the same shapes beyond the batch dimension, so
        # that they concatenate (segmentation maps of several sizes start new groups).
        # Outputs and targets of one pass share their device and dtypes.
        shapes = (preds.shape[1:], y.shape[1:])
        if shapes != self.group_shapes:
            self._flush()
            self.group_shapes = shapes
        self.group.append((preds, y))
        self.group_elements += preds.numel()
        if len(self.group) >= self.GROUP_BATCHES or self.group_elements >= self.GROUP_ELEMENTS:
            self._flush()

    def _flush(self) -> None:
        if not self.group:
            return
        if len(self.group) == 1:
            preds, y = self.group[0]
        else:
            preds = torch.cat([p for p, _ in self.group])
            y = torch.cat([t for _, t in self.group])
        self.group, self.group_elements = [], 0
        self._count(preds, y)

    def _count(self, preds: Any, y: Any) -> None:
        hits, answers = _correct(preds, y, self.loss_fn)
        value: Tensor | int = int(hits) if self.on_cpu else hits.detach()
        if isinstance(answers, Tensor) and self.on_cpu:
            answers = int(answers)
        for name in self.counts:
            self.values[name].append(value)
            self.answers[name].append(answers)

    def compute(self, prefix: str = "") -> tuple[dict[str, float], int]:
        """``({prefix + name: figure}, samples)`` over every process."""
        self._flush()
        terms: dict[str, list[float]] = {
            "loss": [v * n for v, n in zip(_floats(self.losses), self.sizes, strict=True)]
        }
        for name, values in self.values.items():
            floats = _floats(values)
            terms[name] = floats if name in self.counts else [
                v * n for v, n in zip(floats, self.sizes, strict=True)
            ]
        count = sum(self.sizes)
        answers = {k: math.fsum(_floats(v)) for k, v in self.answers.items()}
        if dist_utils.is_distributed():
            gathered = dist_utils.all_gather_object((count, answers, terms))
            count = sum(c for c, _, _ in gathered)
            answers = {k: sum(a[k] for _, a, _ in gathered) for k in answers}
            terms = {k: [x for _, _, t in gathered for x in t[k]] for k in terms}
        out = {
            prefix + k: math.fsum(v) / max(answers.get(k, count), 1) for k, v in terms.items()
        }
        for name, m in self.stateful.items():
            value = m.compute()
            out[prefix + name] = float(value.item() if isinstance(value, Tensor) else value)
        return out, count


def _default_metrics(metrics: Mapping[str, MetricLike] | None) -> dict[str, MetricLike]:
    if metrics is None:
        return {"acc": accuracy}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping name -> metric, got {type(metrics).__name__}"
        )
    for name, m in metrics.items():
        if not (isinstance(m, Metric) or callable(m)):
            raise TypeError(
                f"metric {name!r} must be callable(preds, target) or have update and compute,"
                f" got {type(m).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
        if name == "loss":
            raise ValueError("'loss' is always reported; give the metric another name")
        if name in _ROW_KEYS or name.startswith("val_"):
            raise ValueError(
                f"metric name {name!r} is taken: every history row has "
                f"{', '.join(repr(k) for k in _ROW_KEYS)} and 'val_' + each figure; give the "
                f"metric another name"
            )
    return dict(metrics)


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval mode, then restore every submodule's own previous mode.

    Training keeps the modes of a model already in train mode as they are, so that a part
    the user put in eval mode (a frozen backbone's BatchNorm) stays so; a model in eval
    mode is switched to train mode whole.
    """
    before = [(m, m.training) for m in model.modules()]
    # The user's model decides, not a DDP/DataParallel wrapper (in train mode when built).
    if not (training and _bare(model).training):
        model.train(training)
    try:
        yield
    finally:
        for m, was in before:
            m.training = was


def _progress_bar(
    iterable: Iterable[Any], total: int | None, desc: str, enabled: bool
) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    bar: Iterable[Any] = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return bar


def _len_or_none(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


# --------------------------------------------------------------------------------------
# one epoch


def _zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``, for the cost of the assignments.

    torch's method wraps its loop in a profiler range, which costs a small model's step
    about 2 % (6 µs of the logistic regression's 0.3 ms); where the optimizer keeps the
    base method and no profiler is running, the same assignments are done directly.
    """
    if (
        type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad
        or "zero_grad" in vars(optimizer)
        or _profiler_enabled()
    ):
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def _profile_wrapper_code() -> Any:
    """The code object of torch's ``Optimizer.step`` wrapper, or None if it cannot be had."""
    try:
        return torch.optim.Optimizer.profile_hook_step(lambda *a, **k: None).__code__
    except Exception:  # another torch: the plain step is always right
        return None


_STEP_WRAPPER_CODE: Final = _profile_wrapper_code()


def _step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, without torch's profiler range where nothing can observe it.

    torch wraps every optimizer class's ``step`` in a function that opens a profiler range
    and runs the step hooks; the range costs the logistic regression's training step about
    30 µs of 300 (measured inside an epoch on 2 cores). Where that wrapper is exactly
    torch's, no step hook is registered, no profiler is running and the instance's
    ``step`` is not replaced (an LR scheduler's tracking wrapper aside), the wrapped step
    is called directly; it is the same function, so the update is bitwise the same.
    Anything else takes the ordinary ``optimizer.step()``.
    """
    wrapper = type(optimizer).step
    own = vars(optimizer).get("step")
    body = getattr(wrapper, "__wrapped__", None)
    if (
        body is None
        or getattr(wrapper, "__code__", None) is not _STEP_WRAPPER_CODE
        or (own is not None and not getattr(own, "_wrapped_by_lr_sched", False))
        or getattr(optimizer, "_optimizer_step_pre_hooks", True)
        or getattr(optimizer, "_optimizer_step_post_hooks", True)
        or getattr(_optim_module, "_global_optimizer_pre_hooks", True)
        or getattr(_optim_module, "_global_optimizer_post_hooks", True)
        or _profiler_enabled()
    ):
        optimizer.step()
        return
    if own is not None:  # what the LR scheduler's wrapper records
        optimizer._opt_called = True  # type: ignore[attr-defined]
    body(optimizer)
    optimizer._optimizer_step_code()


def _needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure that recomputes the loss (LBFGS)."""
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):  # no signature to read: assume step() needs nothing
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    grad_clip_norm: float | None,
    scheduler: Any,
) -> None:
    if grad_clip_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        _step(optimizer)
    _zero_grad(optimizer)
    if scheduler is not None:
        scheduler.step()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision = "32",
    scaler: Any = None,
    grad_clip_norm: float | None = None,
    accumulate_grad_batches: int = 1,
    scheduler: Any = None,
    channels_last: bool = False,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    on_batch_end: Callable[[int, float], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader`` that updates the weights; for users who keep their own loop.

    The model must already be on ``device`` (default: where its parameters are). Gradients
    of ``accumulate_grad_batches`` batches are summed before each optimizer step, each
    batch's loss divided by the real size of its window, so a short last window is not
    under-weighted. ``scheduler``, if given, is stepped after every optimizer step
    (per-step schedules such as OneCycleLR). With ``precision="16"`` pass the
    :class:`torch.amp.GradScaler` that should carry its scale across epochs (one is made
    otherwise). Loader, device, distribution: see :func:`fit`.

    Returns:
        The epoch's batch-size-weighted ``loss`` and metrics (default ``acc``).

    An optimizer whose ``step()`` needs a closure (:class:`~torch.optim.LBFGS`) is given one
    that recomputes the batch's loss and gradients; the batch's figures are those of its
    first evaluation.

    Raises:
        TypeError: ``optimizer`` is not an Optimizer instance; ``scheduler`` has no
            ``step()``.
        ValueError: an optimizer built for another model, a scheduler of another optimizer,
            a ``grad_clip_norm`` that is not a positive number, a closure optimizer with
            ``accumulate_grad_batches > 1`` or fp16, an empty loader, labels outside the
            model's classes, a target the loss cannot take.
        FloatingPointError: the loss became NaN or infinite.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression
        >>> from tp3nets.data import TensorLoader
        >>> model = MultinomialLogisticRegression()
        >>> data = (torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sorted(train_one_epoch(model, TensorLoader(data, 8), optimizer=opt))
        ['acc', 'loss']
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__} (fit "
            f"also takes a callable params -> Optimizer; here it would be rebuilt each epoch)"
        )
    _check_optimizer(optimizer, model)
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    _check_scheduler(scheduler, optimizer)
    _check_grad_clip_norm(grad_clip_norm)
    dev = _resolve_device(device, model)
    prec = _check_precision(precision, dev)
    if prec == "16" and scaler is None:
        scaler = torch.amp.GradScaler("cuda")
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    meter = _Meter(_default_metrics(metrics), dev, loss_fn)
    total = _len_or_none(loader)
    accumulate = int_at_least(accumulate_grad_batches, "accumulate_grad_batches")
    on_cpu = _cheap_readback(dev)
    closure_step = _needs_closure(optimizer)
    if closure_step and (accumulate > 1 or scaler is not None):
        raise ValueError(
            f"{type(optimizer).__name__} evaluates the loss itself, through a closure, once "
            f"or more a step: it takes accumulate_grad_batches=1 and precision '32' or "
            f"'bf16' (no gradient scaler)"
        )
    checked = 0  # accelerator only: the batches whose losses are known to be finite
    window = accumulate
    pending = 0  # batches whose gradients wait for an optimizer step
    i = -1
    guard = _LabelGuard(loss_fn, dev)
    # Made once: the per-batch Python work is what a small model's epoch is made of.
    no_sync = getattr(model, "no_sync", None) if accumulate > 1 else None
    no_context = contextlib.nullcontext()
    autocast = _autocast(dev, prec)

    def forward(x: Any, y: Any, i: int) -> tuple[Tensor, Any, float | None]:
        """The batch's output and loss; on the CPU, the loss's value, checked finite."""
        with autocast:
            out = model(x)
            guard.after_forward(y, out)
            loss = _compute_loss(loss_fn, out, y)
        value: float | None = None
        if on_cpu:
            value = loss.item()
            if not math.isfinite(value):
                raise _nonfinite(value, f"at batch {i + 1}")
        return loss, out, value

    def step_with_closure(x: Any, y: Any, i: int) -> tuple[Tensor, Any, float | None]:
        """One step of an optimizer that evaluates the loss itself (LBFGS): the batch's
        figures are those of the closure's first evaluation, at the weights before it."""
        first: list[tuple[Tensor, Any, float | None]] = []

        def closure() -> Tensor:
            _zero_grad(optimizer)
            result = forward(x, y, i)
            result[0].backward()  # type: ignore[no-untyped-call]
            if grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            if not first:
                first.append(result)
            return result[0]

        optimizer.step(closure)  # type: ignore[arg-type]  # torch types it as returning float
        _zero_grad(optimizer)
        if scheduler is not None:
            scheduler.step()
        return first[0]

    _zero_grad(optimizer)
    with _mode(model, True):
        batches = _progress_bar(loader, total, desc, progress)
        for i, x, y, n in _device_batches(batches, unpack, guard, dev, channels_last):
            if closure_step:
                loss, out, value = step_with_closure(x, y, i)
                step_now = False  # the optimizer has stepped
            else:
                if pending == 0:
                    window = accumulate if total is None else min(accumulate, total - i)
                pending += 1
                step_now = pending >= window
                sync = no_sync() if no_sync is not None and not step_now else no_context
                with sync:
                    loss, out, value = forward(x, y, i)
                    scaled = loss / window if window > 1 else loss
                    if scaler is not None:
                        scaled = scaler.scale(scaled)
                    scaled.backward()  # type: ignore[no-untyped-call]
            meter.update(loss, out, y, n, value)
            if not on_cpu and (i + 1) % _NONFINITE_CHECK_EVERY == 0:
                # The losses the meter keeps anyway, read once every so many batches:
                # no kernel launch per batch. Raised before this batch's step.
                if meter.nonfinite_since(checked):
                    raise _nonfinite("nan or inf", f"at or before batch {i + 1}")
                checked = len(meter.losses)
            if step_now:
                _optimizer_step(model, optimizer, scaler, grad_clip_norm, scheduler)
                pending = 0
            if on_batch_end is not None:
                on_batch_end(i, value if value is not None else float(loss.detach()))
        if pending:
            # An iterable without len() ended inside a window whose size could not be known
            # in advance: rescale the summed gradients to the real window, then step.
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(window / pending)
            _optimizer_step(model, optimizer, scaler, grad_clip_norm, scheduler)
    if not on_cpu and meter.nonfinite_since(checked):
        raise _nonfinite("nan or inf", "during the epoch")
    figures, count = meter.compute()
    if i < 0 or count == 0:
        raise ValueError("the training loader yielded no batch")
    return figures


# --------------------------------------------------------------------------------------
# evaluate and predict


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision = "32",
    channels_last: bool = False,
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    progress: bool = False,
) -> dict[str, float]:
    """Loss and metrics of ``model`` over ``loader``, in eval mode, under inference mode.

    Figures are weighted by batch size, so a short last batch counts for what it holds.
    Under ``torchrun`` (the process group is started from the environment if needed) each
    process evaluates whole batches of its own (no sample twice, no padding) and the
    results are summed over processes: every process gets the figures a single process
    would. Every submodule's train/eval mode is restored afterwards.

    Returns:
        ``{"loss": …, "acc": …}`` (or the names of ``metrics``).

    Raises:
        ValueError: an empty loader, labels outside the model's classes, a target the
            loss cannot take.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression
        >>> from tp3nets.data import TensorLoader
        >>> data = (torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)))
        >>> sorted(evaluate(MultinomialLogisticRegression(), TensorLoader(data, 8)))
        ['acc', 'loss']
    """
    _check_loader(loader, "loader")
    dev = _resolve_device(device, model)
    dist_utils.init_from_env(dev)
    prec = _check_precision(precision, dev)
    model.to(dev)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    meter = _Meter(_default_metrics(metrics), dev, loss_fn)
    if dist_utils.is_distributed():
        loader = dist_utils.shard_loader(loader, train=False)
    guard = _LabelGuard(loss_fn, dev)
    with _mode(model, False), torch.inference_mode():
        batches = _progress_bar(loader, _len_or_none(loader), "eval", progress)
        for _, x, y, n in _device_batches(batches, unpack, guard, dev, channels_last):
            with _autocast(dev, prec):
                out = model(x)
                guard.after_forward(y, out)
                loss = _compute_loss(loss_fn, out, y)
            meter.update(loss.float(), out, y, n)
    figures, count = meter.compute()
    if count == 0:
        raise ValueError("the loader yielded no batch to evaluate")
    return figures


def predict(
    model: nn.Module,
    data: Tensor | Iterable[Any],
    *,
    device: torch.device | str | None = None,
    batch_size: int = 512,
    precision: Precision = "32",
    unpack: Callable[[Any], tuple[Any, Any]] | None = None,
) -> Tensor:
    """Model outputs (logits) for a tensor of inputs or for every batch of a loader, on CPU.

    A loader may yield bare inputs, ``(inputs, target, …)`` batches or dicts read by
    :func:`default_unpack` (the target is ignored; a dict without one needs ``unpack=``).
    Runs in eval and inference mode; every submodule's mode is restored afterwards. Under
    ``torchrun`` each process predicts what it is given.

    Args:
        model: any module returning a tensor whose first dimension is the batch.
        data: inputs ``(N, ...)``, cut into batches of ``batch_size``, or a loader.
        device: default the model's device.
        batch_size: for a tensor ``data``.
        precision: ``"32"``, ``"bf16"`` or ``"16"``, as for :func:`fit`.
        unpack: splits a batch into ``(inputs, target)``, as for :func:`fit` (the same
            function serves both; the target may be ``None``).

    Returns:
        The outputs of every batch, concatenated along the first dimension, as float32.

    Raises:
        ValueError: no batch; an output whose first dimension is not the batch's (unbatched
            samples, such as a list of single images or ``DataLoader(batch_size=None)``).
        TypeError: the model returns something other than a tensor.

    Example:
        >>> import torch
        >>> from tp3nets import ConvNet2
        >>> predict(ConvNet2(), torch.rand(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """
    dev = _resolve_device(device, model)
    prec = _check_precision(precision, dev)
    batch_size = int_at_least(batch_size, "batch_size")
    model.to(dev)
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ValueError(f"predict needs a non-empty batch, got shape {tuple(data.shape)}")
        batches: Iterable[Any] = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    else:
        _check_loader(data, "data")
        batches = data
    outs: list[Tensor] = []
    with _mode(model, False), torch.inference_mode():
        for batch in batches:
            if unpack is not None:
                parts = unpack(batch)
                if not isinstance(parts, (list, tuple)) or len(parts) != 2:
                    raise TypeError(
                        f"unpack must return (inputs, target) as for fit (the target may be "
                        f"None), got {type(parts).__name__}"
                    )
                x = parts[0]
            elif isinstance(batch, (list, tuple)):
                x = batch[0]
            elif isinstance(batch, Mapping):
                x = default_unpack(batch)[0]
            else:
                x = batch
            with _autocast(dev, prec):
                out = model(_to_device(x, dev))
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"predict needs a model that returns a tensor, got {type(out).__name__}; "
                    f"wrap the model to return the outputs to collect"
                )
            n = _batch_size(x)
            if out.dim() == 0 or out.shape[0] != n:
                raise ValueError(
                    f"the model's output {tuple(out.shape)} does not start with the batch's "
                    f"size {n}: predict needs batches (N, ...); a list of single samples or a "
                    f"DataLoader with batch_size=None gives unbatched inputs"
                )
            outs.append(out.float().cpu())
    if not outs:
        raise ValueError("predict got no batch")
    return torch.cat(outs)


# --------------------------------------------------------------------------------------
# fit


def _fused_optimizer(
    cls: type[torch.optim.Optimizer], params: Iterable[Any], **kwargs: Any
) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kwargs)``, or the plain ``cls`` where torch has no fused
    implementation for it, these parameters' device or this torch version.

    A fused step updates each tensor in one pass instead of a dozen: on the CPU, Adam over
    ConvNet2's 790k parameters takes 0.25 ms instead of 2.9 ms.
    """
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)  # type: ignore[call-arg]
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kwargs)


def _check_optimizer(optimizer: Any, model: nn.Module) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(model.parameters())
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer or a callable params -> Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    foreign = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in own]
    if foreign:
        raise ValueError(
            f"the optimizer holds {len(foreign)} parameter tensor(s) that are not the model's: "
            "it was built for another model (build it on model.parameters())"
        )
    return optimizer


def _check_grad_clip_norm(grad_clip_norm: Any) -> None:
    if grad_clip_norm is None:
        return
    number = isinstance(grad_clip_norm, numbers.Real) or (
        isinstance(grad_clip_norm, Tensor) and grad_clip_norm.numel() == 1
    )
    if isinstance(grad_clip_norm, bool) or not number or not (
        0 < float(grad_clip_norm) < math.inf
    ):
        raise ValueError(f"grad_clip_norm must be a positive number, got {grad_clip_norm!r}")


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    if scheduler is None:
        return None
    if not hasattr(scheduler, "step") and callable(scheduler):
        scheduler = scheduler(optimizer)  # a factory: optimizer -> scheduler
    if not hasattr(scheduler, "step"):
        raise TypeError(
            "scheduler must have a step() method (or be a callable optimizer -> scheduler), "
            f"got {type(scheduler).__name__}"
        )
    owner = getattr(scheduler, "optimizer", optimizer)
    if owner is not optimizer:
        raise ValueError(
            "the scheduler was built for another optimizer than the one given (build it on "
            "the optimizer passed to fit, or pass scheduler=lambda opt: ...)"
        )
    return scheduler


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for k, v in state.items():
            # 0-dim "step" counters stay where the optimizer keeps them (on the CPU unless
            # capturable/fused).
            if isinstance(v, Tensor) and v.dim() > 0 and v.device != device:
                state[k] = v.to(device)


_HOOKS: Final = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end",
                  "on_fit_end")


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a list, or a clear error for one callback given alone."""
    if any(hasattr(callbacks, hook) for hook in _HOOKS) or isinstance(
        callbacks, (str, bytes)
    ) or not isinstance(callbacks, Iterable):
        raise TypeError(
            f"callbacks must be a list of callbacks, got {type(callbacks).__name__}; write "
            f"callbacks=[...] even for one"
        )
    return list(callbacks)


def _call(callbacks: Sequence[Callback], hook: str, state: FitState,
          before_last: Callable[[], None] | None = None) -> None:
    # Callbacks that write checkpoints (runs_last = True) come after the others, so that a
    # checkpoint holds the others' state at the end of the epoch; ``before_last`` runs
    # between the two groups.
    first = [cb for cb in callbacks if not getattr(cb, "runs_last", False)]
    last = [cb for cb in callbacks if getattr(cb, "runs_last", False)]
    for group in (first, last):
        if group is last and before_last is not None:
            before_last()
        for cb in group:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(state)


def _compile(module: nn.Module, options: bool | Mapping[str, Any]) -> nn.Module:
    kwargs = dict(options) if isinstance(options, Mapping) else {}
    compiled: nn.Module = torch.compile(module, **kwargs)  # type: ignore[assignment]
    return compiled


def _summary_line(row: Mapping[str, float], epochs: int) -> str:
    shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "time", "lr"))
    return (
        f"epoch {int(row['epoch'])}/{epochs}  {shown}  lr {row['lr']:.3g}  ({row['time']:.1f}s)"
    )


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
    loss_fn: Callable[..., Tensor] | None = None,
    val_loader: Iterable[Any] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    scheduler_interval: Literal["epoch", "step"] = "epoch",
    precision: Precision = "32",
    grad_clip_norm: float | None = None,
    accumulate_grad_batches: int = 1,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    channels_last: bool = False,
    compile: bool | Mapping[str, Any] = False,
    resume_from: str | os.PathLike[str] | None = None,
    monitor: str | None = None,
    monitor_mode: Literal["auto", "min", "max"] = "auto",
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
) -> History:
    """Train ``model`` for ``epochs`` epochs; validate after each one if ``val_loader`` is set.

    Works for any :class:`~torch.nn.Module`, loss, optimizer, device and batch structure.
    The model (and any optimizer state) is moved to ``device`` once, before training.

    Under ``torchrun`` (the process group is started from the environment if needed: gloo
    on the CPU, nccl on GPUs) the model is wrapped in DistributedDataParallel and the batch
    size of the loader stays the *global* batch: each of the W processes trains on 1/W of
    every batch (a :class:`~tp3nets.data.TensorLoader` is split batch by batch, a
    :class:`~torch.utils.data.DataLoader` gets a
    :class:`~torch.utils.data.distributed.DistributedSampler` and ``batch_size / W``), so
    a distributed run takes the same steps as a single process with the same settings
    (exactly so when the batch size and the dataset size are multiples of W and the
    model has no BatchNorm, whose statistics each process takes from its part). Figures are
    reduced over processes as sums and counts; only rank 0 prints and writes files.

    Args:
        model: any module; tp3nets models or your own.
        train_loader: batches of ``(inputs, target)`` (a :class:`~tp3nets.data.TensorLoader`,
            a :class:`~torch.utils.data.DataLoader`, any iterable); dict batches are read
            by :func:`default_unpack`.
        epochs: the total number of epochs (a resumed run continues up to it).
        optimizer: an optimizer over ``model.parameters()``, or a callable building one.
            One whose ``step()`` needs a closure (:class:`~torch.optim.LBFGS`) is given one
            that recomputes the batch's loss (with ``accumulate_grad_batches=1``, no fp16).
        loss_fn: default :class:`~torch.nn.CrossEntropyLoss`.
        val_loader: validation batches, evaluated after each epoch.
        metrics: name → metric object (``update``/``compute``, see :class:`Metric`) or
            callable(preds, target) returning the batch's mean; default
            ``{"acc": accuracy}``; ``{}`` tracks the loss only.
        device: default the model's device (CUDA when the model has no parameters yet and
            CUDA is there; the local rank's GPU under torchrun).
        scheduler: a learning-rate scheduler of ``optimizer``, or a callable
            ``optimizer -> scheduler``; ReduceLROnPlateau gets the monitored figure.
        scheduler_interval: step the scheduler per ``"epoch"`` or per optimizer ``"step"``.
        precision: ``"32"``, ``"bf16"`` (autocast, CPU and CUDA) or ``"16"`` (float16 with
            a gradient scaler, CUDA only).
        grad_clip_norm: clip the gradients' global norm to this value.
        accumulate_grad_batches: batches whose gradients are summed per optimizer step.
        callbacks: objects with any of ``on_fit_start``, ``on_epoch_start``,
            ``on_batch_end``, ``on_epoch_end``, ``on_fit_end``, each taking a
            :class:`FitState`; setting ``state.stop_training`` ends the run after the
            current epoch.
        progress: ``True`` a tqdm bar per epoch plus a summary line, ``False`` silence,
            ``None`` (default) the bar on an interactive terminal and otherwise only the
            one-line summary per epoch.
        channels_last: run 4-D inputs and the model in channels-last memory format.
        compile: run the model through :func:`torch.compile` (``True``, or a dict of its
            keyword arguments); checkpoints keep the plain module's keys.
        resume_from: a checkpoint written by :class:`~tp3nets.callbacks.ModelCheckpoint`
            or :meth:`FitState.save_checkpoint`; training continues after its epoch, with
            its weights, optimizer, scheduler, scaler, history, callback and RNG states
            (a run that a callback had stopped stays stopped), and ends with the weights an
            uninterrupted run would have.
        monitor: the figure for the history's best epoch and ReduceLROnPlateau; default
            ``"val_loss"`` with a validation loader, else ``"loss"``.
        monitor_mode: whether a ``"min"`` or ``"max"`` figure is best; ``"auto"`` decides
            from its name as the callbacks do (:func:`~tp3nets.callbacks.monitor_mode`).
        unpack: splits a batch into ``(inputs, target)``.

    Returns:
        The :class:`History`.

    Raises:
        ValueError: zero or negative epochs, an empty loader, a one-shot iterator for
            several epochs, fp16 on a CPU, an optimizer or scheduler built for another
            model, a ``monitor`` the run does not log, a metric named like a history
            column (``epoch``, ``lr``, ``time``, ``val_*``), labels outside the model's
            classes, a target the loss cannot take.
        TypeError: ``callbacks`` not a list (one callback given alone), a metric that is
            not callable or returns no number.
        CheckpointError: ``resume_from`` holds another model's checkpoint, or was saved
            with another optimizer or scheduler class, or without the scheduler given.
        FloatingPointError: the loss became NaN or infinite.

    Example:
        >>> import torch
        >>> from tp3nets import MultinomialLogisticRegression, fit
        >>> from tp3nets.data import TensorLoader
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(64, 1, 28, 28); y = (x.mean((1, 2, 3)) > 0.5).long()
        >>> model = MultinomialLogisticRegression()
        >>> history = fit(model, TensorLoader((x, y), 16, shuffle=True), epochs=2,
        ...               optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
        >>> len(history), sorted(history.keys())
        (2, ['acc', 'epoch', 'loss', 'lr', 'time'])
    """
    epochs = int_at_least(epochs, "epochs")
    callbacks = _check_callbacks(callbacks)
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if epochs > 1 and isinstance(loader, Iterator):
            raise ValueError(
                f"{name} is a one-shot iterator ({type(loader).__name__}), which would be "
                f"empty from epoch 2 on; pass something that can be iterated again (a list, "
                f"a DataLoader or a TensorLoader)"
            )
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(
            f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
        )
    _check_grad_clip_norm(grad_clip_norm)
    int_at_least(accumulate_grad_batches, "accumulate_grad_batches")
    dev = _resolve_device(device, model)
    dist_utils.init_from_env(dev)
    prec = _check_precision(precision, dev)
    # Move once, before anything touches the optimizer state; Module.to keeps the same
    # Parameter objects, so an optimizer built beforehand stays valid.
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _check_optimizer(optimizer, model)
    sched = _check_scheduler(scheduler, opt)
    if scheduler_interval == "step" and isinstance(
        sched, torch.optim.lr_scheduler.ReduceLROnPlateau
    ):
        raise ValueError("ReduceLROnPlateau needs scheduler_interval='epoch'")
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    metric_map = _default_metrics(metrics)
    watch = monitor or ("val_loss" if val_loader is not None else "loss")
    logged = ["loss", *metric_map]
    figures = ("epoch", *logged, *(f"val_{k}" for k in logged if val_loader is not None),
               *_ROW_KEYS[1:])
    if watch not in figures:
        raise ValueError(
            f"monitor {watch!r} is not a figure of this run, which logs "
            f"{', '.join(figures)}" + ("" if val_loader is not None else
                                      " (val_* figures need val_loader=)")
        )
    watch_mode = monitor_mode_of(watch, monitor_mode)
    history = History(monitor=watch, mode=watch_mode)
    scaler = torch.amp.GradScaler("cuda") if prec == "16" else None
    start_epoch = 0
    ckpt: dict[str, Any] | None = None
    if resume_from is not None:
        # Read onto the CPU: load_state_dict copies into the model where it is, and the
        # optimizer casts its state to each parameter's device.
        ckpt = load_checkpoint(resume_from, device="cpu")
        start_epoch, history = restore_checkpoint(
            ckpt, model, opt, sched, scaler, source=str(resume_from)
        )
        history.monitor, history.mode = watch, watch_mode
    _move_optimizer_state(opt, dev)

    distributed = dist_utils.is_distributed()
    is_main = dist_utils.rank() == 0
    runner: nn.Module = model
    eval_runner: nn.Module = model
    if distributed:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL collectives use the current device
        runner = dist_utils.wrap_ddp(model, dev)
        train_loader = dist_utils.shard_loader(train_loader, train=True)
    if compile:
        runner = _compile(runner, compile)
        eval_runner = _compile(model, compile) if distributed else runner
    show_bar = is_main and (progress is True or (progress is None and sys.stderr.isatty()))
    summary = is_main and progress is not False

    state = FitState(model=_bare(model), optimizer=opt, scheduler=sched, history=history,
                     epoch=start_epoch, is_main=is_main, scaler=scaler, callbacks=callbacks)
    _call(callbacks, "on_fit_start", state)
    if ckpt is not None:
        from .checkpoint import restore_callbacks

        restore_callbacks(ckpt, callbacks)
        # A run that a callback stopped stays stopped, as it would have without a break.
        state.stop_training = bool(ckpt.get("stop_training", False))
    step_sched = sched if scheduler_interval == "step" else None
    has_batch_cb = any(hasattr(cb, "on_batch_end") for cb in callbacks)

    def on_batch(i: int, loss: float) -> None:
        state.batch = i
        state.logs = {"batch": float(i), "loss": loss}
        _call(callbacks, "on_batch_end", state)

    for epoch in range(start_epoch + 1, epochs + 1):
        if state.stop_training:
            break
        state.epoch, state.in_epoch = epoch, True
        for loader in (train_loader, val_loader):
            if loader is not None and hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch - 1)
            sampler = getattr(loader, "sampler", None)
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch - 1)
        _call(callbacks, "on_epoch_start", state)
        started = time.perf_counter()
        try:
            logs = train_one_epoch(
                runner, train_loader, optimizer=opt, loss_fn=loss_fn, metrics=metric_map,
                device=dev, precision=prec, scaler=scaler,  # type: ignore[arg-type]
                grad_clip_norm=grad_clip_norm, accumulate_grad_batches=accumulate_grad_batches,
                scheduler=step_sched, channels_last=channels_last, unpack=unpack,
                on_batch_end=on_batch if has_batch_cb else None, progress=show_bar,
                desc=f"epoch {epoch}/{epochs}",
            )
        except FloatingPointError as exc:
            exc.args = (f"epoch {epoch}: {exc}", *exc.args[1:])  # where, keeping the traceback
            raise
        if distributed:
            # BatchNorm statistics drift apart (each rank sees its part of every batch):
            # rank 0's, on every rank, for validation, checkpoints and whatever follows.
            dist_utils.broadcast_buffers(model)
        if val_loader is not None:
            val = evaluate(eval_runner, val_loader, loss_fn=loss_fn, metrics=metric_map,
                           device=dev, precision=prec,  # type: ignore[arg-type]
                           channels_last=channels_last, unpack=unpack)
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = float(opt.param_groups[0]["lr"])
        logs["time"] = time.perf_counter() - started
        if sched is not None and scheduler_interval == "epoch":
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(logs[watch])  # a logged figure: checked before the first epoch
            else:
                sched.step()
        row = {"epoch": float(epoch), **logs}
        history.append(row)
        state.logs, state.in_epoch = dict(row), False
        if summary:
            line = _summary_line(row, epochs)
            if show_bar:
                from tqdm.auto import tqdm

                tqdm.write(line)
            else:
                print(line, flush=True)
        def agree() -> None:  # a stop asked on any rank, before checkpoints record it
            if distributed:
                state.stop_training = dist_utils.any_true(state.stop_training, dev)

        _call(callbacks, "on_epoch_end", state, before_last=agree)
    _call(callbacks, "on_fit_end", state)
    return history
