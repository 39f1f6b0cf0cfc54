"""fit: the loop over epochs, as an outline of named steps (``_FitRun``).

Which layer checks what. Each value is checked once, where it enters; the layers below
take checked values, and objects rather than strings to parse again:

* ``fit`` -> ``_FitRun.__init__`` checks every argument of fit before any work:
  ``epochs``, ``callbacks``, the loaders (not a loader, a one-shot iterator),
  ``scheduler_interval``, ``grad_clip_norm``, ``accumulate_grad_batches``, ``device``
  (resolved once), ``precision`` (made an object once, by ``get_precision``),
  ``optimizer`` (built from a factory; its parameters the model's), ``scheduler`` (built
  from a factory; its optimizer the one given), what a closure optimizer cannot do,
  ``metrics``, ``monitor`` and ``monitor_mode``. The per-epoch settings among them go
  into one frozen ``_epoch.TrainSettings``, built once.
* ``_FitRun.start`` reads a ``resume_from`` path once; the read runs
  ``check_checkpoint``, and ``restore_checkpoint`` checks the checkpoint against the
  model, optimizer, scheduler, precision and callbacks. A ``_checkpoint.CheckedCheckpoint``
  (what ``tp3nets train --resume`` read and checked) is not read or checked again.
* Every epoch, ``_epoch.train_epoch`` takes the settings as they are and checks nothing;
  what only the batches can show (labels outside the model's classes, a target the loss
  cannot take, a NaN loss, an empty loader) is found as they come, by ``_batches`` and
  the meter.
* ``train_one_epoch``, the public epoch for a loop of your own, checks its arguments on
  each call, builds the same settings and calls ``train_epoch``. ``evaluate`` and
  ``predict`` check theirs on each call; fit's validation passes its precision object,
  which is not rebuilt.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from .._util import _warn
from .._util._checks import check_int
from . import _distributed as dist_utils
from ._batches import check_loader, default_unpack
from ._checkpoint import CheckedCheckpoint, restore_callbacks, restore_checkpoint, rng_states
from ._devices import bare_module, resolve_device
from ._epoch import TrainSettings, closure_step, train_epoch
from ._history import History
from ._inference import evaluate
from ._metrics import ROW_KEYS, MetricLike, default_metrics
from ._optim import (
    check_grad_clip_norm,
    check_optimizer,
    check_scheduler,
    move_optimizer_state,
)
from ._precision import FloatPrecision, Precision, get_precision
from ._state import FitState
from .callbacks._base import Callback
from .callbacks._base import monitor_mode as monitor_mode_of

__all__ = ["fit"]

_HOOKS: Final = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_train_epoch_end",
                  "on_epoch_end", "on_fit_end")


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
    precision: Precision | FloatPrecision = "32",
    grad_clip_norm: float | None = None,
    accumulate_grad_batches: int = 1,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    channels_last: bool = False,
    compile: bool | Mapping[str, Any] = False,
    resume_from: str | os.PathLike[str] | Mapping[str, Any] | None = None,
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
            a gradient scaler, CUDA only), or a precision object for the device
            (:func:`~tp3nets.engine.get_precision`); a resumed run gives its gradient
            scaler the checkpoint's state.
        grad_clip_norm: clip the gradients' global norm to this value.
        accumulate_grad_batches: batches whose gradients are summed per optimizer step.
        callbacks: objects with any of ``on_fit_start``, ``on_epoch_start``,
            ``on_batch_end``, ``on_train_epoch_end`` (after the epoch's training, before
            validation), ``on_epoch_end``, ``on_fit_end``, each taking a
            :class:`FitState`; setting ``state.stop_training`` ends the run after the
            current epoch.
        progress: ``True`` a tqdm bar per epoch plus a summary line, ``False`` silence,
            ``None`` (default) the bar on an interactive terminal and otherwise only the
            one-line summary per epoch.
        channels_last: run 4-D inputs and the model in channels-last memory format.
        compile: run the model through :func:`torch.compile` (``True``, or a dict of its
            keyword arguments); checkpoints keep the plain module's keys.
        resume_from: a checkpoint written by :class:`~tp3nets.ModelCheckpoint`
            or :meth:`FitState.save_checkpoint` (its path, or the dict that
            :func:`~tp3nets.engine.load_checkpoint` read); training continues after its
            epoch, with
            its weights, optimizer, scheduler, scaler, history, callback and RNG states
            (a run that a callback had stopped stays stopped), and ends with the weights an
            uninterrupted run would have.
        monitor: the figure for the history's best epoch and ReduceLROnPlateau; default
            ``"val_loss"`` with a validation loader, else ``"loss"``.
        monitor_mode: whether a ``"min"`` or ``"max"`` figure is best; ``"auto"`` decides
            from its name as the callbacks do (:func:`~tp3nets.engine.callbacks.monitor_mode`).
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
    with _warn.once_per_run():  # a warning that holds every epoch is said once
        run = _FitRun(
            model, train_loader, val_loader, epochs=epochs, optimizer=optimizer,
            loss_fn=loss_fn, metrics=metrics, device=device, scheduler=scheduler,
            scheduler_interval=scheduler_interval, precision=precision,
            grad_clip_norm=grad_clip_norm, accumulate_grad_batches=accumulate_grad_batches,
            callbacks=callbacks, progress=progress, channels_last=channels_last,
            compile=compile, monitor=monitor, monitor_mode=monitor_mode, unpack=unpack,
        )
        run.start(resume_from)
        for epoch in range(run.state.epoch + 1, run.epochs + 1):
            if run.state.stop_training:
                break
            run.run_epoch(epoch)
        return run.finish()


class _FitRun:
    """One :func:`fit` call: its checked settings, then the steps of the run.

    ``__init__`` checks every argument and sets the model, optimizer and scheduler up
    before any work, keeping the per-epoch ones in one :class:`TrainSettings`;
    :meth:`start` resumes and calls ``on_fit_start``; :meth:`run_epoch` trains, validates,
    logs and calls the epoch's callbacks; :meth:`finish` ends.
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None,
        *,
        epochs: int,
        optimizer: Any,
        loss_fn: Callable[..., Tensor] | None,
        metrics: Mapping[str, MetricLike] | None,
        device: torch.device | str | None,
        scheduler: Any,
        scheduler_interval: str,
        precision: Precision | FloatPrecision,
        grad_clip_norm: float | None,
        accumulate_grad_batches: int,
        callbacks: Sequence[Callback],
        progress: bool | None,
        channels_last: bool,
        compile: bool | Mapping[str, Any],
        monitor: str | None,
        monitor_mode: Literal["auto", "min", "max"],
        unpack: Callable[[Any], tuple[Any, Any]],
    ) -> None:
        self.epochs = check_int(epochs, "epochs", who="fit")
        self.callbacks = _check_callbacks(callbacks)
        _check_loaders(train_loader, val_loader, self.epochs)
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        check_grad_clip_norm(grad_clip_norm)
        accumulate = check_int(accumulate_grad_batches, "accumulate_grad_batches", who="fit")
        self.device = dev = resolve_device(device, model)
        dist_utils.init_from_env(dev)
        self.precision = get_precision(precision, dev)
        # Move once, before anything touches the optimizer state; Module.to keeps the same
        # Parameter objects, so an optimizer built beforehand stays valid.
        model.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = check_optimizer(optimizer, model)
        self.scheduler = check_scheduler(scheduler, self.optimizer)
        self.plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if scheduler_interval == "step" and self.plateau:
            raise ValueError("ReduceLROnPlateau needs scheduler_interval='epoch'")
        self.epoch_scheduler = self.scheduler if scheduler_interval == "epoch" else None
        checked_metrics = default_metrics(metrics)
        self.settings = TrainSettings(
            optimizer=self.optimizer,
            loss_fn=loss_fn if loss_fn is not None else nn.CrossEntropyLoss(),
            metrics=checked_metrics, device=dev, precision=self.precision,
            grad_clip_norm=grad_clip_norm, accumulate=accumulate,
            scheduler=self.scheduler if scheduler_interval == "step" else None,
            channels_last=channels_last, unpack=unpack,
            closure_step=closure_step(self.optimizer, accumulate, self.precision),
        )
        self.figures = _figures(checked_metrics, val_loader is not None)
        self.monitor = _check_monitor(monitor, self.figures, val_loader is not None)
        self.monitor_mode = monitor_mode_of(self.monitor, monitor_mode)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.compile = compile
        self.is_main = dist_utils.rank() == 0
        self.show_bar = self.is_main and (
            progress is True or (progress is None and sys.stderr.isatty())
        )
        self.summary = self.is_main and progress is not False
        self.state = FitState(
            model=bare_module(model), optimizer=self.optimizer, scheduler=self.scheduler,
            history=History(monitor=self.monitor, mode=self.monitor_mode),
            is_main=self.is_main, precision=self.precision, callbacks=self.callbacks,
            figures=self.figures,
        )

    def start(self, resume_from: str | os.PathLike[str] | Mapping[str, Any] | None) -> None:
        """Resume from a checkpoint if asked, wrap the model for torchrun or
        torch.compile, and call ``on_fit_start``."""
        ckpt: Mapping[str, Any] | None = None
        source = ""
        if resume_from is not None:
            ckpt, source = _resume_point(resume_from)
            self.state.epoch, history = restore_checkpoint(
                ckpt, self.model, self.optimizer, self.scheduler, self.precision,
                source=source, callbacks=self.callbacks,
            )
            history.monitor, history.mode = self.monitor, self.monitor_mode
            self.state.history = history
        move_optimizer_state(self.optimizer, self.device)
        self._wrap()
        if self.distributed:
            dist_utils.check_same_batches(self.train_loader, "train_loader")
        _call(self.callbacks, "on_fit_start", self.state)
        if ckpt is not None:
            restore_callbacks(ckpt, self.callbacks, source=source)
            # A run that a callback stopped stays stopped, as it would have without a break.
            self.state.stop_training = bool(ckpt.get("stop_training", False))

    def _wrap(self) -> None:
        """The modules that train and evaluate: DDP under torchrun, torch.compile if asked;
        the training loader sharded across processes."""
        self.distributed = dist_utils.is_distributed()
        self.runner: nn.Module = self.model
        self.eval_runner: nn.Module = self.model
        if self.distributed:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)  # NCCL collectives use the current device
            self.runner = dist_utils.wrap_ddp(self.model, self.device)
            self.train_loader = dist_utils.shard_loader(self.train_loader, train=True)
        if self.compile:
            self.runner = _compile(self.runner, self.compile)
            self.eval_runner = (
                _compile(self.model, self.compile) if self.distributed else self.runner
            )

    def run_epoch(self, epoch: int) -> None:
        """Train one epoch, validate, log its row and call the epoch's callbacks."""
        if not self.distributed:
            self._run_epoch(epoch)
            return
        try:
            self._run_epoch(epoch)
        except RuntimeError as exc:
            clearer = dist_utils.explain_timeout(exc, f"epoch {epoch}")
            if clearer is None:
                raise
            raise clearer from exc

    def _run_epoch(self, epoch: int) -> None:
        state = self.state
        state.epoch, state.in_epoch = epoch, True
        for loader in (self.train_loader, self.val_loader):
            _set_epoch(loader, epoch - 1)
        _call(self.callbacks, "on_epoch_start", state)
        started = time.perf_counter()
        logs = self._train(epoch)
        if self.distributed:
            # BatchNorm statistics drift apart (each rank sees its part of every batch):
            # rank 0's, on every rank, for validation, checkpoints and whatever follows.
            dist_utils.broadcast_buffers(self.model)
        state.logs = dict(logs)
        _call(self.callbacks, "on_train_epoch_end", state)
        if self.val_loader is not None:
            logs.update({f"val_{k}": v for k, v in self._validate().items()})
        logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
        logs["time"] = time.perf_counter() - started
        if self.epoch_scheduler is not None:
            if self.plateau:
                self.epoch_scheduler.step(logs[self.monitor])  # a logged figure: checked up front
            else:
                self.epoch_scheduler.step()
        row = {"epoch": epoch, **logs}
        self._warn_nonfinite(row)
        state.history.append(row)
        state.logs, state.in_epoch = dict(row), False
        self._print_summary(row)
        _call(self.callbacks, "on_epoch_end", state, before_last=self._agree)

    def _warn_nonfinite(self, row: Mapping[str, float]) -> None:
        """Say it once, loudly, when the monitored figure is NaN or infinite: the best
        epoch, the callbacks and ReduceLROnPlateau cannot use it."""
        value = row.get(self.monitor)
        if value is None or math.isfinite(value):
            return
        _warn.warn(
            f"fit: the monitored {self.monitor} is {value} at epoch {int(row['epoch'])}; "
            f"it cannot pick a best epoch (NaN or inf in the validation data, or a "
            f"diverging run?)", once=("fit monitor", self.monitor),
        )

    def _train(self, epoch: int) -> dict[str, float]:
        has_batch_cb = any(hasattr(cb, "on_batch_end") for cb in self.callbacks)
        try:
            return train_epoch(
                self.runner, self.train_loader, self.settings,
                on_batch_end=self._on_batch if has_batch_cb else None,
                progress=self.show_bar, desc=f"epoch {epoch}/{self.epochs}",
            )
        except FloatingPointError as exc:
            exc.args = (f"epoch {epoch}: {exc}", *exc.args[1:])  # where, keeping the traceback
            raise

    def _validate(self) -> dict[str, float]:
        assert self.val_loader is not None
        settings = self.settings
        # evaluate checks its arguments each call (the loader, the metrics again); the
        # precision goes as the run's object, not rebuilt.
        return evaluate(
            self.eval_runner, self.val_loader, loss_fn=settings.loss_fn,
            metrics=settings.metrics, device=self.device, precision=self.precision,
            channels_last=settings.channels_last, unpack=settings.unpack,
        )

    def _on_batch(self, i: int, loss: float) -> None:
        self.state.batch = i
        self.state.logs = {"batch": float(i), "loss": loss}
        _call(self.callbacks, "on_batch_end", self.state)

    def _agree(self) -> None:
        """Under torchrun, before the checkpointing callbacks run: a stop asked on any
        rank, and every rank's RNG state, which a checkpoint keeps for each rank."""
        if self.distributed:
            self.state.stop_training = dist_utils.any_true(self.state.stop_training, self.device)
            self.state.rank_rng_states = dist_utils.all_gather_object(rng_states())

    def _print_summary(self, row: Mapping[str, float]) -> None:
        if not self.summary:
            return
        line = _summary_line(row, self.epochs)
        if self.show_bar:
            from tqdm.auto import tqdm  # only with a bar, which has imported it already

            tqdm.write(line)
        else:
            print(line, flush=True)

    def finish(self) -> History:
        _call(self.callbacks, "on_fit_end", self.state)
        return self.state.history


def _resume_point(
    resume_from: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[Mapping[str, Any], str]:
    """The checkpoint to resume and the name its errors give it, read once.

    A path is read onto the CPU (load_state_dict copies into the model where it is, and
    the optimizer casts its state to each parameter's device), its structure checked by
    the read; a checkpoint that ``tp3nets train`` read and checked comes as it is; any
    other dict is checked when it is restored.
    """
    if isinstance(resume_from, CheckedCheckpoint):
        return resume_from, resume_from.source
    if isinstance(resume_from, Mapping):
        return dict(resume_from), "the checkpoint given as resume_from"
    checked = CheckedCheckpoint.read(resume_from, source=str(resume_from), device="cpu")
    return checked, checked.source


def _check_loaders(train_loader: Any, val_loader: Any, epochs: int) -> None:
    check_loader(train_loader, "train_loader")
    if val_loader is not None:
        check_loader(val_loader, "val_loader")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if epochs > 1 and isinstance(loader, Iterator):
            raise ValueError(
                f"{name} is a one-shot iterator ({type(loader).__name__}), which would be "
                f"empty from epoch 2 on; pass something that can be iterated again (a list, "
                f"a DataLoader or a TensorLoader)"
            )


def _figures(metrics: Mapping[str, Any], validates: bool) -> tuple[str, ...]:
    """The names every history row of the run holds."""
    logged = ["loss", *metrics]
    return ("epoch", *logged, *(f"val_{k}" for k in logged if validates), *ROW_KEYS[1:])


def _check_monitor(monitor: str | None, figures: tuple[str, ...], validates: bool) -> str:
    """The monitored figure: ``monitor``, refused unless the run logs it."""
    watch = monitor or ("val_loss" if validates else "loss")
    if watch not in figures:
        raise ValueError(
            f"monitor {watch!r} is not a figure of this run, which logs "
            f"{', '.join(figures)}" + ("" if validates else " (val_* figures need val_loader=)")
        )
    return watch


def _set_epoch(loader: Any, epoch: int) -> None:
    """Tell a loader (or its sampler) the epoch, for a different shuffle each epoch."""
    if loader is not None and hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


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


