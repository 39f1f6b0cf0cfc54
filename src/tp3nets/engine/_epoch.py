"""One training epoch: :func:`~tp3nets.train_one_epoch`, for users who keep their own loop,
and :func:`train_epoch`, its unchecked inner loop, which :func:`~tp3nets.fit` calls every
epoch with the :class:`TrainSettings` it checked once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import torch
from torch import Tensor, nn

from .._util._checks import check_int
from . import _devices as devices
from . import _shortcuts
from ._batches import (
    LabelGuard,
    SkipBatchError,
    compute_loss,
    default_unpack,
    device_batches,
    len_or_none,
    nonfinite,
    nothing_counted,
    progress_bar,
    set_mode,
    skipped_warning,
)
from ._metrics import Meter, MetricLike, default_metrics
from ._optim import check_grad_clip_norm, check_optimizer, check_scheduler, needs_closure
from ._precision import FloatPrecision, Precision, get_precision

__all__ = ["train_one_epoch"]

# On an accelerator, reading the loss back forces a synchronisation; a NaN loss is looked
# for every this many batches (and at the end of the epoch) instead of after each one.
NONFINITE_CHECK_EVERY: Final = 32


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """The checked settings of a training epoch, built once by whoever checked them
    (:func:`train_one_epoch`, or :func:`~tp3nets.fit`'s setup for the whole run) and
    passed down as they are: :func:`train_epoch` and the per-batch stepper check nothing.
    """

    optimizer: torch.optim.Optimizer
    loss_fn: Callable[..., Tensor]
    #: name -> metric, as :func:`~tp3nets.engine._metrics.default_metrics` returned them.
    metrics: Mapping[str, MetricLike]
    device: torch.device
    precision: FloatPrecision
    grad_clip_norm: float | None
    accumulate: int
    #: Stepped after every optimizer step (a per-step schedule), or ``None``.
    scheduler: Any
    channels_last: bool
    unpack: Callable[[Any], tuple[Any, Any]]
    #: Whether the optimizer's ``step()`` needs a closure (LBFGS): :func:`closure_step`.
    closure_step: bool


def closure_step(
    optimizer: torch.optim.Optimizer, accumulate: int, precision: FloatPrecision
) -> bool:
    """Whether ``optimizer`` steps through a closure (LBFGS), refusing the settings such an
    optimizer cannot train with.

    Raises:
        ValueError: a closure optimizer with ``accumulate_grad_batches > 1`` or a
            precision with a gradient scaler.
    """
    closure = needs_closure(optimizer)
    if closure and (accumulate > 1 or not precision.supports_closure):
        raise ValueError(
            f"{type(optimizer).__name__} evaluates the loss itself, through a closure, "
            f"once or more a step: it takes accumulate_grad_batches=1 and precision '32' "
            f"or 'bf16' (no gradient scaler)"
        )
    return closure


#: One batch's result: the loss tensor, the model's output, and on the CPU the loss's
#: value (already read for the NaN check). A plain tuple: the per-batch Python work is
#: what a small model's epoch is made of.
_Batch = tuple[Tensor, Any, "float | None"]


class _Stepper:
    """The per-batch work of an epoch: forward, backward, and the optimizer steps of
    accumulation windows or of a closure optimizer. Built once per epoch from checked
    settings: the per-batch Python work is what a small model's epoch is made of."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainSettings,
        guard: LabelGuard,
        *,
        total: int | None,
        on_cpu: bool,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, settings.optimizer, settings.loss_fn
        self.precision, self.guard = settings.precision, guard
        self.grad_clip_norm, self.accumulate = settings.grad_clip_norm, settings.accumulate
        self.scheduler, self.closure_step = settings.scheduler, settings.closure_step
        self.total, self.on_cpu = total, on_cpu
        accumulate = settings.accumulate
        self.window = accumulate
        self.pending = 0  # batches whose gradients wait for an optimizer step
        self.no_sync = getattr(model, "no_sync", None) if accumulate > 1 else None
        self.autocast = self.precision.forward_context()
        self.backward = self.precision.backward

    def forward(self, x: Any, y: Any, i: int) -> _Batch:
        """The batch's output and loss; on the CPU, the loss's value, checked finite.

        Raises:
            SkipBatchError: a batch that cannot be trained on (see :class:`SkipBatchError`).
        """
        with self.autocast:
            try:
                out = self.model(x)
            except ValueError as exc:
                if "more than 1 value per channel" in str(exc) and _one_sample(x):
                    self.guard.skipped["single"] += 1
                    raise SkipBatchError("single") from None
                raise
            self.guard.after_forward(y, out)
            loss = compute_loss(self.loss_fn, out, y)
        value: float | None = None
        if self.on_cpu:
            value = loss.item()
            if not math.isfinite(value):
                if nothing_counted(y, self.loss_fn):
                    self.guard.skipped["ignored"] += 1
                    raise SkipBatchError("ignored")
                raise nonfinite(value, f"at batch {i + 1}")
        return loss, out, value

    def batch(self, x: Any, y: Any, i: int) -> tuple[_Batch | None, bool]:
        """Forward and backward one batch; whether its window is complete, so that the
        caller steps the optimizer (after its own checks of the batch). ``None`` for a
        batch left out (see :class:`SkipBatchError`)."""
        if self.closure_step:
            try:
                return self._closure_batch(x, y, i), False  # the optimizer has stepped
            except SkipBatchError:
                return None, False
        pending, window = self.pending, self.window
        if pending == 0:
            total = self.total
            window = self.window = (
                self.accumulate if total is None else min(self.accumulate, total - i)
            )
        step_now = pending + 1 >= window
        try:
            if self.no_sync is not None and not step_now:
                with self.no_sync():  # DDP: no gradient all-reduce inside a window
                    result = self.forward(x, y, i)
                    self.backward(result[0] / window if window > 1 else result[0])
            else:
                result = self.forward(x, y, i)
                self.backward(result[0] / window if window > 1 else result[0])
        except SkipBatchError:
            # Nothing was backpropagated; a window that this batch would have closed is
            # stepped now with what it holds.
            return None, pending > 0 and step_now
        self.pending = pending + 1
        return result, step_now

    def step(self) -> None:
        """One optimizer step, the gradients reset, the per-step scheduler stepped."""
        self.precision.optimizer_step(self.optimizer, self.model, self.grad_clip_norm)
        _shortcuts.zero_grad(self.optimizer)
        self.pending = 0
        if self.scheduler is not None:
            self.scheduler.step()

    def finish(self) -> None:
        """Step a window left open by a loader without ``len()``, whose size could not be
        known in advance: the summed gradients are rescaled to the real window first."""
        if not self.pending:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(self.window / self.pending)
        self.step()

    def _closure_batch(self, x: Any, y: Any, i: int) -> _Batch:
        """One step of an optimizer that evaluates the loss itself (LBFGS): the batch's
        figures are those of the closure's first evaluation, at the weights before it."""
        first: list[_Batch] = []

        def closure() -> Tensor:
            _shortcuts.zero_grad(self.optimizer)
            result = self.forward(x, y, i)
            self.backward(result[0])
            self.precision.clip_gradients(self.model, self.optimizer, self.grad_clip_norm)
            if not first:
                first.append(result)
            return result[0]

        self.optimizer.step(closure)  # type: ignore[arg-type]  # torch: returns float
        _shortcuts.zero_grad(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        return first[0]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor] | None = None,
    metrics: Mapping[str, MetricLike] | None = None,
    device: torch.device | str | None = None,
    precision: Precision | FloatPrecision = "32",
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
    (per-step schedules such as OneCycleLR). ``precision`` is a string, or a precision
    object (:func:`~tp3nets.engine.get_precision`) that a loop of your own keeps across epochs; with
    ``precision="16"`` pass the :class:`torch.amp.GradScaler` that should carry its scale
    across epochs (one is made otherwise), or keep an
    :class:`~tp3nets.engine.FP16MixedPrecision`, which
    owns one. Loader, device, distribution: see :func:`~tp3nets.fit`.

    Every argument is checked on each call; :func:`~tp3nets.fit` checks them once per run
    instead, and calls the unchecked inner loop every epoch.

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
    check_optimizer(optimizer, model)
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    check_scheduler(scheduler, optimizer)
    check_grad_clip_norm(grad_clip_norm, "train_one_epoch")
    dev = devices.resolve_device(device, model)
    prec = get_precision(precision, dev, scaler)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    checked_metrics = default_metrics(metrics)
    accumulate = check_int(accumulate_grad_batches, "accumulate_grad_batches",
                           who="train_one_epoch")
    settings = TrainSettings(
        optimizer=optimizer, loss_fn=loss_fn, metrics=checked_metrics, device=dev,
        precision=prec, grad_clip_norm=grad_clip_norm, accumulate=accumulate,
        scheduler=scheduler, channels_last=channels_last, unpack=unpack,
        closure_step=closure_step(optimizer, accumulate, prec),
    )
    return train_epoch(model, loader, settings, on_batch_end=on_batch_end,
                       progress=progress, desc=desc)


def train_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    settings: TrainSettings,
    *,
    on_batch_end: Callable[[int, float], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """The epoch of :func:`train_one_epoch`, with ``settings`` already checked: nothing
    is checked again here (what only the batches can show, such as labels outside the
    model's classes, an empty loader or a NaN loss, is found as they come)."""
    dev, loss_fn = settings.device, settings.loss_fn
    meter = Meter(settings.metrics, dev, loss_fn)
    total = len_or_none(loader)
    on_cpu = devices.cheap_readback(dev)
    guard = LabelGuard(loss_fn, dev)
    stepper = _Stepper(model, settings, guard, total=total, on_cpu=on_cpu)
    checked = 0  # accelerator only: the batches whose losses are known to be finite
    i = -1
    _shortcuts.zero_grad(settings.optimizer)
    with set_mode(model, True):
        batches = progress_bar(loader, total, desc, progress)
        train_batch, update = stepper.batch, meter.update
        for i, x, y, n in device_batches(batches, settings.unpack, guard, dev,
                                         settings.channels_last):
            result, step_now = train_batch(x, y, i)
            if result is None:
                if step_now:
                    stepper.step()
                continue
            loss, out, value = result
            update(loss, out, y, n, value)
            if not on_cpu and (i + 1) % NONFINITE_CHECK_EVERY == 0:
                # The losses the meter keeps anyway, read once every so many batches:
                # no kernel launch per batch. Raised before this batch's step.
                if meter.nonfinite_since(checked):
                    raise nonfinite("nan or inf", f"at or before batch {i + 1}")
                checked = len(meter.losses)
            if step_now:
                stepper.step()
            if on_batch_end is not None:
                on_batch_end(i, value if value is not None else float(loss.detach()))
        stepper.finish()
    skipped_warning(guard.skipped, desc, training=True)
    if not on_cpu and meter.nonfinite_since(checked):
        raise nonfinite("nan or inf", "during the epoch")
    figures, count = meter.compute()
    if i < 0 or count == 0:
        raise ValueError("the training loader yielded no batch")
    return figures


def _one_sample(x: Any) -> bool:
    return isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == 1
