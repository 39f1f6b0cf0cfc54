"""FitState: what :func:`~tp3nets.fit` shares with its callbacks.

It sits below both the engine and the callbacks (as ignite's ``State`` does): callbacks
import it from here, never the engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._checkpoint import make_checkpoint, save_checkpoint
from ._history import History
from ._precision import FloatPrecision

__all__ = ["FitState"]


@dataclass
class FitState:
    """What callbacks see and may change during :func:`~tp3nets.fit`.

    ``model`` is the bare module (never the DDP or ``torch.compile`` wrapper). ``logs``
    holds ``{"batch", "loss"}`` in ``on_batch_end`` and the epoch's history row in
    ``on_epoch_end``. Set ``stop_training = True`` to end the run after the current epoch.
    ``in_epoch`` is true from ``on_epoch_start`` until the epoch's row is in the history;
    a full checkpoint can only be taken outside that span (from ``on_epoch_end``,
    ``on_fit_start`` or ``on_fit_end``), where resuming from it is exact. ``precision``
    is the run's precision object, which owns the gradient scaler (``scaler``) and its
    state in checkpoints.
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
    #: The gradient scaler, ``None`` without one: the ``precision``'s own when that is
    #: given (a scaler given alone, as before 0.2, is checkpointed as it is).
    scaler: Any = None
    callbacks: Sequence[Any] = ()
    in_epoch: bool = False
    #: The figures every history row of the run holds (``epoch``, ``loss``, ``val_acc``
    #: …), known before the first epoch, so that callbacks can check what they monitor.
    figures: tuple[str, ...] = ()
    #: Under torchrun, every rank's RNG states in rank order (gathered before the
    #: checkpointing callbacks run), so that a resumed run restores each rank's own.
    rank_rng_states: list[dict[str, Any]] | None = None
    #: Anything of the run's that its full checkpoints should carry (plain data, as
    #: callback states): ``tp3nets train`` records its settings here, and checks them
    #: when a run resumes. Set it in ``on_fit_start``.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The run's precision object (:func:`~tp3nets.engine.get_precision`), which owns the
    #: gradient scaler and its state in checkpoints.
    precision: FloatPrecision | None = None

    def __post_init__(self) -> None:
        if self.precision is None:
            return
        if self.scaler is not None and self.scaler is not self.precision.scaler:
            raise ValueError(
                "FitState expects scaler to be the precision's own scaler (or None) when "
                f"both are given; got scaler={self.scaler!r} beside a precision with "
                f"{self.precision.scaler!r}"
            )
        self.scaler = self.precision.scaler

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
            self.model, self.optimizer, self.scheduler,
            self.precision if self.precision is not None else self.scaler, self.epoch,
            self.history,
            callbacks=self.callbacks, stop_training=self.stop_training,
            rank_rng_states=self.rank_rng_states, metadata=self.metadata,
        )

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`checkpoint` atomically to ``path`` (on the main process only)."""
        target = Path(path)
        if self.is_main:
            save_checkpoint(self.checkpoint(), target)
        return target


