"""Loggers for :func:`~tp3nets.fit`: callbacks that record each epoch's figures.

:class:`CSVLogger` writes the history as a CSV file (Keras' ``CSVLogger``);
:class:`TensorBoardLogger` writes TensorBoard event files through
:mod:`torch.utils.tensorboard` (``pip install 'tp3nets[tensorboard]'``). Both write on
rank 0 only under ``torchrun``, log every figure of the epoch's row (losses, metrics,
validation figures, the learning rate and the epoch's time), and continue correctly when
``fit(resume_from=...)`` resumes a run.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from ..._io._atomic import write_atomically
from .._state import FitState

__all__ = ["CSVLogger", "TensorBoardLogger"]


class CSVLogger:
    """Write the run's history to a CSV file after every epoch.

    One row per epoch, one column per figure (``epoch``, ``loss``, ``acc``, ``val_loss``,
    ``val_acc``, ``lr``, ``time`` …); an empty cell where an epoch lacks a figure. The
    whole file is rewritten atomically from the history each epoch, so that it always
    matches the run: after ``fit(resume_from=...)`` it holds the resumed epochs and the
    new ones, never rows of epochs that the checkpoint did not keep.

    Args:
        path: the CSV file (its folder is created).

    Example:
        >>> import tempfile, torch
        >>> from tp3nets import MultinomialLogisticRegression, fit
        >>> from tp3nets.data import TensorLoader
        >>> model = MultinomialLogisticRegression()
        >>> data = (torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,)))
        >>> folder = tempfile.mkdtemp()
        >>> _ = fit(model, TensorLoader(data, 8), epochs=2, progress=False,
        ...         optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        ...         callbacks=[CSVLogger(f"{folder}/history.csv")])
        >>> open(f"{folder}/history.csv").readline().strip()
        'epoch,loss,acc,lr,time'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"CSVLogger path {str(path)!r} is a directory; give a file name")

    def on_epoch_end(self, state: FitState) -> None:
        if not state.is_main:
            return
        rows = list(state.history)
        columns = list(state.figures) or []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        write_atomically(buffer.getvalue().encode(), self.path)


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf: as Python writes them, readable by float()
    return value


class TensorBoardLogger:
    """Write each epoch's figures as TensorBoard scalars (``tensorboard --logdir DIR``).

    Needs the ``tensorboard`` package (``pip install 'tp3nets[tensorboard]'``). Each
    figure of the epoch's row is a scalar at step ``epoch``: training figures under
    ``train/`` (``train/loss``), validation ones under ``val/`` (``val/acc``), and
    ``lr`` and ``time`` under ``epoch/``. A resumed run purges any events written after
    the checkpoint's epoch, so that the curves show the run as it went on.

    Args:
        log_dir: the folder of the event files.

    Raises:
        ImportError: tensorboard is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "TensorBoardLogger needs tensorboard: pip install 'tp3nets[tensorboard]'"
            ) from exc
        self.log_dir = Path(log_dir)
        if self.log_dir.is_file():
            raise ValueError(f"TensorBoardLogger log_dir {str(log_dir)!r} is a file, not a folder")
        self._writer: Any = None

    def on_fit_start(self, state: FitState) -> None:
        if not state.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run restarts after the checkpoint's epoch: events of later epochs (from
        # the run that was interrupted) are dropped.
        purge = state.epoch + 1 if state.epoch > 0 else None
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge)

    def on_epoch_end(self, state: FitState) -> None:
        if self._writer is None:
            return
        epoch = int(state.logs.get("epoch", state.epoch))
        for name, value in state.logs.items():
            if name == "epoch":
                continue
            self._writer.add_scalar(_tag(name), float(value), epoch)
        self._writer.flush()

    def on_fit_end(self, state: FitState) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tag(name: str) -> str:
    if name in ("lr", "time"):
        return f"epoch/{name}"
    if name.startswith("val_"):
        return f"val/{name[4:]}"
    return f"train/{name}"
