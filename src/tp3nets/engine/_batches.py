"""Batches on their way through the engine: unpacking, the label checks, the loss with
clear errors, train/eval modes and the progress bar."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from . import _devices as devices
from ._devices import bare_module, to_device

__all__ = ["default_unpack"]


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


def batch_size(x: Any) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, Mapping) and x:
        return batch_size(next(iter(x.values())))
    if isinstance(x, (list, tuple)) and x:
        return batch_size(x[0])
    raise ValueError(f"cannot tell the batch size of {type(x).__name__}")


def check_loader(loader: Any, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of batches, got {type(loader).__name__}")
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return
    if n == 0:
        raise ValueError(f"{name} is empty (0 batches); check the dataset and batch_size")


def classes_of(logits: Any) -> int | None:
    return int(logits.shape[1]) if isinstance(logits, Tensor) and logits.dim() >= 2 else None


def label_error(y: Any, classes: int | None, loss_fn: Callable[..., Tensor]) -> str | None:
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


class SkipBatchError(Exception):
    """Raised for a batch that cannot be trained on and is left out: one whose every label
    is the loss's ``ignore_index`` (its mean loss is 0/0), or a single sample that
    BatchNorm cannot normalise in training mode. ``reason`` names the kind."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def nothing_counted(y: Any, loss_fn: Callable[..., Tensor]) -> bool:
    """Whether every class label of ``y`` is ``loss_fn``'s ``ignore_index``: a batch with
    nothing to count, whose mean loss is NaN."""
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return False
    if not isinstance(y, Tensor) or y.is_floating_point() or y.numel() == 0:
        return False
    return bool((y == getattr(loss_fn, "ignore_index", -100)).all())


def skipped_warning(counts: Mapping[str, int], where: str, *, training: bool) -> None:
    """One warning for the batches a pass left out, by reason (once a run in fit)."""
    from .._util import _warn

    words = {
        "ignored": "had no target to count (every label was the loss's ignore_index)",
        "single": "held a single sample, which BatchNorm cannot normalise in training (use "
                  "a batch size that leaves more than one sample in the last batch, or "
                  "drop_last=True)",
    }
    for reason, n in counts.items():
        if n:
            _warn.warn(
                f"{where}: {n} batch{'es' if n > 1 else ''} {words[reason]} and "
                f"{'were' if n > 1 else 'was'} left out of "
                + ("the training and the figures" if training else "the figures"),
                once=("skipped", training, reason),  # not per epoch: once a run
            )


class LabelGuard:
    """Checks class labels where a bad one would be fatal rather than explained.

    On the CPU the loss raises on a label out of range (and :func:`compute_loss` explains
    it), so only the first batch is checked. On an accelerator it is a device-side assert
    that kills the process: labels are checked on the first batch, and afterwards while
    they are still on the host (cheap, and the host is waiting for the device anyway).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], device: torch.device) -> None:
        self.loss_fn = loss_fn
        self.active = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
        self.on_host = not devices.cheap_readback(device)
        self.classes: int | None = None
        self.checked_first = False
        #: Batches left out by reason (see :class:`SkipBatchError`).
        self.skipped = {"ignored": 0, "single": 0}

    def before_transfer(self, y: Any) -> bool:
        """Check labels still on the host (accelerators); whether to leave the batch out
        (nothing to count). On the CPU the check waits for a non-finite loss instead."""
        if self.active and self.on_host and isinstance(y, Tensor) and y.device.type == "cpu":
            if self.classes is not None:
                self._raise(label_error(y, self.classes, self.loss_fn))
            if nothing_counted(y, self.loss_fn):
                self.skipped["ignored"] += 1
                return True
        return False

    def after_forward(self, y: Any, out: Any) -> None:
        if self.active and not self.checked_first:
            self.checked_first = True
            self.classes = classes_of(out)
            self._raise(label_error(y, self.classes, self.loss_fn))

    @staticmethod
    def _raise(message: str | None) -> None:
        if message is not None:
            raise ValueError(message)


def device_batches(
    batches: Iterable[Any],
    unpack: Callable[[Any], tuple[Any, Any]],
    guard: LabelGuard,
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
        n = batch_size(x)
        if n == 0:
            continue
        if guard.before_transfer(y):
            continue
        yield i, to_device(x, device, channels_last), to_device(y, device), n


def compute_loss(loss_fn: Callable[..., Tensor], out: Any, y: Any) -> Tensor:
    try:
        loss = loss_fn(out, y)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        labels = label_error(y, classes_of(out), loss_fn)
        if labels is not None:
            raise ValueError(labels) from None
        oshape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        yshape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        ydtype = f" {str(y.dtype).removeprefix('torch.')}" if isinstance(y, Tensor) else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{type(loss_fn).__name__} cannot take model output {oshape} with target "
            f"{yshape}{ydtype}: {first}{target_hint(loss_fn, out, y)}"
        ) from exc
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(
            "loss_fn must return a scalar tensor (use reduction='mean'), got "
            + (f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__)
        )
    return loss


def target_hint(loss_fn: Callable[..., Tensor], out: Any, y: Any) -> str:
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


def nonfinite(value: float | str, where: str) -> FloatingPointError:
    return FloatingPointError(
        f"the training loss became {value} {where}; lower the learning rate, clip the "
        "gradients (grad_clip_norm=...), try precision='32', or check the data for NaN/inf"
    )


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that :func:`~tp3nets.evaluate` and :func:`~tp3nets.predict` hold on a
    model while they switch its modes: calls on one model from several threads take
    turns, so that none sees another's modes (dropout on in eval); other models run in
    parallel. Re-entrant: fit's own validation takes it again in the same thread."""
    bare = bare_module(model)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(bare)
        if lock is None:
            lock = _LOCKS[bare] = threading.RLock()
        return lock


@contextlib.contextmanager
def set_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set train/eval mode, then restore every submodule's own previous mode.

    Training keeps the modes of a model already in train mode as they are, so that a part
    the user put in eval mode (a frozen backbone's BatchNorm) stays so; a model in eval
    mode is switched to train mode whole.
    """
    before = [(m, m.training) for m in model.modules()]
    if not training and not any(was for _, was in before):
        yield  # already in eval mode throughout: nothing to set or restore
        return
    # The user's model decides, not a DDP/DataParallel wrapper (in train mode when built).
    if not (training and bare_module(model).training):
        model.train(training)
    try:
        yield
    finally:
        for m, was in before:
            m.training = was


def progress_bar(
    iterable: Iterable[Any], total: int | None, desc: str, enabled: bool
) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    bar: Iterable[Any] = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return bar


def len_or_none(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


