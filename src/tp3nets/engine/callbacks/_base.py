"""Callbacks for :func:`tp3nets.fit`: any object with some of the hooks below."""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from torch import Tensor, nn

from ..._util import _warn
from ..._util._checks import check_int
from .. import _state_checks as checks
from .._state import FitState

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "monitor_mode"]

#: Words of a figure's name that mean "higher is better" (``val_acc``, ``val_f1`` …).
_HIGHER_IS_BETTER: Final = frozenset({
    "acc", "accuracy", "auc", "auroc", "ap", "map", "f1", "fbeta", "precision", "recall",
    "iou", "miou", "jaccard", "dice", "r2", "score", "specificity", "sensitivity", "psnr",
    "ssim", "kappa", "mcc", "top1", "top5", "ndcg", "bleu", "rouge",
})


class Callback(Protocol):
    """Any object; :func:`~tp3nets.fit` calls whichever of these methods it defines.

    ``on_fit_start``, ``on_epoch_start``, ``on_batch_end``, ``on_train_epoch_end`` (after
    the epoch's training steps, before validation; ``logs`` holds the training figures),
    ``on_epoch_end`` and ``on_fit_end`` each take the :class:`~tp3nets.engine.FitState`; set its
    ``stop_training`` to end the run after the current epoch. A callback with
    ``state_dict()`` and ``load_state_dict(state)`` has its state saved in full checkpoints
    and given back when ``fit(..., resume_from=...)`` continues the run; that state must
    hold only tensors, numbers, strings, lists and dicts (NumPy numbers and numeric arrays
    are converted), which a safe load reads back. A callback may also define
    ``check_state_dict(state, model)``, which raises a ``ValueError`` saying what does not
    fit: it is called when the checkpoint is read, before anything is restored, so that
    a state that does not fit stops the run before it changes the model or takes a step.
    Callbacks with a
    true ``runs_last`` attribute (:class:`ModelCheckpoint`) have their hooks called after
    the others', so that a checkpoint holds the others' state at the end of the epoch.

    Example:
        >>> class PrintLoss:
        ...     def on_epoch_end(self, state):
        ...         print(f"{state.epoch}: {state.logs['loss']:.3f}")
    """


def monitor_mode(monitor: str, mode: str = "auto") -> Literal["min", "max"]:
    """Whether a smaller or a larger ``monitor`` figure is better.

    ``mode="auto"`` gives ``"max"`` when a word of the name says higher is better (acc,
    accuracy, auc, ap, f1, precision, recall, iou, dice, r2, score …: ``val_acc``,
    ``val_f1``, ``top1_acc``), and ``"min"`` otherwise (losses and errors: ``val_loss``,
    ``val_mae``). :func:`~tp3nets.fit`, :class:`EarlyStopping` and
    :class:`ModelCheckpoint` all decide with this rule; pass ``"min"`` or ``"max"`` for a
    figure it would get wrong.

    Example:
        >>> monitor_mode("val_acc"), monitor_mode("val_mae"), monitor_mode("val_f1")
        ('max', 'min', 'max')
    """
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    if mode != "auto":
        return "min" if mode == "min" else "max"
    words = re.split(r"[^0-9a-z]+", monitor.lower())
    higher = any(w in _HIGHER_IS_BETTER or w.startswith("acc") for w in words)
    return "max" if higher else "min"


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _nonfinite_warning(who: str, monitor: str, value: float, epoch: int, what: str) -> None:
    _warn.warn(
        f"{who}: {monitor} is {value} at epoch {epoch}, so {what} (and so for any later "
        f"epoch where it is not finite; said once a run); a non-finite figure usually means "
        f"NaN or inf in the data (check the validation set) or a diverging run",
        once=(who, monitor),
    )


class EarlyStopping:
    """Stop when a monitored figure stops improving; optionally restore the best weights.

    Args:
        monitor: a history key such as ``"val_loss"`` or ``"val_acc"``.
        patience: epochs without improvement after which the run stops (0 and 1 both stop
            at the first epoch that does not improve).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (see :func:`monitor_mode`: ``max`` for
            accuracies, F1, AUC …, else ``min``).
        restore_best_weights: load the best epoch's weights when the run ends (stopped
            early or not).

    Example:
        >>> EarlyStopping(monitor="val_acc", patience=3).mode
        'max'
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: Literal["min", "max", "auto"] = "auto",
        restore_best_weights: bool = True,
    ) -> None:
        self.monitor = monitor
        self.patience = check_int(patience, "patience", who="EarlyStopping", minimum=0)
        self.min_delta = abs(float(min_delta))
        self.mode = monitor_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0
        self._best_state: dict[str, Tensor] | None = None
        self.stopped_epoch: int | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.best_epoch, self._best_state, self.stopped_epoch = 0, 0, None, None

    def state_dict(self) -> dict[str, Any]:
        """The tracking state, best weights included, for full checkpoints."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_state": self._best_state,
        }

    def check_state_dict(self, state: dict[str, Any], model: nn.Module | None = None) -> None:
        """Refuse a :meth:`state_dict` that does not fit (its best weights checked against
        ``model``'s), before anything is loaded.

        Raises:
            ValueError: naming the entry.
        """
        checks.number(state.get("best"), "best")
        checks.number(state.get("best_epoch"), "best_epoch", low=0, whole=True)
        checks.number(state.get("wait"), "wait", low=0, whole=True)
        if state.get("stopped_epoch") is not None:
            checks.number(state["stopped_epoch"], "stopped_epoch", low=0, whole=True)
        if state.get("best_state") is not None and model is not None:
            checks.tensors_like(state["best_state"], model.state_dict(), "best_state")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.check_state_dict(state)
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self._best_state = state["best_state"]

    def on_epoch_end(self, state: FitState) -> None:
        if self.monitor not in state.logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r} but the epoch logged only "
                f"{', '.join(sorted(state.logs))} (pass val_loader= for val_* figures)"
            )
        value = float(state.logs[self.monitor])
        if not math.isfinite(value):
            # No evidence either way: neither an improvement nor an epoch of patience
            # used up, and said out loud.
            _nonfinite_warning("EarlyStopping", self.monitor, value, state.epoch,
                               "the epoch does not count towards the patience")
            return
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best_weights:
                self._best_state = {
                    k: v.detach().clone() for k, v in state.model.state_dict().items()
                }
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop_training = True
                self.stopped_epoch = state.epoch

    def on_fit_end(self, state: FitState) -> None:
        if self.restore_best_weights and self._best_state is not None:
            state.model.load_state_dict(self._best_state)


class ModelCheckpoint:
    """Write full checkpoints (weights, optimizer, scheduler, RNG, history) during fit.

    Files are written atomically (a killed run leaves the previous file whole) and only by
    rank 0. ``fit(..., resume_from=path)`` continues from them.

    Args:
        path: the file. Fields in braces are filled in from the epoch's figures, with
            Python's format syntax as in Keras: ``"runs/ep{epoch:02d}-{val_loss:.3f}.pt"``
            writes ``runs/ep03-0.412.pt`` (``epoch`` is an int; the others are floats).
        monitor: with ``save_best_only``, the figure that decides.
        save_best_only: write only when ``monitor`` improves.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (see :func:`monitor_mode`).
        every_n_epochs: write every n-th epoch.

    Example:
        >>> ModelCheckpoint("runs/last.pt").path
        PosixPath('runs/last.pt')
        >>> ModelCheckpoint("runs/ep{epoch:02d}.pt").filename({"epoch": 3.0, "loss": 0.5})
        PosixPath('runs/ep03.pt')
    """

    runs_last = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: Literal["min", "max", "auto"] = "auto",
        every_n_epochs: int = 1,
    ) -> None:
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", who="ModelCheckpoint")
        self.path = Path(path)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(str(path)) if f is not None]
        except ValueError as exc:
            raise ValueError(f"ModelCheckpoint path {str(path)!r}: {exc}") from None
        if any(not f or not f.isidentifier() for f in fields):
            raise ValueError(
                f"ModelCheckpoint path {str(path)!r}: each {{field}} must name a figure, "
                "such as {epoch} or {val_loss:.3f}"
            )
        if self.path.is_dir():
            raise ValueError(
                f"ModelCheckpoint path {str(path)!r} is a directory; give a file name in it"
            )
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: Path | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def check_path(self, figures: Iterable[str]) -> None:
        """Refuse a path whose ``{fields}`` a run logging ``figures`` cannot fill in (an
        unknown name, a bad format spec), before any training. (:func:`~tp3nets.fit`
        itself checks after the first epoch, since a callback may add figures to the
        epoch's row; a caller that knows the figures, such as ``tp3nets train``, checks
        up front.)

        Raises:
            ValueError: naming the field or the format error.

        Example:
            >>> try:
            ...     ModelCheckpoint("ck{val_acc}.pt").check_path(["epoch", "loss", "acc"])
            ... except ValueError as exc:
            ...     print(str(exc).split(";")[0])
            ModelCheckpoint path 'ck{val_acc}.pt' names 'val_acc', which the epoch did not log
        """
        self.filename({name: 1 if name == "epoch" else 0.5 for name in figures})

    def state_dict(self) -> dict[str, Any]:
        """The best figure so far and the last file written, for full checkpoints."""
        return {"best": self.best, "last_saved": str(self.last_saved or "")}

    def check_state_dict(self, state: dict[str, Any], model: nn.Module | None = None) -> None:
        """Refuse a :meth:`state_dict` that does not fit, before anything is loaded.

        Raises:
            ValueError: naming the entry.
        """
        checks.number(state.get("best"), "best")
        if not isinstance(state.get("last_saved"), str):
            raise checks.StateMismatchError(
                "last_saved", f"must be a file name or '', got {state.get('last_saved')!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.check_state_dict(state)
        self.best = float(state["best"])
        self.last_saved = Path(state["last_saved"]) if state["last_saved"] else None

    def filename(self, logs: dict[str, float]) -> Path:
        """The file for an epoch whose history row is ``logs``."""
        values: dict[str, Any] = dict(logs)
        if "epoch" in values:
            values["epoch"] = int(values["epoch"])
        try:
            return Path(str(self.path).format_map(values))
        except KeyError as exc:
            raise ValueError(
                f"ModelCheckpoint path {str(self.path)!r} names {exc}, which the epoch did not "
                f"log; it logged {', '.join(sorted(values))}"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"ModelCheckpoint path {str(self.path)!r}: {exc}") from None

    def on_epoch_end(self, state: FitState) -> None:
        if state.epoch % self.every_n_epochs:
            return
        if self.save_best_only:
            if self.monitor not in state.logs:
                raise ValueError(
                    f"ModelCheckpoint monitors {self.monitor!r} but the epoch logged only "
                    f"{', '.join(sorted(state.logs))} (pass val_loader= for val_* figures)"
                )
            value = float(state.logs[self.monitor])
            if not math.isfinite(value):
                _nonfinite_warning("ModelCheckpoint", self.monitor, value, state.epoch,
                                   "this epoch is not saved as a best one")
                return
            if not _better(self.mode, value, self.best, 0.0):
                return
            self.best = value
        target = self.filename(state.logs)
        # Record the file before writing it, so that the checkpoint holds its own name.
        self.last_saved = target
        state.save_checkpoint(target)
