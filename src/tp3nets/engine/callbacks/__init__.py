"""Callbacks for :func:`tp3nets.fit`: early stopping, checkpoints, EMA weights, and loggers.

A callback is any object with some of the hooks of :class:`Callback`; the loggers are
callbacks that write each epoch's row. They receive the fit's state
(:class:`~tp3nets.engine.FitState`) and never import the loop.

Example:
    >>> from tp3nets.engine.callbacks import EarlyStopping
    >>> EarlyStopping(monitor="val_loss", patience=2).mode
    'min'
"""

from __future__ import annotations

from ._base import Callback, EarlyStopping, ModelCheckpoint, monitor_mode
from ._ema import EMA
from ._loggers import CSVLogger, TensorBoardLogger

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "TensorBoardLogger",
    "monitor_mode",
]
