"""Callbacks for :func:`tp3nets.fit`: any object with some of the hooks below."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from .training import FitState

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint"]


class Callback(Protocol):
    """Any object; :func:`~tp3nets.fit` calls whichever of these methods it defines.

    ``on_fit_start``, ``on_epoch_start``, ``on_batch_end``, ``on_epoch_end`` and
    ``on_fit_end`` each take the :class:`~tp3nets.training.FitState`; set its
    ``stop_training`` to end the run after the current epoch. A callback with
    ``state_dict()`` and ``load_state_dict(state)`` has its state saved in full checkpoints
    and given back when ``fit(..., resume_from=...)`` continues the run. Callbacks with a
    true ``runs_last`` attribute (:class:`ModelCheckpoint`) have their hooks called after
    the others', so that a checkpoint holds the others' state at the end of the epoch.

    Example:
        >>> class PrintLoss:
        ...     def on_epoch_end(self, state):
        ...         print(f"{state.epoch}: {state.logs['loss']:.3f}")
    """


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping:
    """Stop when a monitored figure stops improving; optionally restore the best weights.

    Args:
        monitor: a history key such as ``"val_loss"`` or ``"val_acc"``.
        patience: epochs without improvement after which the run stops (0 and 1 both stop
            at the first epoch that does not improve).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (``max`` for accuracies, else ``min``).
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
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
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
        path: the file; ``{epoch}`` in it is replaced by the epoch number.
        monitor: with ``save_best_only``, the figure that decides.
        save_best_only: write only when ``monitor`` improves.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        every_n_epochs: write every n-th epoch.

    Example:
        >>> ModelCheckpoint("runs/last.pt").path
        PosixPath('runs/last.pt')
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
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.path = Path(path)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.every_n_epochs = every_n_epochs
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: Path | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def state_dict(self) -> dict[str, Any]:
        """The best figure so far and the last file written, for full checkpoints."""
        return {"best": self.best, "last_saved": str(self.last_saved or "")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.best = float(state["best"])
        self.last_saved = Path(state["last_saved"]) if state["last_saved"] else None

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
            if not _better(self.mode, value, self.best, 0.0):
                return
            self.best = value
        target = Path(str(self.path).replace("{epoch}", str(state.epoch)))
        # Record the file before writing it, so that the checkpoint holds its own name.
        self.last_saved = target
        state.save_checkpoint(target)
